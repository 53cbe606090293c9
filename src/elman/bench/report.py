"""The report: bench.md tables and PNG plots from the JSON the workers write."""
from __future__ import annotations

import functools
import math
import os
import statistics
import sys

import numpy as np

from . import suite
from .suite import (ADAGRAD_BYTES, ADAGRAD_IMPLS, EPS, GENERATE_IMPLS, LR, OPENBLAS_VARS,
                    RNN_IMPLS, SWEEP_IMPLS, TORCH_ADAGRAD_IMPLS, TORCH_RNN_IMPLS, _count,
                    _duration, _num, _si)

# ---- report: markdown ---------------------------------------------------------------------

def _table(headers, rows):
    """A markdown table and the blank line after it."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines + [""]


def _status(r) -> str:
    """The cell of a row that did not run: not installed, not available, error."""
    return "error (see JSON)" if r["status"].startswith("error") else r["status"]


def _grouped(rows, key):
    """{rows[i][key]: {impl: row}}, in first-seen order."""
    out = {}
    for r in rows:
        out.setdefault(r[key], {})[r["impl"]] = r
    return out


def _best_peer(by_impl, labels):
    """(best peer's label, elman speed / best peer's speed) over the rows that ran."""
    peers = [r for impl, r in by_impl.items() if impl != "elman" and r["status"] == "ok"]
    if not peers:
        return "—", "—"
    best, mine = min(peers, key=lambda r: r["seconds"]), by_impl["elman"]
    ratio = f"{best['seconds'] / mine['seconds']:.2f}x" if mine["status"] == "ok" else "—"
    return labels[best["impl"]], ratio


def _cells(by_impl, impls, fmt):
    """One cell per implementation, in column order: fmt(row) where it ran, else its status."""
    return [fmt(by_impl[i]) if by_impl[i]["status"] == "ok" else _status(by_impl[i])
            for i in impls]


def _pct(r, key) -> str:
    return f" ({_num(r[key])}%)" if key in r else ""


def _run_label(run, show_openblas):
    return (f"{run['threads']} (OpenBLAS env {run['openblas']})" if show_openblas
            else str(run["threads"]))


def _header(result, pngs):
    s = result["settings"]
    runs = [r for r in result["runs"] if "error" not in r]
    lines = ["# elman benchmarks", "",
             f"- date: {result['date']}",
             f"- machine: {result['machine']['cpu_model']}, {result['machine']['cpu_count']} "
             f"logical CPUs, {result['machine']['platform']}",
             f"- settings: preset {s['preset']}, threads {', '.join(map(str, s['threads']))}, "
             f"OpenBLAS environment {s['openblas']}, sections {', '.join(s['sections'])}",
             f"- timing: median of {s['sizes']['repeats']} samples, each at least "
             f"{s['sizes']['min_time']} s of back-to-back calls, after two warm-up calls",
             "- plots: " + ("none (matplotlib is not installed)" if pngs is None
                            else ", ".join(pngs) or "none for these sections")]
    if runs:
        c = runs[0]["elman_config"]
        lines.append(f"- elman {c['elman']}: kernel path {c['kernel_path']}, CPU features "
                     f"{' '.join(c['cpu_features'])}, {c['compiler']}")
        v = runs[0]["versions"]
        lines.append("- versions: " + ", ".join(f"{k} {val}" for k, val in v.items()))
    for run in result["runs"]:
        head = f"- run: {run['threads']} thread(s), OpenBLAS environment {run['openblas']}"
        if "error" in run:
            lines.append(f"{head}: {run['error']}")
            continue
        env = ", ".join(f"{k}={run['env'][k]}" for k in (*OPENBLAS_VARS, "XLA_FLAGS"))
        blas = "; ".join(f"{os.path.basename(os.path.dirname(p['filepath']))}: "
                         f"{p['internal_api']} {p['version']} {p['architecture']}, "
                         f"{p['num_threads']} threads" for p in run["threadpools"]
                         if p["user_api"] == "blas")
        lines.append(f"{head}: {env}; BLAS {blas}")
    return lines + [""]


def _limits_md(runs, label):
    lines = ["## 1. Machine limits", "",
             f"Stream probe: GB/s of the Adagrad access pattern ({ADAGRAD_BYTES} bytes per "
             f"float32 element: read p, g, S; write p, S), by "
             f"{runs[0]['limits']['stream'][0]['method']}.", ""]
    ns = [r["n"] for r in runs[0]["limits"]["stream"]]
    rows = []
    for run in runs:
        rows.append([label(run)] + [f"{_num(r['gbps'])} GB/s" if r["status"] == "ok"
                                    else _status(r) for r in run["limits"]["stream"]])
    lines += _table(["threads"] + [f"n={_count(n)}" for n in ns], rows)
    lines += ["FMA peak: GFLOP/s of independent float32 vector multiply-adds on registers on "
              "every thread (`elman.bench.probes.fma_probe`), the ceiling of every GEMM "
              "below; sgemm at 2048³ beside it.", ""]
    rows = []
    for run in runs:
        lim = run["limits"]
        fma, sq = lim.get("fma_peak", {}), lim["sgemm_peak"]
        rows.append([label(run),
                     f"{_num(fma['gflops'])} GFLOP/s" if fma.get("status") == "ok"
                     else _status(fma) if fma else "—",
                     f"{_num(sq['gflops'])} GFLOP/s" if sq["status"] == "ok" else _status(sq),
                     f"{_num(100 * sq['gflops'] / fma['gflops'])}%"
                     if sq["status"] == "ok" and fma.get("status") == "ok" else "—"])
    lines += _table(["threads", "FMA peak", "sgemm 2048³", "sgemm / FMA peak"], rows)
    def peak_cell(b):
        return (f"{_num(b['gflops'])} GFLOP/s" if b.get("status") == "ok"
                else _status(b) if b else "—")
    rows = [[label(run), peak_cell(run["limits"].get("bf16_peak", {})),
             peak_cell(run["limits"].get("amx_peak", {}))] for run in runs]
    lines += ["bfloat16 peaks: GFLOP/s of independent `vdpbf16ps` (16 lanes, two products "
              "each; `elman.bench.probes.bf16_probe`) and of independent AMX `tdpbf16ps` "
              "(a 16 x 16 tile of C += a 16 x 32 by 32 x 16 product; "
              "`elman.bench.probes.amx_probe`) on every thread: the ceilings of the "
              "bfloat16 products' two native kernels (§11).", ""]
    lines += _table(["threads", "vdpbf16ps peak", "AMX peak"], rows)
    lines += ["sgemm through SciPy's BLAS (the library elman's GEMMs call), float32, "
              "Fortran-ordered operands, C written in place; % of the square reference. "
              "For the per-step recurrence product, also elman's own kernel "
              "(`elman.bench.probes.step_gemm`), which the training step uses instead of a BLAS call.",
              ""]
    rows = []
    for run in runs:
        lim = run["limits"]
        for r in [lim["sgemm_peak"], *lim["sgemm"]]:
            rows.append([label(run), r["problem"], r["role"], f"{r['m']}x{r['k']}x{r['n']}",
                         _num(r["gflops"]) if r["status"] == "ok" else _status(r),
                         f"{_num(r['pct_peak'])}%" if "pct_peak" in r else "—",
                         _num(r["elman_gflops"]) if "elman_gflops" in r else "—"])
    return lines + _table(["threads", "problem", "product", "m x k x n", "sgemm GFLOP/s",
                           "% of peak", "elman step kernel GFLOP/s"], rows)


def _peer_table(runs, label, section, key, impls, cell):
    """A comparison table: a row per run and value of ``key`` in ``section``, a cell per
    implementation (``cell`` of its result), then the best peer and elman's speed over it."""
    rows = []
    for run in runs:
        for value, by_impl in _grouped(run[section], key).items():
            rows.append([label(run), value, *_cells(by_impl, impls, cell),
                         *_best_peer(by_impl, impls)])
    return _table(["threads", key, *impls.values(), "best peer", "elman / best peer"], rows)


