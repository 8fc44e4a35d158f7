"""The benchmark harness (structlearn.bench) and the benchmark definitions at tiny sizes.

Mechanics only: call counts and order, medians, ratio arithmetic, targets, the JSON schema,
discovery and the CLI. The benchmarks themselves run at their "tiny" size to check that both
sides reach the same answer. No assertion here is about speed.
"""
import json
import math
import textwrap

import pytest
import torch

from structlearn.bench import (
    DEFAULT_DIR,
    SCHEMA,
    Context,
    Result,
    Target,
    Timing,
    fit_exponent,
    format_table,
    load_benchmarks,
    machine_meta,
    report,
    run_benchmarks,
    select,
    time_pair,
    validate_report,
)
from structlearn.cli import main


def test_timing_median_even_and_odd():
    assert Timing([3.0, 1.0, 2.0]).median == 2.0
    assert Timing([4.0, 1.0, 3.0, 2.0]).median == 2.5
    assert Timing([5.0]).n == 1
    with pytest.raises(ValueError, match="no timed calls"):
        Timing([]).median


def test_time_pair_warmup_interleaving_and_counts():
    calls = []
    t_o, t_b = time_pair(lambda: calls.append("o"), lambda: calls.append("b"), repeat=3, warmup=2, budget_s=60,
                         warmup_baseline=lambda: calls.append("wb"))
    assert calls == ["o", "o", "wb", "wb", "o", "b", "o", "b", "o", "b"]
    assert (t_o.n, t_b.n) == (3, 3)
    assert all(t >= 0 for t in t_o.times + t_b.times)


def test_time_pair_budget_stops_after_one_call_and_single_side():
    calls = []
    t_o, t_b = time_pair(lambda: calls.append("o"), lambda: calls.append("b"), repeat=5, warmup=0, budget_s=1e-12)
    assert (t_o.n, t_b.n) == (1, 1) and calls == ["o", "b"]
    t, none = time_pair(lambda: None, None, repeat=4, warmup=0)
    assert none is None and t.n == 4
    with pytest.raises(ValueError, match="repeat"):
        time_pair(lambda: None, None, repeat=0)
    with pytest.raises(ValueError, match="budget_s"):
        time_pair(lambda: None, None, budget_s=0)


def test_result_ratio_peak_fraction_and_targets():
    r = Result("b", "c", "ours", "base", Timing([1.0, 2.0, 3.0]), Timing([10.0, 20.0, 30.0, 40.0]),
               flops=4e9, peak_gflops=8.0, target=Target("speedup", ">=", 12), quality={"err": 1e-7})
    assert r.ours_s == 2.0 and r.baseline_s == 25.0
    assert r.speedup == pytest.approx(12.5)
    assert r.gflops == pytest.approx(2.0)  # 4 GFLOP in 2 s
    assert r.peak_fraction == pytest.approx(0.25)
    assert r.met is True
    assert Target("speedup", ">=", 13).met(r) is False
    assert Target("err", "<=", 1e-6).met(r) is True
    assert Target("missing", "<=", 1.0).met(r) is None
    alone = Result("b", "c", "ours", None, Timing([0.5]))
    assert alone.speedup is None and alone.peak_fraction is None and alone.met is None
    with pytest.raises(ValueError, match="op"):
        Target("speedup", ">", 1)


def test_fit_exponent_recovers_power_law():
    x = [576, 2304, 4096]
    assert fit_exponent(x, [3.0 * v**1.7 for v in x]) == pytest.approx(1.7, abs=1e-12)
    with pytest.raises(ValueError):
        fit_exponent([1.0], [2.0])
    with pytest.raises(ValueError):
        fit_exponent([2.0, 2.0], [1.0, 3.0])


def _rows():
    return [Result("b", "c1", "ours", "base", Timing([1.0, 3.0]), Timing([4.0]), target=Target("speedup", ">=", 2),
                   quality={"abs_diff": 0.0}),
            Result("b", "c2", "ours", None, Timing([0.25]), flops=1e9, peak_gflops=10.0)]


