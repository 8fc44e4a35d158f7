"""Benchmark harness: our implementation and a baseline, side by side in one process.

The benchmark *definitions* live in ``experiments/benchmarks/`` (one module per benchmark,
each exposing ``BENCHMARK = Benchmark(...)``); this module holds only the reusable
mechanics, so it can be tested without running a single benchmark:

- :func:`time_pair`: warm-up call(s) of both sides (not timed), then up to ``repeat`` timed
  calls of each side, *interleaved* (ours, baseline, ours, ...) so that background load hits
  both alike; a side whose accumulated time passes ``budget_s`` stops early (at least one
  timed call). The reported time is the median. On CUDA every timed call is bracketed by
  ``torch.cuda.synchronize()``.
- :func:`matmul_gflops`: the machine's own matmul rate, ``2 n^3 / t`` for an ``(n, n) @ (n, n)``
  product in the benchmark's dtype on the benchmark's device, measured in the same run.
  A matmul-bound kernel reports ``peak_fraction = achieved GFLOP/s / that rate``.
- :class:`Result` / :func:`report`: one row per benchmark case with ``ours_s``,
  ``baseline_s``, ``speedup = baseline_s / ours_s``, ``peak_fraction`` (where it applies),
  the quality figures that show both sides reached the same answer, and the target.
- :func:`format_table`: the Markdown table printed by ``structlearn bench``.

JSON report (``schema = "structlearn-bench/1"``)::

    {"schema": ..., "meta": {date, command, machine, cpu, cores, threads, device, versions,
                             loadavg_start, loadavg_end, matmul_gflops: {dtype: GFLOP/s}},
     "results": [{"benchmark", "case", "ours", "baseline", "ours_s", "baseline_s",
                  "speedup", "peak_fraction", "gflops", "ours_n", "baseline_n",
                  "ours_times", "baseline_times", "target", "met", "quality", "quality_order",
                  "notes"}], "errors": [...]}
"""
from __future__ import annotations

import datetime
import importlib
import importlib.util
import math
import os
import platform
import statistics
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

SCHEMA = "structlearn-bench/1"
SIZES = ("full", "quick", "tiny")
RESULT_KEYS = ("benchmark", "case", "ours", "baseline", "ours_s", "baseline_s", "speedup", "peak_fraction",
               "gflops", "ours_n", "baseline_n", "ours_times", "baseline_times", "target", "met", "quality", "notes")
DEFAULT_DIR = Path(__file__).resolve().parents[1] / "experiments" / "benchmarks"  # in a source checkout


def default_dir() -> Path:
    """``experiments/benchmarks`` of the source checkout, else of the current folder (an
    installed wheel carries no benchmarks: they compare against optional third-party code)."""
    for d in (DEFAULT_DIR, Path.cwd() / "experiments" / "benchmarks"):
        if (d / "__init__.py").is_file():
            return d
    return DEFAULT_DIR


