"""``structlearn bench``: side-by-side benchmarks against what a user would pick instead.

The harness is :mod:`structlearn.bench`; the benchmarks are the modules of
``experiments/benchmarks/`` in the repository (``--dir`` points elsewhere).
"""
from __future__ import annotations

import argparse
import shlex
import sys

HELP = "time structlearn against scikit-learn / scipy / reference code, side by side (needs the bench extra)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("names", nargs="*", metavar="NAME", help="benchmarks to run (default: every default one; see --list)")
    p.add_argument("--json", dest="json_out", metavar="OUT", help="write the report as JSON to OUT")
    p.add_argument("--quick", action="store_true", help="small problem sizes for a smoke run (minutes -> seconds)")
    p.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N (default: auto)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for torch, BLAS and scipy on both sides (default: 1, robust on shared "
                        "machines; use the core count on a dedicated one)")
    p.add_argument("--repeat", type=int, default=5, help="timed repetitions per side (default: 5)")
    p.add_argument("--budget", type=float, default=10.0,
                   help="seconds per side and case after which repetitions stop, at least one (default: 10)")
    p.add_argument("--dir", dest="folder", help="folder of benchmark modules (default: experiments/benchmarks)")
    p.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    p.add_argument("--show", metavar="JSON", help="print the table of a saved report (e.g. bench.json) and exit")


def _limit_threads(n: int):
    import torch

    torch.set_num_threads(n)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without scikit-learn there is no threadpoolctl and no sklearn baseline
        return None
    return threadpool_limits(limits=n)


def run(args: argparse.Namespace) -> int:
    from structlearn.bench import Context, format_table, load_benchmarks, machine_meta, report, select, validate_report
    from structlearn.io import atomic_write_json
    from structlearn.runtime import resolve_device

    if args.show:
        from structlearn.io import read_json

        rep = read_json(args.show)
        validate_report(rep)
        m = rep["meta"]
        print(f"{m['date']} | {m['cpu']}, {m['cores']} cores, threads={m['threads']} | device {m['device']} | "
              f"load {m.get('loadavg_start')} | `{m['command']}`\n")
        print(format_table(rep["results"]))
        print("\nmatmul peak (measured): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in m.get("matmul_gflops", {}).items()))
        return 0
    if args.threads < 1:
        raise ValueError(f"--threads={args.threads} out of range; allowed: integers >= 1")
    benchmarks = load_benchmarks(args.folder)
    if args.list:
        for b in benchmarks.values():
            print(f"{b.name:22s} {'' if b.default else '(only when named) '}{b.summary}")
        return 0
    selected = select(benchmarks, args.names)
    limiter = _limit_threads(args.threads)
    ctx = Context(device=resolve_device(args.device), size="quick" if args.quick else "full", repeat=args.repeat,
                  budget_s=args.budget, threads=args.threads)
    command = "structlearn bench " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    meta = machine_meta(ctx, command)
    print(f"# {meta['date']}  {meta['cpu']} ({meta['cores']} cores), threads={ctx.threads}, device={meta['device']}, "
          f"size={ctx.size}, load={meta['loadavg_start']}", file=sys.stderr)

    def progress(r) -> None:
        ratio = "" if r.speedup is None else f" ratio {r.speedup:.2f}x"
        pf = "" if r.peak_fraction is None else f" peak {r.peak_fraction:.2f}"
        print(f"  {r.benchmark} / {r.case}: ours {r.ours_s:.4g} s{ratio}{pf}", file=sys.stderr, flush=True)

    from structlearn.bench import run_benchmarks

    try:
        results, errors = run_benchmarks(selected, ctx, progress)
    finally:
        if limiter is not None:
            limiter.unregister()
    rep = report(results, meta, ctx, errors)
    print(format_table(results))
    print("\nmatmul peak (measured): " + ", ".join(f"{k} {v:.1f} GFLOP/s" for k, v in ctx.peaks.items()))
    if args.json_out:
        atomic_write_json(args.json_out, rep)
        print(f"wrote {args.json_out}", file=sys.stderr)
    for e in errors:
        print(f"benchmark failed: {e}", file=sys.stderr)
    return 1 if errors else 0
