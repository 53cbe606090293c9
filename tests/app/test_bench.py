"""The benchmark suite (elman.bench) runs end to end at tiny sizes and writes sane outputs.

Benchmarks are not tests: these keep the suite working, they do not judge speed.
"""
import json
import math

import pytest

import elman._core
from elman import bench

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUN_KEYS = {"threads", "openblas", "env", "cpu_model", "versions", "elman_config",
            "threadpools", *bench.DEFAULT_SECTIONS}
HIDDEN = {"torch", "jax", "optax", "matplotlib"}


def positive(x):
    return isinstance(x, (int, float)) and math.isfinite(x) and x > 0


def markdown_table(text, heading):
    """Rows (lists of cells) of the first table after ``heading``, header row first."""
    lines = text[text.index(heading):].splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("|"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return [rows[0]] + rows[2:]   # drop the |---| line


def elman_cells(text, heading, column):
    header, *rows = markdown_table(text, heading)
    return [row[header.index(column)] for row in rows]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One worker process, every section, with whatever peers are installed."""
    out = tmp_path_factory.mktemp("bench")
    status = bench.main(["--tiny", "--threads", "1", "--out", str(out)])
    with open(out / "bench.json", encoding="utf-8") as f:
        result = json.load(f)
    return status, out, result, (out / "bench.md").read_text(encoding="utf-8")


def test_tiny_run_writes_json_and_markdown(tiny_run):
    status, out, result, md = tiny_run
    assert status == 0
    assert set(result) == {"date", "machine", "settings", "runs"}
    assert result["settings"]["preset"] == "tiny"
    (run,) = result["runs"]
    assert RUN_KEYS <= set(run)
    assert run["threads"] == 1 and run["openblas"] == "as-is"
    assert run["env"]["OPENBLAS_NUM_THREADS"] == "1"
    assert set(bench.OPENBLAS_VARS) <= set(run["env"])
    assert "kernel_path" in run["elman_config"]
    for heading in ("## 1. Machine limits", "## 2. Adagrad step", "## 3. RNN training step",
                    "## 4. Generation", "## 5. Scaling", "## 9. The Python layer's cost",
                    "## 11. bfloat16 compute", "bfloat16 peak"):
        assert heading in md
    for cell in (elman_cells(md, "## 2.", bench.ADAGRAD_IMPLS["elman"])
                 + elman_cells(md, "## 3.", bench.RNN_IMPLS["elman"])
                 + elman_cells(md, "## 4.", bench.GENERATE_IMPLS["elman"])):
        assert cell[0].isdigit(), cell
    assert "Gt V=11 H=8 B=5" in md and "GF/s" in md.split("## 4.")[1].split("## 5.")[0]


def test_tiny_run_numbers_are_positive_and_finite(tiny_run):
    _, _, result, _ = tiny_run
    (run,) = result["runs"]
    limits = run["limits"]
    assert all(positive(r["gbps"]) for r in limits["stream"])
    assert limits["fma_peak"]["status"] == "ok" and positive(limits["fma_peak"]["gflops"])
    assert all(positive(r["gflops"]) for r in [limits["sgemm_peak"], *limits["sgemm"]])
    for row in run["adagrad"]:
        if row["impl"] in ("elman", "numpy"):
            assert row["status"] == "ok", row
            assert all(positive(row[k]) for k in ("seconds", "us", "gbps", "pct_probe"))
    losses = {}
    for row in run["rnn"]:
        if row["status"] == "ok":
            assert all(positive(row[k]) for k in ("ms", "tokens_per_s", "gflops", "pct_peak"))
            losses[row["name"], row["impl"]] = row["loss"]
        else:
            assert row["impl"] in ("torch", "jax") and row["status"] == "not installed", row
    for shape in bench.PRESETS["tiny"].rnn:
        # same model, same seed, two backends: the first step's loss agrees
        assert losses[shape.name, "elman"] == pytest.approx(losses[shape.name, "numpy"],
                                                            rel=1e-4)
    for row in run["generate"]:
        if row["impl"] == "numpy" or row["status"] != "not available":
            assert row["status"] == "ok" and positive(row["chars_per_s"]), row
    batched = [r for r in run["generate"] if r["streams"] > 1]
    assert {r["impl"] for r in batched} == {"elman", "numpy"}
    assert all(r["streams"] == 5 and positive(r["gflops"]) for r in batched
               if r["status"] == "ok")
    for row in run["overhead"]:
        assert positive(row["c_us"]) and row["c_steps"] >= 10
        for impl in ("TrainStep", "train_step"):
            assert row[impl]["status"] == "ok" and positive(row[impl]["us"]), row
    kernel = elman.bf16_kernel()
    from elman.bench import probes
    for name, probe in (("bf16_peak", probes.bf16_probe), ("amx_peak", probes.amx_probe)):
        peak = limits[name]
        assert (peak["status"] == "ok") == (probe(0) is not None), name
        if peak["status"] == "ok":
            assert positive(peak["gflops"])
    for row in run["bf16"]:
        a, b = row["float32"], row["bfloat16"]
        assert a["status"] == b["status"] == "ok", row
        assert positive(row["speedup"]) and positive(b["gflops"]) and positive(a["pct_fma"])
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-2)   # one model, two dtypes
        assert row["kernel"] == kernel
        assert ("pct_bf16" in b) == (kernel != "emulated")
    for axis in ("T", "B", "H"):
        sweep = run["scaling"][axis]
        assert all(p["status"] == "ok" and positive(p["ms"]) for p in sweep["points"])
        assert len(sweep["ratio_per_doubling"]) == len(sweep["points"]) - 1


def test_tiny_run_writes_png_plots(tiny_run):
    _, out, _, md = tiny_run
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert "none (matplotlib is not installed)" in md
        return
    for name in ("adagrad.png", "rnn.png", "scaling.png"):
        with open(out / name, "rb") as f:
            assert f.read(8) == PNG_SIGNATURE, name
        assert name in md


def test_runs_without_torch_jax_and_matplotlib(tmp_path, monkeypatch, capsys):
    real = bench.optional_module
    monkeypatch.setattr(bench.suite, "optional_module",
                        lambda name: None if name.split(".")[0] in HIDDEN else real(name))
    status = bench.main(["--tiny", "--threads", "1", "--in-process", "--only",
                         "adagrad,rnn", "--out", str(tmp_path)])
    assert status == 0
    captured = capsys.readouterr()
    assert "matplotlib is not installed" in captured.err
    assert "## 3. RNN training step" in captured.out
    assert not list(tmp_path.glob("*.png"))
    result = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))
    (run,) = result["runs"]
    assert run["versions"]["torch"] == run["versions"]["jax"] == "not installed"
    assert "limits" not in run and "scaling" not in run
    for row in run["adagrad"] + run["rnn"]:
        expected = "not installed" if row["impl"].startswith(("torch", "jax")) else "ok"
        assert row["status"] == expected, row
        assert "pct_probe" not in row and "pct_peak" not in row   # no limits section ran
    md = (tmp_path / "bench.md").read_text(encoding="utf-8")
    assert "- plots: none (matplotlib is not installed)" in md
    assert "not installed" in md
    assert all(c[0].isdigit() for c in elman_cells(md, "## 3.", bench.RNN_IMPLS["elman"]))


def test_worker_environment(monkeypatch):
    monkeypatch.setenv("OPENBLAS_CORETYPE", "Haswell")
    one = bench._worker_env(1, "unset")
    two = bench._worker_env(2, "as-is")
    assert one["OMP_NUM_THREADS"] == one["OPENBLAS_NUM_THREADS"] == one["MKL_NUM_THREADS"] == "1"
    assert "intra_op_parallelism_threads=1" in one["XLA_FLAGS"]
    assert "OPENBLAS_CORETYPE" not in one and "OPENBLAS_L2_SIZE" not in one
    assert two["OPENBLAS_NUM_THREADS"] == "2" and "OPENBLAS_CORETYPE" in two


def test_doubling_ratios():
    points = [{"value": v, "status": "ok", "seconds": 0.5 * v} for v in (1, 2, 8)]
    assert bench.doubling_ratios(points) == pytest.approx([2.0, 2.0])


@pytest.mark.parametrize("argv", [["--only", "adagrad,bogus"], ["--threads", "0"],
                                  ["--in-process", "--openblas", "both"],
                                  ["--long-range-methods", "hf,newton"],
                                  ["--long-range-tasks", "adding,sorting"]])
def test_bad_arguments_exit_with_usage(argv, tmp_path):
    with pytest.raises(SystemExit):
        bench.main(["--tiny", "--out", str(tmp_path), *argv])


def test_uses_the_c_probe_and_elman_sample(tmp_path, monkeypatch):
    """The bandwidth probe is elman's C loop; generation runs ElmanRNN.sample."""
    monkeypatch.setattr(bench.suite, "optional_module", lambda name: None)
    assert bench.main(["--tiny", "--threads", "1", "--in-process", "--only",
                       "limits,generate", "--out", str(tmp_path)]) == 0
    (run,) = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))["runs"]
    assert all(r["method"].startswith("C loop") and positive(r["gbps"])
               for r in run["limits"]["stream"])
    elman_row = next(r for r in run["generate"] if r["impl"] == "elman")
    assert elman_row["status"] == "ok" and positive(elman_row["chars_per_s"])