# ----------------------------------------------------------------------------- timing
def synchronize(device: torch.device | str) -> None:
    """Wait for queued kernels (CUDA); a no-op on CPU."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    """Seconds of each timed call; ``median`` is what the table reports. ``last`` is the
    return value of the last timed call (so a minutes-long fit need not be rerun to look
    at its result)."""

    times: list[float]
    last: Any = field(default=None, repr=False, compare=False)

    @property
    def median(self) -> float:
        if not self.times:
            raise ValueError("no timed calls")
        return float(statistics.median(self.times))

    @property
    def n(self) -> int:
        return len(self.times)


def _timed(fn: Callable[[], Any], device: torch.device | str) -> tuple[float, Any]:
    synchronize(device)
    t0 = time.perf_counter()
    out = fn()
    synchronize(device)
    return time.perf_counter() - t0, out


def _check_counts(repeat: int, warmup: int, budget_s: float) -> None:
    if not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"repeat={repeat!r} out of range; allowed: integers >= 1")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup={warmup!r} out of range; allowed: integers >= 0")
    if not budget_s > 0:
        raise ValueError(f"budget_s={budget_s!r} out of range; allowed: > 0 seconds")


def time_call(fn: Callable[[], Any], *, device: torch.device | str = "cpu", repeat: int = 5, warmup: int = 1,
              budget_s: float = 30.0, warmup_fn: Callable[[], Any] | None = None) -> Timing:
    """Median-ready timings of ``fn()``: ``warmup`` untimed calls (of ``warmup_fn`` when
    given, e.g. a smaller problem for a call that takes minutes), then up to ``repeat``
    timed calls, stopping early once their total passes ``budget_s`` (at least one)."""
    return time_pair(fn, None, device=device, repeat=repeat, warmup=warmup, budget_s=budget_s,
                     warmup_ours=warmup_fn)[0]


def time_pair(ours: Callable[[], Any], baseline: Callable[[], Any] | None, *, device: torch.device | str = "cpu",
              repeat: int = 5, warmup: int = 1, budget_s: float = 30.0,
              warmup_ours: Callable[[], Any] | None = None,
              warmup_baseline: Callable[[], Any] | None = None) -> tuple[Timing, Timing | None]:
    """Time ``ours()`` and ``baseline()`` interleaved (see the module docstring).

    ``baseline=None`` times ``ours`` alone and returns ``(Timing, None)``.
    """
    _check_counts(repeat, warmup, budget_s)
    sides = [(ours, warmup_ours)] + ([(baseline, warmup_baseline)] if baseline is not None else [])
    for fn, wfn in sides:
        for _ in range(warmup):
            _timed(wfn or fn, device)
    out = [Timing([]) for _ in sides]
    for _ in range(repeat):
        ran = False
        for i, (fn, _) in enumerate(sides):
            if out[i].times and sum(out[i].times) >= budget_s:
                continue
            dt, out[i].last = _timed(fn, device)
            out[i].times.append(dt)
            ran = True
        if not ran:
            break
    return out[0], (out[1] if len(out) > 1 else None)


def matmul_gflops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, n: int = 2048,
                  repeat: int = 5) -> float:
    """Measured matmul rate in GFLOP/s: median over ``repeat`` of ``2 n^3 / t`` for a square
    ``(n, n) @ (n, n)`` product (one warm-up call first)."""
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    b = torch.randn(n, n, generator=g, dtype=dtype).to(device)
    t = time_call(lambda: a @ b, device=device, repeat=repeat, warmup=1, budget_s=60.0)
    return 2.0 * n**3 / t.median / 1e9


def fit_exponent(x: Sequence[float], y: Sequence[float]) -> float:
    """Least-squares slope of ``log y`` on ``log x``: the ``p`` of ``y ~ c x^p``."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError(f"fit_exponent needs two equal-length sequences of >= 2 points; got {len(x)} and {len(y)}")
    if min(x) <= 0 or min(y) <= 0:
        raise ValueError("fit_exponent needs positive x and y")
    lx, ly = [math.log(v) for v in x], [math.log(v) for v in y]
    mx, my = sum(lx) / len(lx), sum(ly) / len(ly)
    sxx = sum((a - mx) ** 2 for a in lx)
    if sxx == 0:
        raise ValueError("fit_exponent needs at least two distinct x values")
    return sum((a - mx) * (b - my) for a, b in zip(lx, ly)) / sxx


# ----------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Target:
    """``metric op value``: ``metric`` is ``"speedup"``, ``"peak_fraction"`` or a key of
    the result's ``quality``; ``op`` is ``">="`` or ``"<="``."""

    metric: str
    op: str
    value: float

    def __post_init__(self) -> None:
        if self.op not in (">=", "<="):
            raise ValueError(f"target op {self.op!r} is not allowed; allowed: >=, <=")

    def met(self, result: "Result") -> bool | None:
        v = result.metric(self.metric)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return bool(v >= self.value) if self.op == ">=" else bool(v <= self.value)

    def to_dict(self) -> dict:
        return {"metric": self.metric, "op": self.op, "value": self.value}

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.value:g}"