def _adagrad_md(runs, label):
    lines = ["## 2. Adagrad step", "",
             f"float32, torch semantics (lr {LR}, eps {EPS}). Cell: time per step, GB/s at "
             f"{ADAGRAD_BYTES} bytes per element, (% of the stream probe at the same n). "
             "elman and NumPy update one flat buffer in one call (also for the many-tensor "
             "case: elman's design); torch updates a list of tensors. Last column: elman's "
             "speed over the best peer's (above 1: elman is faster).", ""]
    return lines + _peer_table(runs, label, "adagrad", "case", ADAGRAD_IMPLS,
                               lambda r: f"{_duration(r['seconds'])} · {_num(r['gbps'])} GB/s"
                                         f"{_pct(r, 'pct_probe')}")


def _sparse_md(runs, label):
    lines = ["Sparse-row Adagrad: `Adagrad.step()` of a token-id model (V rows of W_xh, H "
             "hidden, 16 outputs) after a step on T*B ids, with every row updated (dense) or "
             "only the rows the ids used (`sparse_rows=True`; the same result with "
             "weight_decay 0).", ""]
    rows = []
    for run in runs:
        by_shape = _grouped(run.get("adagrad_sparse", []), "V")
        for V, by_impl in by_shape.items():
            d, s_ = by_impl.get("dense", {}), by_impl.get("sparse_rows", {})
            if d.get("status") != "ok" or s_.get("status") != "ok":
                continue
            rows.append([label(run), f"V={V:,} H={d['H']}", f"{d['T'] * d['B']:,} "
                         f"({d['distinct']:,} distinct)", _duration(d["seconds"]),
                         _duration(s_["seconds"]), f"{d['seconds'] / s_['seconds']:.1f}x"])
    return lines + _table(["threads", "model", "ids per step", "dense", "sparse_rows",
                           "speed-up"], rows) if rows else []