@pytest.mark.parametrize("preset", list(bench.PRESETS))
def test_worker_command_line_round_trips(preset):
    args = bench._parser().parse_args(
        bench.worker_args("out.json", preset, ["rnn", "limits"], 2, "unset"))
    assert args.worker == "out.json" and args.threads == [2] and args.openblas == "unset"
    assert args.only == ["limits", "rnn"]
    assert args.preset == preset


def test_long_range_flags_reach_the_worker():
    argv = ["--long-range-budget", "2.5", "--long-range-lengths", "10,20",
            "--long-range-tasks", "adding", "--long-range-methods", "sgd,hf_sd"]
    given = bench._long_range(bench._parser().parse_args(argv))
    assert given == {"budget": 2.5, "lengths": [10, 20], "tasks": ["adding"],
                     "methods": ["sgd", "hf_sd"]}
    worker = bench._parser().parse_args(
        bench.worker_args("out.json", "tiny", ["long-range"], 1, "as-is",
                          bench._long_range_flags(bench._parser().parse_args(argv))))
    assert bench._long_range(worker) == given


def test_a_method_that_fails_at_one_length_skips_the_longer_ones(monkeypatch):
    """hf solves T = 10 and 20 and is trained at 30; sgd fails at 10 and is not trained at
    20 or 30; lengths are taken shortest first whatever their order."""
    from elman.bench import second_order
    trained = []

    def fake_cell(task, T, method, grid, *, log=None, seed=0):
        trained.append((T, method))
        return dict(task=task, T=T, method=method, label=method, right=1.0, best=1.0,
                    solved=(method == "hf" and T < 30), seconds=0.0, steps=1,
                    sequences=1, evals=[], budget=grid.budget)

    monkeypatch.setattr(second_order, "train_cell", fake_cell)
    worker = type("Worker", (), {"log": staticmethod(lambda text: None)})()
    out = second_order.long_range(worker, "tiny", lengths=[30, 10, 20], methods=["sgd", "hf"])
    assert trained == [(10, "sgd"), (10, "hf"), (20, "hf"), (30, "hf")]
    skipped = [(c["T"], c["method"], c["skipped"]) for c in out["cells"] if "skipped" in c]
    assert skipped == [(20, "sgd", 10), (30, "sgd", 10)]
    assert out["grid"]["methods"] == ["sgd", "hf"]
    md = "\n".join(second_order.long_range_md(
        [{"threads": 1, "long_range": out}], lambda run: str(run["threads"]),
        bench.report._table))
    assert md.count("not trained (not solved at T = 10)") == 2


