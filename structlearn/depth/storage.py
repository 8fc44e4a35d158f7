"""Where a study lives, who runs its trials, and what happens to trials of a dead worker.

Storage (``spec``):

- ``None`` or ``"sqlite"``: ``sqlite:///<run_dir>/study.db``, one process (Optuna's advice
  for SQLite); a re-run of the same command loads the study (``load_if_exists``).
- ``"journal"`` or ``"journal:PATH"``: ``JournalStorage(JournalFileBackend(path))``,
  default ``<run_dir>/study.journal``: several worker processes on one machine.
- anything else is a SQLAlchemy URL passed to ``optuna.storages.RDBStorage`` unchanged,
  e.g. ``postgresql://user:pw@host/db`` for workers on several machines (needs a driver
  such as psycopg2 installed; structlearn starts no server).

Stale trials. A worker marks each trial it runs with ``structlearn_worker = {host, pid,
token, start}`` and refreshes ``structlearn_heartbeat`` every ``heartbeat_s`` seconds. Before
a worker asks for a new trial it fails every RUNNING trial whose worker is gone -- same host
and the process no longer exists (or its pid now belongs to a different process), or no
heartbeat for ``grace_s`` seconds (other hosts) -- and enqueues its parameters again, so a
killed study loses at most the trials that were running and re-runs exactly those
architectures. Asking happens under an exclusive file lock (``<run_dir>/study.lock``), so
workers on one machine never exceed ``n_trials``; workers on other machines sharing an RDB
may overshoot by at most one trial each.
"""
from __future__ import annotations

import fcntl
import os
import secrets
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

WORKER_ATTR = "structlearn_worker"
HEARTBEAT_ATTR = "structlearn_heartbeat"


def storage_url_for_display(spec: str | None, run_dir: Path) -> str:
    """The storage as text, with any password hidden."""
    if spec in (None, "sqlite"):
        return f"sqlite:///{Path(run_dir).resolve() / 'study.db'}"
    if spec == "journal" or spec.startswith("journal:"):
        return f"journal:{journal_path(spec, run_dir)}"
    try:
        from sqlalchemy.engine import make_url

        return make_url(spec).render_as_string(hide_password=True)
    except Exception:  # not a URL sqlalchemy understands: show the scheme only
        return spec.split("://", 1)[0] + "://***"


def without_password(spec: str | None) -> str | None:
    """``spec`` with any password removed (what may be written to disk): a URL keeps its user,
    host and database; the password comes from the environment at connection time
    (``STRUCTLEARN_STORAGE_URL``, or libpq's ``PGPASSWORD`` / ``~/.pgpass``)."""
    if spec is None or spec in ("sqlite", "journal") or spec.startswith("journal:") or "://" not in spec:
        return spec
    try:
        from sqlalchemy.engine import make_url

        url = make_url(spec)
        return url._replace(password=None).render_as_string(hide_password=False) if url.password else spec
    except Exception:  # not a URL sqlalchemy understands: keep the scheme only
        return spec.split("://", 1)[0] + "://"


def has_credentials(spec: str | None) -> bool:
    """A URL that names a user or a password (its folder is made owner-only)."""
    if spec is None or "://" not in spec:
        return False
    try:
        from sqlalchemy.engine import make_url

        url = make_url(spec)
        return bool(url.username or url.password)
    except Exception:
        return True


def resolve_storage(spec: str | None) -> str | None:
    """The storage to connect to: ``spec``, or ``STRUCTLEARN_STORAGE_URL`` when it is the same
    database with a password (the password is never stored, so a resumed search finds it there)."""
    env = os.environ.get("STRUCTLEARN_STORAGE_URL")
    if spec is None:
        return env
    if env and without_password(env) == without_password(spec):
        return env
    return spec


def journal_path(spec: str, run_dir: Path) -> Path:
    return Path(spec[len("journal:"):]) if spec.startswith("journal:") else Path(run_dir) / "study.journal"


def is_single_process(spec: str | None) -> bool:
    return spec in (None, "sqlite") or (isinstance(spec, str) and spec.startswith("sqlite:"))