def _rnn_md(runs, label):
    lines = ["## 3. RNN training step", "",
             "Forward, softmax cross-entropy on every step (mean), full BPTT, Adagrad; h0 = 0. "
             "Cell: time per step · tokens/s (T*B per step) · GFLOP/s of the step's matrix "
             "products (6TBH² + 6TBHO, + 4TBIH for dense input; the same count for every "
             "peer) (% of the sgemm peak, then of the FMA peak, at this thread count). "
             "torch consumes token ids "
             "one-hot (nn.RNN has no id input; the one-hot tensor is built once, outside the "
             "step), so it does a (TB,V)x(V,H) GEMM that the others replace by a gather. "
             "optax.adagrad puts eps inside the square root; with eps 1e-10 this changes "
             "nothing measurable.", ""]
    return lines + _peer_table(runs, label, "rnn", "shape", RNN_IMPLS,
                               lambda r: f"{_duration(r['seconds'])} · "
                                         f"{_si(r['tokens_per_s'])} tok/s · "
                                         f"{_num(r['gflops'])} GF/s{_pct2(r)}")


def _pct2(r) -> str:
    """' (x% · y%)': a rate's share of the sgemm peak and of the FMA peak, those known."""
    shares = [f"{_num(r[k])}%" for k in ("pct_peak", "pct_fma") if k in r]
    return f" ({' · '.join(shares)})" if shares else ""


def _generate_md(runs, label):
    lines = ["## 4. Generation", "",
             "Characters per second, sampling at temperature 1 from a character model "
             "(one id in, one id out per step), in one stream and in B streams at once "
             "(`sample(n, batch=B)`: characters of all streams; for those also the GFLOP/s "
             "of the step's products, 2 B (H H + H O) per step, with the share of the sgemm "
             "peak).", ""]

    def cell(r):
        text = f"{_si(r['chars_per_s'])} chars/s"
        if r.get("streams", 1) > 1:
            text += f" · {_num(r['gflops'])} GF/s{_pct(r, 'pct_peak')}"
        return text

    rows = []
    for run in runs:
        for shape, by_impl in _grouped(run["generate"], "shape").items():
            cells = _cells(by_impl, GENERATE_IMPLS, cell)
            first = by_impl["elman"]
            rows.append([label(run), shape, f"{first['steps']:,}", str(first.get("streams", 1)),
                         *cells, *_best_peer(by_impl, GENERATE_IMPLS)])
    return lines + _table(["threads", "shape", "steps", "streams", *GENERATE_IMPLS.values(),
                           "best peer", "elman / best peer"], rows)


def _scaling_md(runs, label):
    base = runs[0]["scaling"]["base"]
    lines = ["## 5. Scaling of elman's training step", "",
             f"Time per step (ms) with one size swept and the others as in {base}. Ratio per "
             "doubling: time(2x) / time(x); 2 is linear (expected for T, and for B once the "
             "GEMMs are large enough to be efficient), up to 4 for H.", ""]
    for axis in ("T", "B", "H"):
        if axis not in runs[0]["scaling"]:
            continue
        values = [p["value"] for p in runs[0]["scaling"][axis]["points"]]
        rows = []
        for run in runs:
            sweep = run["scaling"][axis]
            ratios = sweep["ratio_per_doubling"]
            mean = f" (geometric mean {statistics.geometric_mean(ratios):.2f})" if ratios else ""
            rows.append([label(run)] + [_num(p["ms"]) if p["status"] == "ok" else _status(p)
                                        for p in sweep["points"]]
                        + [", ".join(f"{x:.2f}" for x in ratios) + mean])
        lines += _table(["threads", *[f"{axis}={v}" for v in values], "ratio per doubling"],
                        rows)
    return lines