def test_curvature_section_times_the_product_against_forward_backward(tiny_run):
    _, _, result, md = tiny_run
    (run,) = result["runs"]
    for row in run["curvature"]:
        assert row["fb"]["status"] == row["product"]["status"] == "ok"
        assert positive(row["ratio"])
        assert row["ratio"] == pytest.approx(row["product"]["seconds"] / row["fb"]["seconds"])
    ratios = elman_cells(md, "## Gauss-Newton products", "product / forward_backward")
    assert len(ratios) == len(run["curvature"]) and all(positive(float(r)) for r in ratios)


def test_long_range_section_trains_every_method_within_its_budget(tmp_path):
    out = tmp_path / "lr"
    assert bench.main(["--tiny", "--threads", "1", "--only", "long-range",
                       "--long-range-budget", "0.3", "--in-process", "--out", str(out)]) == 0
    result = json.loads((out / "bench.json").read_text(encoding="utf-8"))
    (run,) = result["runs"]
    cells = run["long_range"]["cells"]
    assert {c["method"] for c in cells} == {"sgd", "adagrad", "hf", "hf_sd"}
    for c in cells:
        assert "error" not in c, c
        assert 0 <= c["right"] <= 1 and c["steps"] >= 1 and c["sequences"] >= c["steps"]
        assert c["seconds"] >= 0.3 or c["solved"]
        assert c["evals"][-1][2] == c["right"]
    md = (out / "bench.md").read_text(encoding="utf-8")
    assert len(elman_cells(md, "## Long-range problems", "method")) == 4
    assert "Martens & Sutskever (2011)" in md