@dataclass
class Result:
    """One row of the table (one case of one benchmark)."""

    benchmark: str
    case: str
    ours: str  # what was timed on our side
    baseline: str | None  # what was timed on the other side (None: no baseline)
    ours_timing: Timing
    baseline_timing: Timing | None = None
    flops: float | None = None  # useful flops of one `ours` call (matmul-bound kernels)
    peak_gflops: float | None = None  # measured matmul GFLOP/s in the same run
    target: Target | None = None
    quality: dict[str, Any] = field(default_factory=dict)
    notes: str = ""

    @property
    def ours_s(self) -> float:
        return self.ours_timing.median

    @property
    def baseline_s(self) -> float | None:
        return None if self.baseline_timing is None else self.baseline_timing.median

    @property
    def speedup(self) -> float | None:
        """``baseline_s / ours_s`` (> 1: ours is faster)."""
        b = self.baseline_s
        return None if b is None else b / self.ours_s

    @property
    def gflops(self) -> float | None:
        return None if self.flops is None else self.flops / self.ours_s / 1e9

    @property
    def peak_fraction(self) -> float | None:
        g = self.gflops
        return None if g is None or not self.peak_gflops else g / self.peak_gflops

    def metric(self, name: str) -> Any:
        if name in ("speedup", "peak_fraction", "gflops", "ours_s", "baseline_s"):
            return getattr(self, name)
        return self.quality.get(name)

    @property
    def met(self) -> bool | None:
        return None if self.target is None else self.target.met(self)

    def to_dict(self) -> dict:
        return {
            "benchmark": self.benchmark, "case": self.case, "ours": self.ours, "baseline": self.baseline,
            "ours_s": self.ours_s, "baseline_s": self.baseline_s, "speedup": self.speedup,
            "peak_fraction": self.peak_fraction, "gflops": self.gflops,
            "ours_n": self.ours_timing.n, "baseline_n": None if self.baseline_timing is None else self.baseline_timing.n,
            "ours_times": list(self.ours_timing.times),
            "baseline_times": None if self.baseline_timing is None else list(self.baseline_timing.times),
            "target": None if self.target is None else self.target.to_dict(), "met": self.met,
            "quality": {k: _plain(v) for k, v in self.quality.items()}, "quality_order": list(self.quality),
            "notes": self.notes,
        }