def test_report_json_schema_round_trip_and_validation():
    ctx = Context(size="tiny", repeat=1)
    rep = report(_rows(), machine_meta(ctx, "structlearn bench b"), ctx, errors=[])
    rep = json.loads(json.dumps(rep, sort_keys=True))  # as written to disk
    validate_report(rep)
    assert "abs_diff=0" in format_table(rep["results"])  # quality shown in the benchmark's order
    assert rep["schema"] == SCHEMA
    row = rep["results"][0]
    assert (row["ours_s"], row["baseline_s"], row["speedup"], row["met"]) == (2.0, 4.0, 2.0, True)
    assert rep["results"][1]["peak_fraction"] == pytest.approx(0.4)  # 1 GFLOP / 0.25 s / 10
    for key in ("date", "command", "cpu", "cores", "threads", "device", "versions", "loadavg_start", "loadavg_end"):
        assert key in rep["meta"]
    bad = json.loads(json.dumps(rep))
    bad["results"][0]["speedup"] = 3.0
    with pytest.raises(ValueError, match="speedup"):
        validate_report(bad)
    del bad["results"][0]["quality"]
    with pytest.raises(ValueError, match="quality"):
        validate_report(bad)
    with pytest.raises(ValueError, match="schema"):
        validate_report({"results": []})


def test_format_table_has_one_line_per_row():
    table = format_table(_rows())
    lines = table.splitlines()
    assert len(lines) == 2 + 2
    assert "2.00x" in lines[2] and "speedup >= 2" in lines[2] and "abs_diff=0" in lines[2]
    assert "0.40" in lines[3]  # peak fraction


def test_context_validation_and_seeded_generators():
    with pytest.raises(ValueError, match="size"):
        Context(size="huge")
    ctx = Context(size="tiny")
    a = torch.rand(3, generator=ctx.generator("x"))
    assert torch.equal(a, torch.rand(3, generator=ctx.generator("x")))
    assert not torch.equal(a, torch.rand(3, generator=ctx.generator("y")))
    assert ctx.pick(1, 2, 3) == 3
    made = []
    assert ctx.cached("k", lambda: made.append(1) or 7) == 7 and ctx.cached("k", lambda: 8) == 7 and made == [1]


def test_discovery_selection_and_defaults():
    benches = load_benchmarks(DEFAULT_DIR)
    expected = ["dictionary_learning", "sparse_inference", "ica", "mcr2", "knn_entropy", "fista_efficiency",
                "scaling", "data_pipeline", "discover_memory", "redunet", "contention", "linear_cost",
                "linear_convergence", "sharded"]
    assert list(benches) == expected
    minutes_long = {"discover_memory", "contention", "linear_convergence", "sharded"}  # run only by name
    assert [b.name for b in select(benches, [])] == [n for n in expected if n not in minutes_long]
    assert [b.name for b in select(benches, ["mcr2", "ica"])] == ["mcr2", "ica"]
    with pytest.raises(ValueError, match="available: dictionary_learning"):
        select(benches, ["nope"])


def test_redunet_benchmark_tiny():
    rows = _run_tiny("redunet")
    assert all(r.quality["E_probe_rel_diff"] < 1e-10 for r in rows)  # the two forms build the same operator


def test_linear_cost_benchmark_tiny():
    rows = _run_tiny("linear_cost")
    exps = {r.case: r.quality["exponent"] for r in rows if "exponent" in r.quality}
    assert set(exps) == {f"exponent of time vs units: {v}" for v in ("bcd_exact", "bcd_sparse_power", "usage_power")}
    conv = _run_tiny("linear_convergence")
    assert len(conv) == 3 and all(r.quality["bcd_objective"] > 0 and r.quality["samples_ratio"] > 0 for r in conv)


@pytest.mark.slow  # three torchrun launches (11 s); tests/test_parallel.py runs torchrun in the default suite
def test_sharded_benchmark_tiny():
    rows = _run_tiny("sharded")  # three torchrun launches (1 process; 2 as dp, as atoms) on a tiny layer
    assert {r.case.rsplit(", ", 1)[1] for r in rows} == {"dp", "atoms"}
    assert all(r.baseline_s > 0 for r in rows)


def _run_tiny(name):
    ctx = Context(size="tiny", repeat=1, warmup=0)
    rows, errors = run_benchmarks([load_benchmarks(DEFAULT_DIR)[name]], ctx)
    assert errors == []
    assert rows and all(r.benchmark == name and r.ours_s > 0 for r in rows)
    return rows


def test_mcr2_both_sides_same_value_and_gradient():
    for r in _run_tiny("mcr2"):
        assert r.quality["loss_rel_diff_f32"] < 1e-5
        assert r.quality["grad_rel_diff_f32"] < 1e-4
        # float64: only the reference's tr(Pi_j) + 1e-8 separates the two (about 1e-9 relative)
        assert r.quality["loss_rel_diff_f64"] < 1e-7
        assert r.quality["grad_rel_diff_f64"] < 1e-7