def _torch_md(runs, label):
    lines = ["## 6. elman as a PyTorch backend (elman.torch)", "",
             "Optimizer: one float32 step of `elman.torch.Adagrad` against "
             "`torch.optim.Adagrad` on the same list of torch tensors (lr "
             f"{LR}, eps {EPS}); cell: time per step · GB/s at {ADAGRAD_BYTES} bytes per "
             "element. Module: one torch training step (nn.Linear head, cross-entropy, "
             "backward, torch's fused Adagrad) whose RNN is `elman.torch.ElmanRNN` or "
             "`torch.nn.RNN` with the same weights; one-hot input for both. Last column: "
             "elman's speed over the best peer's.", ""]
    rows = []
    for run in runs:
        for case, by_impl in _grouped(run["torch"]["adagrad"], "case").items():
            cells = _cells(by_impl, TORCH_ADAGRAD_IMPLS, lambda r: f"{_duration(r['seconds'])}"
                           f" · {_num(r['gbps'])} GB/s")
            rows.append([label(run), case, *cells,
                         *_best_peer(by_impl, TORCH_ADAGRAD_IMPLS)])
    lines += _table(["threads", "case", *TORCH_ADAGRAD_IMPLS.values(), "best peer",
                     "elman / best peer"], rows)
    rows = []
    for run in runs:
        for shape, by_impl in _grouped(run["torch"]["rnn"], "shape").items():
            cells = _cells(by_impl, TORCH_RNN_IMPLS, lambda r: f"{_duration(r['seconds'])} · "
                           f"{_si(r['tokens_per_s'])} tok/s")
            rows.append([label(run), shape, *cells, *_best_peer(by_impl, TORCH_RNN_IMPLS)])
    return lines + _table(["threads", "shape", *TORCH_RNN_IMPLS.values(), "best peer",
                           "elman / best peer"], rows)


def _sweep_md(runs, label):
    lines = ["## 10. The training step over a grid of shapes", "",
             "One float32 training step (token ids, V = 65, softmax cross-entropy on every "
             "step, full BPTT, Adagrad): `elman.TrainStep` against torch (nn.RNN with "
             "num_layers, fused Adagrad) and JAX (jit, one lax.scan per layer, optax). "
             "elman's cell: time · GFLOP/s (counted as in section 3, each layer above the "
             "first adding its input product) (% of the sgemm peak · % of the FMA peak). "
             "Last column: elman's speed over the best peer's.", ""]
    rows = []
    for run in runs:
        for shape, by_impl in _grouped(run["sweep"], "shape").items():
            r = by_impl["elman"]
            cells = _cells(by_impl, SWEEP_IMPLS, lambda r: f"{_duration(r['seconds'])} · "
                           f"{_num(r['gflops'])} GF/s{_pct2(r)}")
            rows.append([label(run), f"{r['H']}", f"{r['B']}", f"{r['T']}", f"{r['layers']}",
                         *cells, *_best_peer(by_impl, SWEEP_IMPLS)])
    return lines + _table(["threads", "H", "B", "T", "layers", *SWEEP_IMPLS.values(),
                           "best peer", "elman / best peer"], rows)


def sweep_matrix(rows, value):
    """(row labels H, column labels "B=.. T=.. L=..", matrix) of ``value(by_impl)`` over a
    run's sweep rows, NaN where it is not known: the heatmaps' data."""
    cells = _grouped(rows, "shape")
    Hs = sorted({r["H"] for r in rows})
    cols = sorted({(r["layers"], r["T"], r["B"]) for r in rows})
    grid = np.full((len(Hs), len(cols)), np.nan)
    for by_impl in cells.values():
        e = by_impl["elman"]
        v = value(by_impl)
        if v is not None:
            grid[Hs.index(e["H"]), cols.index((e["layers"], e["T"], e["B"]))] = v
    return Hs, [f"B={B} T={T} L={L}" for L, T, B in cols], grid