def test_sweep_section_covers_the_grid_and_draws_its_heatmaps(tmp_path):
    """--only sweep: a row per (H, B, T, layers) cell and implementation, elman's timed with
    its GFLOP/s and shares of both peaks, the table and (with matplotlib) sweep.png."""
    assert "sweep" not in bench.DEFAULT_SECTIONS and "sweep" in bench.OPT_IN_SECTIONS
    assert bench.main(["--tiny", "--threads", "1", "--in-process", "--only", "limits,sweep",
                       "--out", str(tmp_path)]) == 0
    (run,) = json.loads((tmp_path / "bench.json").read_text(encoding="utf-8"))["runs"]
    Hs, Bs, Ts, Ls = bench.PRESETS["tiny"].sweep_grid
    cells = {(r["H"], r["B"], r["T"], r["layers"]) for r in run["sweep"]}
    assert cells == {(H, B, T, L) for H in Hs for B in Bs for T in Ts for L in Ls}
    assert {r["impl"] for r in run["sweep"]} == set(bench.SWEEP_IMPLS)
    for r in run["sweep"]:
        if r["impl"] == "elman":
            assert r["status"] == "ok" and positive(r["gflops"]), r
            assert positive(r["pct_fma"]) and positive(r["pct_peak"])
    md = (tmp_path / "bench.md").read_text(encoding="utf-8")
    header, *rows = markdown_table(md, "## 10.")
    assert len(rows) == len(cells) and header[:5] == ["threads", "H", "B", "T", "layers"]
    if bench.optional_module("matplotlib") is not None:
        assert (tmp_path / "sweep.png").stat().st_size > 0


def test_sweep_matrix_puts_each_cell_in_its_row_and_column():
    from elman.bench.report import sweep_matrix
    rows = [dict(shape=f"s{H}{B}", H=H, B=B, T=4, layers=1, impl=impl, status="ok",
                 seconds=1.0 if impl == "elman" else 2.0 * H)
            for H in (8, 16) for B in (1, 2) for impl in ("elman", "torch")]
    Hs, cols, grid = sweep_matrix(rows, lambda by: by["torch"]["seconds"]
                                  / by["elman"]["seconds"])
    assert Hs == [8, 16] and cols == ["B=1 T=4 L=1", "B=2 T=4 L=1"]
    assert grid.tolist() == [[16.0, 16.0], [32.0, 32.0]]
