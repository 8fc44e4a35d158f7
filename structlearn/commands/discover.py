"""``structlearn discover``: train dense layer(s), prune, and write the run folder."""
from __future__ import annotations

import argparse
import json
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Callable, Iterator, TypeVar

if TYPE_CHECKING:
    from structlearn.config import RunConfig
    from structlearn.parallel.mesh import Mesh
    from structlearn.runs.discover import Discovery

T = TypeVar("T")

HELP = "train a dense unsupervised layer (stack), prune it and read out its filters"
DEFAULT_CONFIG = "mosaic_sparse"


def add_arguments(p: argparse.ArgumentParser) -> None:
    from structlearn.commands import add_config_arguments

    add_config_arguments(p, DEFAULT_CONFIG, "run config", "data.gaussian_clone=true")
    p.add_argument("--resume", metavar="RUN_DIR", help="resume an interrupted run from its checkpoint")
    p.add_argument("--wandb", choices=["offline", "online", "online-or-offline", "disabled"],
                   help="W&B mode (default: the config's wandb.mode, offline); identity: --set wandb.group=..., "
                        "wandb.job_type, wandb.tags=[a,b], wandb.entity, wandb.project")
    p.add_argument("--no-html", action="store_true", help="do not write report.html at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--no-readout", action="store_true",
                   help="stop after training (no structure.json or report.html; `structlearn report RUN` makes them later): "
                        "the read-out of a layer of thousands of units takes minutes")
    p.add_argument("--nproc", type=int, metavar="N",
                   help="train on N processes: starts `torchrun --standalone --nproc_per_node N -m structlearn discover "
                        "...` (the same as launching that yourself; multi-node: torchrun's own --nnodes/--rdzv-endpoint); "
                        "the mesh is the config's parallel section (dp x atoms = N)")


def run(args: argparse.Namespace) -> int:
    from structlearn.commands import deferred_signals, set_threads
    from structlearn.config import load_config
    from structlearn.configs import config_path
    from structlearn.runs.discover import PeerFailed, resume_config, start_discover
    from structlearn.structure.readout import format_structure_table
    from structlearn.train import Interrupted

    if args.nproc is not None:
        return launch(args)
    if args.resume and args.config:
        raise ValueError("--resume takes the run's own config.yaml; do not pass a config with it")
    cfg = None if args.resume else load_config(config_path(args.config or DEFAULT_CONFIG), args.overrides)
    with deferred_signals("training") as stop, joined(cfg or resume_config(args.resume, args.overrides)) as mesh:
        try:
            job = start_discover(cfg, out=args.out, resume=args.resume, wandb=args.wandb,
                                 progress=not args.no_progress and (mesh is None or mesh.writer), stop=stop, mesh=mesh,
                                 resume_overrides=args.overrides if args.resume else ())
        except PeerFailed:
            return 2  # rank 0 says why
        if mesh is not None and not mesh.writer:
            with job:
                set_threads(job.trainer.cfg.threads)
                return _train_quietly(job, mesh)
        with job:
            run_dir, cfg = job.run.path, job.trainer.cfg
            set_threads(cfg.threads)
            job.open_wandb()  # a W&B failure is one line, before anything else is said; a sweep's overrides apply
            cfg = job.trainer.cfg
            print(f"run folder: {run_dir}", file=sys.stderr)
            try:
                summary = job.train() if mesh is None else _lost_rank(job, mesh, job.train)
            except KeyboardInterrupt as e:
                saved = "checkpoint saved at the step boundary" if isinstance(e, Interrupted) else \
                    "aborted; the last checkpoint is kept"
                on = "" if mesh is None else f" --nproc {mesh.size} (or any other number of processes)"
                print(f"interrupted ({saved}). Resume with: structlearn discover --resume {run_dir}{on}", file=sys.stderr)
                return 130
            if stop.is_set():
                print(f"interrupted after training; the read-out is skipped: structlearn report {run_dir}",
                      file=sys.stderr)
                return 130
            if args.no_readout:
                print(json.dumps(_headline(summary), indent=2))
                print(f"wrote {run_dir}/summary.json; the read-out is skipped: structlearn report {run_dir} --html",
                      file=sys.stderr)
                return 0
            structure = job.read_out(html=not args.no_html)
    print(json.dumps(_headline(summary), indent=2))
    print(f"wrote {run_dir}/summary.json", file=sys.stderr)
    print(format_structure_table(structure))  # read-out failures are recorded, not raised
    print(f"wrote {run_dir}/structure.json" + ("" if args.no_html else f" and {run_dir}/report.html"), file=sys.stderr)
    return 0


def _headline(summary: dict) -> dict:
    return {k: summary[k] for k in ("objective", "n_units", "input_shape", "density", "tile_purity_mean",
                                    "single_tile_fraction", "energy_radius90_median", "recon_rel_error", "code_kurtosis",
                                    "seconds") if k in summary}


def launch(args: argparse.Namespace) -> int:
    """``--nproc N``: this command again under ``torchrun --standalone --nproc_per_node N``
    (one node; SIGINT and SIGTERM are passed on, so every rank checkpoints and stops)."""
    import os
    import signal
    import subprocess

    from structlearn.parallel.mesh import launched_world

    if args.nproc < 1:
        raise ValueError(f"--nproc {args.nproc}; allowed: >= 1")
    if launched_world() > 1:
        raise ValueError("--nproc inside a torchrun launch; allowed: one of them (torchrun's --nproc_per_node, or --nproc)")
    if args.nproc == 1:  # this process
        args.nproc = None
        return run(args)
    argv, rest = [], list(args.argv)  # this command's own arguments, without --nproc
    while rest:
        a = rest.pop(0)
        if a == "--nproc":
            rest.pop(0)
        elif not a.startswith("--nproc="):
            argv.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(args.nproc),
           "-m", "structlearn", *argv]
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", "1")  # torchrun's own default, without its banner
    child = subprocess.Popen(cmd, env=env)
    old = {s: signal.signal(s, lambda signum, frame: child.send_signal(signum)) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return child.wait()
    finally:
        for s, h in old.items():
            signal.signal(s, h)


@contextmanager
def joined(cfg: RunConfig) -> Iterator[Mesh | None]:
    """This process's :class:`~structlearn.parallel.mesh.Mesh` under torchrun (None alone),
    left at the end."""
    from structlearn.parallel.mesh import init_mesh

    mesh = init_mesh(cfg.parallel, cfg.device)
    try:
        yield mesh
    finally:
        if mesh is not None:
            mesh.close()


def _lost_rank(job: Discovery, mesh: Mesh, fn: Callable[[], T]) -> T:
    """``fn()``; a collective that fails because another rank died or hung (connection closed,
    timeout) becomes one clear error naming the checkpoint to resume from."""
    try:
        return fn()
    except RuntimeError as e:
        text = str(e)
        if not any(w in text.lower() for w in ("gloo", "nccl", "connection", "timed out", "timeout", "peer")):
            raise
        raise ValueError(f"rank {mesh.rank} of {mesh.size} lost contact with the other processes "
                         f"({text.splitlines()[0][:200]}); a rank died or hung longer than parallel.timeout_s="
                         f"{job.trainer.cfg.parallel.timeout_s:g}; the last checkpoint is kept; resume with: "
                         f"structlearn discover --resume {job.run.path} --nproc {mesh.size}") from None


def _train_quietly(job: Discovery, mesh: Mesh) -> int:
    """A rank other than 0: train (no files, no output), stop with the others."""
    try:
        _lost_rank(job, mesh, job.train)
    except KeyboardInterrupt:  # Interrupted included: the checkpoint is written (collectively)
        return 130
    return 0