def _ratio_to_best_peer(by_impl):
    peers = [r for i, r in by_impl.items() if i != "elman" and r["status"] == "ok"]
    mine = by_impl["elman"]
    if not peers or mine["status"] != "ok":
        return None
    return min(r["seconds"] for r in peers) / mine["seconds"]


def _overhead_md(runs, label):
    lines = ["## 9. The Python layer's cost per training step", "",
             "One float32 Adagrad step, stateful (h0 and h_out one array): the C work alone "
             "(`TrainStep.c_seconds`, the step repeated inside one binding call), a call of "
             "`elman.TrainStep` (prepared once for the shape), and a call of "
             "`elman.train_step`. Cells: time per step · what it costs beyond the C work.",
             ""]
    rows = []
    for run in runs:
        for row in run["overhead"]:
            cells = [f"{row[k]['us']:.2f} µs · +{row[k]['overhead_us']:.2f} µs"
                     if row[k]["status"] == "ok" else _status(row[k])
                     for k in ("TrainStep", "train_step")]
            rows.append([label(run), row["shape"], f"{row['c_us']:.2f} µs", *cells])
    return lines + _table(["threads", "shape", "C work alone", "elman.TrainStep",
                           "elman.train_step"], rows)


def _bf16_md(runs, label):
    lines = ["## 11. bfloat16 compute", "",
             "`elman.TrainStep` with Adagrad, token ids, `compute_dtype=None` (float32) and "
             "`\"bfloat16\"` (products on bfloat16 operands, float32 sums, csrc/bf16.c), "
             "one run each: time per step, GFLOP/s (matrix products), share of the float32 "
             "FMA peak and, for bfloat16, of the peak of the kernel it ran on (§1), and the "
             "speed-up.", ""]
    rows = []
    for run in runs:
        for row in run["bf16"]:
            a, b = row["float32"], row["bfloat16"]

            def cell(r):
                if r["status"] != "ok":
                    return _status(r)
                return f"{r['ms']:.3f} ms · {_num(r['gflops'])} GF/s{_pct(r, 'pct_fma')}"
            kernel = row.get("kernel") or ("vdpbf16ps" if row.get("native") else "emulated")
            rows.append([label(run), row["shape"], cell(a), cell(b) + f" ({kernel})",
                         _pct(b, "pct_bf16").strip(" ()") or "—",
                         f"{row['speedup']:.2f}x" if "speedup" in row else "—"])
    return lines + _table(["threads", "shape", "float32 (% FMA peak)",
                           "bfloat16 (% FMA peak)", "% bf16 peak", "speed-up"], rows)


def markdown(result, pngs=None):
    """The report: a header block (machine, settings, each run's environment and BLAS, the
    plot files ``pngs``, None when matplotlib is missing) and one table per section."""
    runs = [r for r in result["runs"] if "error" not in r]
    show_openblas = result["settings"]["openblas"] == "both"
    label = functools.partial(_run_label, show_openblas=show_openblas)
    lines = _header(result, pngs)
    from . import second_order
    for key, section in (("limits", _limits_md), ("adagrad", _adagrad_md),
                         ("adagrad_sparse", _sparse_md), ("rnn", _rnn_md),
                         ("generate", _generate_md), ("scaling", _scaling_md),
                         ("torch", _torch_md),
                         ("curvature", functools.partial(second_order.curvature_md,
                                                         table=_table)),
                         ("long_range", functools.partial(second_order.long_range_md,
                                                          table=_table)),
                         ("overhead", _overhead_md), ("sweep", _sweep_md),
                         ("bf16", _bf16_md)):
        if runs and key in runs[0]:
            lines += section(runs, label)
    return "\n".join(lines)


# ---- report: plots ------------------------------------------------------------------------