def _plain(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return v.item() if v.numel() == 1 else v.tolist()
    if hasattr(v, "item") and not isinstance(v, (str, bytes)):
        return v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


# ----------------------------------------------------------------------------- context
@dataclass
class Context:
    """What every benchmark receives: device, problem size, timing policy, seeds, a cache
    for data shared between benchmarks, and the machine's measured matmul rate."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    size: str = "full"  # "full" (the sizes), "quick" (smoke run), "tiny" (tests)
    repeat: int = 5
    warmup: int = 1
    budget_s: float = 30.0  # per side and case: stop repeating once this much was spent
    threads: int = 1  # CPU threads for torch, BLAS and scipy on both sides
    seed: int = 0
    cache: dict[str, Any] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)  # str(dtype) -> measured GFLOP/s

    def __post_init__(self) -> None:
        if self.size not in SIZES:
            raise ValueError(f"size={self.size!r} is not allowed; allowed: {', '.join(SIZES)}")
        _check_counts(self.repeat, self.warmup, self.budget_s)
        self.device = torch.device(self.device)

    def pick(self, full: Any, quick: Any, tiny: Any) -> Any:
        """The value for this run's size."""
        return {"full": full, "quick": quick, "tiny": tiny}[self.size]

    def generator(self, tag: str) -> torch.Generator:
        """A CPU generator seeded from ``(seed, tag)``: the same tag draws the same data."""
        h = sum((i + 1) * ord(c) for i, c in enumerate(tag)) * 1_000_003
        return torch.Generator().manual_seed((self.seed * 7919 + h) % (2**63 - 1))

    def cached(self, key: str, make: Callable[[], Any]) -> Any:
        if key not in self.cache:
            self.cache[key] = make()
        return self.cache[key]

    def peak(self, dtype: torch.dtype = torch.float32) -> float:
        """Measured matmul GFLOP/s in ``dtype`` on this device (once per run and dtype)."""
        key = str(dtype).replace("torch.", "")
        if key not in self.peaks:
            n = self.pick(2048, 1024, 256)
            self.peaks[key] = matmul_gflops(self.device, dtype, n=n)
        return self.peaks[key]

    def time_pair(self, ours, baseline, **kw) -> tuple[Timing, Timing | None]:
        kw = {"device": self.device, "repeat": self.repeat, "warmup": self.warmup, "budget_s": self.budget_s, **kw}
        return time_pair(ours, baseline, **kw)

    def time(self, fn, warmup_fn=None, **kw) -> Timing:
        return self.time_pair(fn, None, warmup_ours=warmup_fn, **kw)[0]


# ----------------------------------------------------------------------------- discovery
@dataclass(frozen=True)
class Benchmark:
    """A named benchmark: ``run(ctx) -> list[Result]``. ``default=False`` benchmarks run
    only when named (e.g. the several-minutes memory run of ``structlearn discover``)."""

    name: str
    order: int
    run: Callable[[Context], list[Result]]
    summary: str
    default: bool = True


def load_benchmarks(folder: str | Path | None = None) -> dict[str, Benchmark]:
    """Import every module of ``folder`` (a package: it has ``__init__.py``) and collect
    their ``BENCHMARK`` objects, ordered by ``order``. Modules may import shared helpers
    from their siblings with relative imports (``from ._data import ...``)."""
    folder = default_dir() if folder is None else Path(folder)
    init = folder / "__init__.py"
    if not init.is_file():
        raise ValueError(f"benchmark folder {str(folder)!r} has no __init__.py; allowed: a folder like "
                         f"experiments/benchmarks of a structlearn checkout (run from one, or pass --dir)")
    pkg = f"_structlearn_benchmarks_{abs(hash(str(folder.resolve())))}"
    if pkg not in sys.modules:
        spec = importlib.util.spec_from_file_location(pkg, init, submodule_search_locations=[str(folder)])
        if spec is None or spec.loader is None:
            raise ValueError(f"cannot import the benchmark package {str(init)!r}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[pkg] = module
        spec.loader.exec_module(module)
    found: dict[str, Benchmark] = {}
    for path in sorted(folder.glob("*.py")):
        if path.name.startswith("_"):
            continue
        mod = importlib.import_module(f"{pkg}.{path.stem}")
        b = getattr(mod, "BENCHMARK", None)
        if isinstance(b, Benchmark):
            if b.name in found:
                raise ValueError(f"benchmark name {b.name!r} is defined twice (in {path.name})")
            found[b.name] = b
    return dict(sorted(found.items(), key=lambda kv: (kv[1].order, kv[0])))


def select(benchmarks: dict[str, Benchmark], names: Sequence[str] | None) -> list[Benchmark]:
    """The named benchmarks (in the given order), or every default one when ``names`` is empty."""
    if not names:
        return [b for b in benchmarks.values() if b.default]
    unknown = [n for n in names if n not in benchmarks]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)}; available: {', '.join(benchmarks)}")
    return [benchmarks[n] for n in names]


def run_benchmarks(selected: Sequence[Benchmark], ctx: Context,
                   on_result: Callable[[Result], None] | None = None) -> tuple[list[Result], list[str]]:
    """Run each benchmark; returns its rows and the errors (a failing benchmark is reported
    with its traceback and does not stop the others)."""
    results: list[Result] = []
    errors: list[str] = []
    from structlearn.runtime import progress

    for b in progress(selected, desc="benchmarks", unit="bench"):
        try:
            rows = b.run(ctx)
        except Exception:  # one broken benchmark must not hide the others' numbers
            errors.append(f"{b.name}: {traceback.format_exc()}")
            continue
        for r in rows:
            results.append(r)
            if on_result is not None:
                on_result(r)
    return results, errors