def make_storage(spec: str | None, run_dir: Path):
    """An Optuna storage for ``spec`` (module docstring)."""
    import warnings

    import optuna

    run_dir = Path(run_dir)
    if spec in (None, "sqlite"):
        return optuna.storages.RDBStorage(f"sqlite:///{run_dir.resolve() / 'study.db'}")
    if spec == "journal" or spec.startswith("journal:"):
        from optuna.storages.journal import JournalFileBackend, JournalStorage

        path = journal_path(spec, run_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return JournalStorage(JournalFileBackend(str(path)))
    if "://" not in spec:
        raise ValueError(f"--storage {spec!r}; allowed: sqlite (default), journal, journal:PATH, or a SQLAlchemy URL "
                         f"such as postgresql://user:password@host/db")
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return optuna.storages.RDBStorage(spec)
    except ImportError as e:
        raise ValueError(f"--storage {storage_url_for_display(spec, run_dir)}: the database driver is missing ({e}); "
                         f"install it, e.g. pip install psycopg2-binary for PostgreSQL") from e
    except SQLAlchemyError as e:
        raise ValueError(f"--storage {storage_url_for_display(spec, run_dir)}: cannot open the database: "
                         f"{type(e).__name__}: {str(e).splitlines()[0]}") from e


@contextmanager
def study_lock(run_dir: Path) -> Iterator[None]:
    """Exclusive ``flock`` on ``<run_dir>/study.lock`` (released when the process dies)."""
    path = Path(run_dir) / "study.lock"
    with open(path, "a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _start_time(pid: int) -> str | None:
    """Process start time in clock ticks since boot (Linux ``/proc``), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22 of stat; fields after the command name


class WorkerIdentity:
    """This process as a study worker: host, pid, a random token and its start time."""

    def __init__(self) -> None:
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.token = secrets.token_hex(8)
        self.start = _start_time(self.pid)

    def as_attr(self) -> dict[str, Any]:
        return {"host": self.host, "pid": self.pid, "token": self.token, "start": self.start}


def worker_alive(w: dict[str, Any], me: WorkerIdentity) -> bool | None:
    """True/False for a worker on this host; None when it runs on another host."""
    if w.get("host") != me.host:
        return None
    pid = int(w.get("pid", -1))
    if pid == me.pid:
        return w.get("token") == me.token
    try:
        os.kill(pid, 0)  # signal 0: existence check only
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists but belongs to another user: the start time decides
        start = _start_time(pid)
        return not (w.get("start") is not None and start is not None and start != w.get("start"))
    start = _start_time(pid)
    return not (w.get("start") is not None and start is not None and start != w.get("start"))


def fail_stale_trials(study, me: WorkerIdentity, grace_s: float) -> list[int]:
    """Fail the RUNNING trials whose worker is gone and enqueue their parameters again.
    Returns the numbers of the failed trials."""
    import optuna
    from optuna.trial import TrialState

    now = time.time()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        w = t.system_attrs.get(WORKER_ATTR)
        beat = t.system_attrs.get(HEARTBEAT_ATTR)
        started = t.datetime_start.timestamp() if t.datetime_start is not None else now
        last = float(beat) if beat is not None else started
        alive = worker_alive(w, me) if w is not None else None
        if alive is True or (alive is None and now - last < grace_s):
            continue
        reason = ("worker process is gone" if alive is False else f"no heartbeat for {now - last:.0f} s")
        try:
            study._storage.set_trial_system_attr(t._trial_id, "structlearn_failed", reason)
            if not study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # its worker finished it meanwhile, or another worker failed it
        study.enqueue_trial(dict(t.params), user_attrs={"retry_of": t.number})
        failed.append(t.number)
    return failed


class Heartbeat:
    """A daemon thread that stamps ``structlearn_heartbeat = time.time()`` on a trial."""

    def __init__(self, storage, trial_id: int, interval_s: float) -> None:
        self.storage, self.trial_id, self.interval_s = storage, trial_id, float(interval_s)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _beat(self) -> None:
        self.storage.set_trial_system_attr(self.trial_id, HEARTBEAT_ATTR, time.time())

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._beat()
            except Exception:  # the trial finished between the wait and the write
                return

    def __enter__(self) -> "Heartbeat":
        self._beat()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