def plots(result, out):
    """PNG plots of the adagrad, rnn and scaling sections into ``out``; returns the file
    names written, or None when matplotlib is not installed."""
    mpl = suite.optional_module("matplotlib")
    if mpl is None:
        print("matplotlib is not installed: no plots (pip install matplotlib)", file=sys.stderr)
        return None
    mpl.use("Agg")
    import matplotlib.pyplot as plt
    runs = [r for r in result["runs"] if "error" not in r]
    show_openblas = result["settings"]["openblas"] == "both"
    title = [f"{r['threads']} thread(s)" + (f", OpenBLAS env {r['openblas']}" if show_openblas
                                            else "") for r in runs]
    written = []

    def save(fig, name):
        fig.tight_layout()
        fig.savefig(os.path.join(out, name), dpi=110)
        plt.close(fig)
        written.append(name)

    if runs and "adagrad" in runs[0]:
        fig, axes = plt.subplots(1, len(runs), figsize=(5.5 * len(runs), 4), squeeze=False,
                                 sharey=True)
        for ax, run, name in zip(axes[0], runs, title):
            for impl, impl_label in ADAGRAD_IMPLS.items():
                pts = [(r["n"], r["gbps"]) for r in run["adagrad"] if r["impl"] == impl
                       and r["tensors"] == 1 and r["status"] == "ok"]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=impl_label)
            probe = [(r["n"], r["gbps"]) for r in run.get("limits", {}).get("stream", [])
                     if r["status"] == "ok"]
            if probe:
                ax.plot(*zip(*probe), "k--", marker="s", label="stream probe")
            ax.set(xscale="log", yscale="log", title=name, xlabel="n (float32 parameters)",
                   ylabel=f"GB/s ({ADAGRAD_BYTES} bytes per element)")
            ax.legend(fontsize=7)
        save(fig, "adagrad.png")

    if runs and "rnn" in runs[0]:
        fig, axes = plt.subplots(1, len(runs), figsize=(6 * len(runs), 4), squeeze=False,
                                 sharey=True)
        for ax, run, name in zip(axes[0], runs, title):
            shapes = list(_grouped(run["rnn"], "shape"))
            width = 0.8 / len(RNN_IMPLS)
            for i, (impl, impl_label) in enumerate(RNN_IMPLS.items()):
                rows = {r["shape"]: r for r in run["rnn"] if r["impl"] == impl}
                ys = [rows[s].get("gflops", math.nan) for s in shapes]
                ax.bar([j + i * width for j in range(len(shapes))], ys, width, label=impl_label)
            ax.set_xticks([j + 0.4 - width / 2 for j in range(len(shapes))],
                          [s.split()[0] for s in shapes])
            ax.set(yscale="log", title=name, ylabel="GFLOP/s (matrix products of the step)")
            ax.legend(fontsize=7)
        save(fig, "rnn.png")

    if runs and "scaling" in runs[0]:
        axes_names = [a for a in ("T", "B", "H") if a in runs[0]["scaling"]]
        fig, axes = plt.subplots(1, len(axes_names), figsize=(4.5 * len(axes_names), 4),
                                 squeeze=False)
        for ax, axis in zip(axes[0], axes_names):
            for run, name in zip(runs, title):
                pts = [(p["value"], p["ms"]) for p in run["scaling"][axis]["points"]
                       if p["status"] == "ok"]
                if pts:
                    ax.plot(*zip(*pts), marker="o", label=name)
            values = [p["value"] for p in runs[0]["scaling"][axis]["points"]]
            ax.set_xscale("log", base=2)
            ax.set_xticks(values, [str(v) for v in values], minor=False)
            ax.minorticks_off()
            ax.set(yscale="log", xlabel=axis, ylabel="ms per training step",
                   title=f"elman: time vs {axis}")
            ax.legend(fontsize=7)
        fig.suptitle(f"others as in {runs[0]['scaling']['base']}", fontsize=9)
        save(fig, "scaling.png")

    if runs and "sweep" in runs[0]:
        kinds = (("ratio to the best peer", _ratio_to_best_peer, "RdYlGn", (0, 3)),
                 ("% of the FMA peak", lambda b: b["elman"].get("pct_fma"), "viridis",
                  (0, 100)))
        fig, axes = plt.subplots(len(kinds), len(runs), squeeze=False,
                                 figsize=(7.5 * len(runs), 4.2 * len(kinds)))
        for k, (what, value, cmap, (lo, hi)) in enumerate(kinds):
            for ax, run, name in zip(axes[k], runs, title):
                Hs, cols, grid = sweep_matrix(run["sweep"], value)
                im = ax.imshow(grid, cmap=cmap, vmin=lo, vmax=hi, aspect="auto")
                ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right", fontsize=6)
                ax.set_yticks(range(len(Hs)), [str(h) for h in Hs], fontsize=7)
                for (i, j), v in np.ndenumerate(grid):
                    if not math.isnan(v):
                        ax.text(j, i, f"{v:.2g}", ha="center", va="center", fontsize=5)
                ax.set(title=f"elman: {what}, {name}", ylabel="H")
                fig.colorbar(im, ax=ax, fraction=0.03)
        save(fig, "sweep.png")
    return written