# ----------------------------------------------------------------------------- report
def _cpu_model() -> str:
    info = Path("/proc/cpuinfo")
    for line in info.read_text().splitlines() if info.is_file() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("numpy", "scipy", "sklearn"):
        try:
            out[name] = importlib.import_module(name).__version__
        except ImportError:
            out[name] = "not installed"
    return out


def machine_meta(ctx: Context, command: str) -> dict:
    """Date, command, machine and load: what a reader needs to weigh the numbers."""
    dev = ctx.device
    return {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "machine": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "threads": ctx.threads,
        "device": str(dev) if dev.type != "cuda" else f"{dev} ({torch.cuda.get_device_name(dev)})",
        "size": ctx.size,
        "repeat": ctx.repeat,
        "warmup": ctx.warmup,
        "budget_s": ctx.budget_s,
        "versions": _versions(),
        "loadavg_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def report(results: Sequence[Result], meta: dict, ctx: Context | None = None, errors: Sequence[str] = ()) -> dict:
    meta = dict(meta)
    if hasattr(os, "getloadavg"):
        meta["loadavg_end"] = list(os.getloadavg())
    if ctx is not None:
        meta["matmul_gflops"] = dict(ctx.peaks)
    return {"schema": SCHEMA, "meta": meta, "results": [r.to_dict() for r in results], "errors": list(errors)}


def validate_report(rep: dict) -> None:
    """Raise ``ValueError`` unless ``rep`` follows the schema of the module docstring."""
    if not isinstance(rep, dict) or rep.get("schema") != SCHEMA:
        raise ValueError(f"not a benchmark report: schema must be {SCHEMA!r}")
    for key in ("meta", "results", "errors"):
        if key not in rep:
            raise ValueError(f"benchmark report lacks {key!r}")
    for i, row in enumerate(rep["results"]):
        missing = [k for k in RESULT_KEYS if k not in row]
        if missing:
            raise ValueError(f"result {i} lacks {', '.join(missing)}")
        if not (isinstance(row["ours_s"], float) and row["ours_s"] > 0):
            raise ValueError(f"result {i}: ours_s must be a positive float; got {row['ours_s']!r}")
        if row["baseline_s"] is not None and row["speedup"] is not None:
            if not math.isclose(row["speedup"], row["baseline_s"] / row["ours_s"], rel_tol=1e-9):
                raise ValueError(f"result {i}: speedup != baseline_s / ours_s")


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if v == 0 or 1e-3 <= abs(v) < 1e5:
            return f"{v:.4g}"
        return f"{v:.2e}"
    return str(v)


def format_table(results: Sequence[Result | dict], quality_keys: int = 3) -> str:
    """Markdown table: benchmark, case, ours, baseline, ratio, peak fraction, target, met,
    and the first ``quality_keys`` quality figures."""
    rows = [r.to_dict() if isinstance(r, Result) else r for r in results]
    head = "| benchmark | case | ours | baseline | ratio | peak frac | target | met | same answer |"
    lines = [head, "|" + "---|" * 9]
    for r in rows:
        t = r["target"]
        target = "-" if t is None else f"{t['metric']} {t['op']} {t['value']:g}"
        keys = r.get("quality_order") or list(r["quality"])  # JSON sorts keys: keep the benchmark's order
        q = "; ".join(f"{k}={_fmt(r['quality'][k])}" for k in keys[:quality_keys])
        ratio = "-" if r["speedup"] is None else f"{r['speedup']:.2f}x"
        pf = "-" if r["peak_fraction"] is None else f"{r['peak_fraction']:.2f}"
        lines.append(f"| {r['benchmark']} | {r['case']} | {_fmt_s(r['ours_s'])} | {_fmt_s(r['baseline_s'])} | "
                     f"{ratio} | {pf} | {target} | {_fmt(r['met'])} | {q} |")
    return "\n".join(lines)