def test_knn_entropy_both_sides_same_value():
    rows = _run_tiny("knn_entropy")
    assert [("faiss" in r.baseline) for r in rows] == [False, True] * (len(rows) // 2)
    for r in rows:  # cKDTree in float64: to rounding; faiss ranks and measures in float32
        assert r.quality["abs_diff_nats"] < (1e-9 if "H_kdtree" in r.quality else 1e-5)
        assert math.isfinite(r.quality["H_ours"])


def test_sparse_inference_equal_objective():
    for r in _run_tiny("sparse_inference"):
        assert r.quality["equal_objective"] is True
        assert 0 <= r.quality["ours_rel_excess"] <= 1e-4 + 1e-12
        assert r.quality["lars_rel_dual_gap"] < 1e-5


def test_dictionary_learning_reaches_sklearn_objective():
    r, spams = _run_tiny("dictionary_learning")
    assert r.quality["reached"] is True
    assert r.quality["objective_ours"] <= r.quality["objective_sklearn"] * (1 + 1e-6)
    assert r.quality["eval_rel_dual_gap"] < 1e-6
    # SPAMS's trainDL row: evaluated by the same exact solver; whether ours reaches it is the measurement
    assert "SPAMS trainDL" in spams.baseline and spams.quality["eval_rel_dual_gap"] < 1e-6
    assert spams.quality["reached"] == (spams.quality["objective_ours"] <= spams.quality["objective_spams"] * (1 + 1e-6))


def test_ica_reaches_fastica_and_picard_quality():
    synthetic, synthetic_picard, patches, patches_picard = _run_tiny("ica")
    for r, base in ((synthetic, "fastica"), (synthetic_picard, "picard")):
        assert r.quality["reached"] is True
        assert r.quality["amari_ours"] <= r.quality[f"amari_{base}"] * (1.01 if base == "picard" else 1) + 1e-12
    for r, base in ((patches, "fastica"), (patches_picard, "picard")):
        assert r.quality["reached"] is True
        assert r.quality["negentropy_ours"] >= 0.99 * r.quality[f"negentropy_{base}"]


def test_fista_efficiency_counts_the_route_taken_and_data_pipeline_identical():
    rows = _run_tiny("fista_efficiency")
    assert all(r.peak_fraction is not None and r.peak_fraction > 0 for r in rows)
    # tiny cases: k=32 <= 2d=32 uses the Gram matrix, k=64 > 2d goes through D; flops follow the route
    assert [r.quality["route"] for r in rows] == ["gram", "through D"]
    mosaics = _run_tiny("data_pipeline")[0]
    assert mosaics.quality["max_abs_diff"] < 1e-5


def test_cli_runs_a_benchmark_folder_and_writes_valid_json(tmp_path, capsys):
    folder = tmp_path / "benches"
    folder.mkdir()
    (folder / "__init__.py").write_text("")
    (folder / "toy.py").write_text(textwrap.dedent("""
        from structlearn.bench import Benchmark, Result, Target

        def run(ctx):
            ours, base = ctx.time_pair(lambda: sum(range(10)), lambda: sum(range(1000)))
            return [Result("toy", "sum", "short sum", "long sum", ours, base,
                           target=Target("speedup", ">=", 0), quality={"same": 45 == sum(range(10))})]

        BENCHMARK = Benchmark("toy", 1, run, "a toy")
    """))
    (folder / "broken.py").write_text(textwrap.dedent("""
        from structlearn.bench import Benchmark

        def run(ctx):
            raise RuntimeError("boom")

        BENCHMARK = Benchmark("broken", 2, run, "always fails", default=False)
    """))
    out = tmp_path / "bench.json"
    assert main(["bench", "--dir", str(folder), "--quick", "--repeat", "2", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    validate_report(rep)
    assert [r["case"] for r in rep["results"]] == ["sum"] and rep["results"][0]["ours_n"] == 2
    assert "| toy | sum |" in capsys.readouterr().out
    assert main(["bench", "--show", str(out)]) == 0  # the table of a saved report
    assert "| toy | sum | " in capsys.readouterr().out
    assert main(["bench", "--dir", str(folder), "broken"]) == 1
    assert "boom" in capsys.readouterr().err
    assert main(["bench", "--dir", str(folder), "nope"]) == 2
    assert main(["bench", "--dir", str(tmp_path / "missing")]) == 2
