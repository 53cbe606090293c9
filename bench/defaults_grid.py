"""Do elman train's defaults train at every size? Runs ``elman train --hidden H --layers L
--steps 2000`` (no other flag) over a grid of sizes on the built-in text and reports the
held-out bits per character at every 500 steps against the unigram entropy. (With no
--lr, Adagrad's rate is 0.02 for the embedding and the biases and the table's for the
matrices.)

    python bench/defaults_grid.py                       # H 64..1024 x L 1..3 (about an hour)
    python bench/defaults_grid.py --hidden 64,256 --layers 1
    python bench/defaults_grid.py --combine a/defaults.json b/defaults.json   # one table

The criterion (the README's table): every run ends at or below 3.0 held-out bits/char and
is never above the unigram entropy from step 500 on. Each run is a subprocess with the
command line a user would type; the table goes to stdout and, with the JSON of every run,
to --out (default bench/results/defaults).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TARGET = 3.0


def _ints(text):
    return [int(v) for v in text.split(",") if v.strip()]


def run_one(hidden, layers, steps, every, extra, workdir):
    """One elman train run; returns its row (held-out evals, unigram entropy, seconds)."""
    from elman import checkpoint
    from elman.train import TrainConfig
    out = os.path.join(workdir, f"H{hidden}-L{layers}")
    cmd = [sys.executable, "-m", "elman", "train", "--hidden", str(hidden), "--layers",
           str(layers), "--steps", str(steps), "--every", str(every), "--no-progress",
           "--out", out, "--overwrite", *extra]
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    row = {"hidden": hidden, "layers": layers, "seconds": round(seconds, 1),
           "command": " ".join(["elman", *cmd[3:]])}
    if proc.returncode != 0:
        row["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        return row
    _, meta = checkpoint.load(out)
    cfg = TrainConfig(**{k: v for k, v in meta["config"].items()
                         if k in TrainConfig.__dataclass_fields__})
    unigram = float(proc.stdout.split("unigram entropy: ")[1].split(")")[0])
    evals = [[int(s), float(v)] for s, v in meta["evals"]]
    after = [v for s, v in evals if s >= min(500, steps)]
    row.update(lr=cfg.learning_rate(), warmup=cfg.warmup, evals=evals,
               unigram=unigram, final=evals[-1][1],
               ok=bool(evals[-1][1] <= TARGET and max(after) <= unigram))
    return row


def table(rows, steps, every):
    marks = list(range(every, steps + 1, every))
    head = ("| H | layers | lr of the matrices | " + " | ".join(f"step {m}" for m in marks)
            + " | unigram | meets the criterion | seconds |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['hidden']} | {r['layers']} | failed: {r['error']} |")
            continue
        at = dict(map(tuple, r["evals"]))
        cells = [f"{at[m]:.3f}" if m in at else "—" for m in marks]
        lines.append(f"| {r['hidden']} | {r['layers']} | {r['lr']:.4g} | "
                     + " | ".join(cells) + f" | {r['unigram']:.3f} | "
                     f"{'yes' if r['ok'] else 'NO'} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hidden", type=_ints, default=[64, 128, 256, 512, 1024])
    p.add_argument("--layers", type=_ints, default=[1, 2, 3])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=500)
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                 "results", "defaults"))
    p.add_argument("--combine", nargs="+", metavar="JSON",
                   help="print one table of the rows in these defaults.json files (runs "
                        "made in parts) instead of running")
    p.add_argument("extra", nargs=argparse.REMAINDER,
                   help="after --, flags passed to every elman train (the tests' tiny sizes)")
    a = p.parse_args(argv)
    if a.combine:
        rows = []
        for path in a.combine:
            with open(path, encoding="utf-8") as f:
                rows += json.load(f)
        rows.sort(key=lambda r: (r["layers"], r["hidden"]))
        print(table(rows, a.steps, a.every))
        return 0 if all(r.get("ok") for r in rows) else 1
    extra = [x for x in a.extra if x != "--"]
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for layers in a.layers:
            for hidden in a.hidden:
                row = run_one(hidden, layers, a.steps, a.every, extra, work)
                print(json.dumps(row), file=sys.stderr, flush=True)
                rows.append(row)
    md = table(rows, a.steps, a.every)
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "defaults.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    with open(os.path.join(a.out, "defaults.md"), "w", encoding="utf-8") as f:
        f.write(md + "\n")
    print(md)
    return 0 if all(r.get("ok") for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
