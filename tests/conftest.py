import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")  # tests never touch the network
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _one_thread():
    """Deterministic, contention-free CPU runs (the CI machine has 2 cores)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _postgres_bindir() -> str | None:
    import glob
    import shutil

    for cand in [os.path.dirname(shutil.which("pg_ctl") or "")] + sorted(glob.glob("/usr/lib/postgresql/*/bin"))[::-1]:
        if cand and os.path.isfile(os.path.join(cand, "initdb")) and os.path.isfile(os.path.join(cand, "pg_ctl")):
            return cand
    return None


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server for the storage tests: ``STRUCTLEARN_TEST_POSTGRES_URL`` when
    set, else a throw-away cluster started here (initdb + pg_ctl, trust auth, 127.0.0.1 on a
    free port, fsync off; as the ``postgres`` user when the tests run as root, since the
    server refuses root) and stopped at the end of the session."""
    import pwd
    import shutil
    import socket
    import subprocess
    import tempfile

    url = os.environ.get("STRUCTLEARN_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    bindir = _postgres_bindir()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found and STRUCTLEARN_TEST_POSTGRES_URL unset")
    as_user = []
    root = tempfile.mkdtemp(prefix="structlearn-pg-")
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    db = os.path.join(root, "db")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = lambda *a: subprocess.run(as_user + list(a), check=True, capture_output=True, text=True, timeout=120)  # noqa: E731
    run(os.path.join(bindir, "initdb"), "-D", db, "-A", "trust", "-U", "postgres", "--no-sync")
    run(os.path.join(bindir, "pg_ctl"), "-D", db, "-l", os.path.join(root, "server.log"), "-w", "-o",
        f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start")
    try:
        import psycopg2

        con = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres")
        con.autocommit = True
        con.cursor().execute("CREATE DATABASE structlearn")
        con.close()
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/structlearn"
    finally:
        subprocess.run(as_user + [os.path.join(bindir, "pg_ctl"), "-D", db, "-m", "fast", "-w", "stop"],
                       capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
