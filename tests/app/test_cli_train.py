"""elman train / elman sample end to end on tiny data: learning, checkpoints that survive
interruption and corruption, bit-identical resume, and clear errors for bad data."""
import os
import subprocess
import sys

import numpy as np
import pytest

from elman import checkpoint, cli
from elman import train as tr

TEXT = ("the quick brown fox jumps over the lazy dog. " * 60
        + "pack my box with five dozen liquor jugs. " * 60)
SMALL = ["--hidden", "16", "--seq-len", "8", "--batch", "4", "--no-progress"]


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def train(*args):
    return cli.main(["train", *SMALL, *args])


def state(run_dir):
    arrays, meta = checkpoint.load(str(run_dir))
    return arrays, meta


def test_training_lowers_the_loss_and_writes_a_checkpoint(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "150", "--every", "50", "--out", str(out),
                 "--lr", "0.1") == 0
    text = capsys.readouterr().out
    assert "held-out bits/char" in text and "sample:" in text
    arrays, meta = state(out)
    hist = np.array(meta["history"])[:, 1]
    assert hist[-20:].mean() < 0.8 * hist[:20].mean()
    evals = [e[1] for e in meta["evals"]]
    assert len(evals) == 3 and evals[-1] < evals[0]
    assert meta["step"] == 150 and arrays["params"].dtype == np.float32


@pytest.mark.parametrize("stack", [(), ("--layers", "2", "--dropout", "0.3")],
                         ids=["one-layer", "two-layers-dropout"])
def test_resume_is_bit_identical_to_an_uninterrupted_run(corpus, tmp_path, stack):
    """With dropout too: the resumed run draws the masks the uninterrupted one drew."""
    full, part = tmp_path / "full", tmp_path / "part"
    assert train("--data", corpus, "--steps", "60", "--every", "25", "--out", str(full),
                 *stack) == 0
    assert train("--data", corpus, "--steps", "25", "--every", "25", "--out", str(part),
                 *stack) == 0
    assert train("--resume", str(part), "--steps", "60") == 0
    (a, ma), (b, mb) = state(full), state(part)
    assert ma["step"] == mb["step"] == 60
    for name in ("params", "h", "opt_state"):
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert ma["history"] == mb["history"]


def test_ctrl_c_checkpoints_and_resumes_exactly(corpus, tmp_path, monkeypatch):
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert train("--data", corpus, "--steps", "40", "--every", "100", "--out", str(ref)) == 0
    real = tr.Trainer.train_step

    def interrupted(self):
        if self.step == 17:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(tr.Trainer, "train_step", interrupted)
    assert train("--data", corpus, "--steps", "40", "--every", "100", "--out", str(cut)) == 130
    assert state(cut)[1]["step"] == 17
    monkeypatch.setattr(tr.Trainer, "train_step", real)
    assert train("--resume", str(cut)) == 0
    np.testing.assert_array_equal(state(ref)[0]["params"], state(cut)[0]["params"])


def test_a_write_killed_midway_leaves_the_previous_checkpoint(corpus, tmp_path):
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "10", "--every", "10", "--out", str(out)) == 0
    before = state(out)[0]["params"].copy()
    # a process that dies after writing the temporary file and before the rename
    code = ("import os, sys; import numpy as np; from elman import checkpoint;"
            "os.fsync = lambda fd: os._exit(9);"
            f"checkpoint.save({str(out)!r}, {{'params': np.zeros(3)}}, {{}})")
    proc = subprocess.run([sys.executable, "-c", code])
    assert proc.returncode == 9
    np.testing.assert_array_equal(state(out)[0]["params"], before)
    assert train("--resume", str(out), "--steps", "12") == 0  # and the run goes on


@pytest.mark.parametrize("damage", ["flip", "tamper", "truncate", "garbage"])
def test_a_corrupted_checkpoint_is_a_clear_error(corpus, tmp_path, damage, capsys):
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "5", "--every", "5", "--out", str(out)) == 0
    path = out / "checkpoint.npz"
    raw = bytearray(path.read_bytes())
    if damage == "flip":  # one byte anywhere: the archive's CRCs or structure catch it
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "tamper":  # a well-formed archive whose parameters changed: our checksum
        with np.load(path) as z:
            data = {k: z[k] for k in z.files}
        data["params"] = data["params"] + 1
        np.savez(path, **data)
        raw = bytearray(path.read_bytes())
    elif damage == "truncate":
        raw = raw[:len(raw) // 2]
    else:
        raw = bytearray(b"not a checkpoint at all")
    path.write_bytes(bytes(raw))
    with pytest.raises(checkpoint.CheckpointError, match="corrupted|truncated|checksum"):
        checkpoint.load(str(out))
    with pytest.raises(SystemExit) as e:
        cli.main(["sample", "--checkpoint", str(out)])
    assert e.value.code == 2
    assert "checkpoint" in capsys.readouterr().err


def test_checkpoint_of_another_version_is_refused(tmp_path):
    checkpoint.save(str(tmp_path), {"a": np.zeros(2)}, {})
    arrays, meta = checkpoint.load(str(tmp_path))
    import json
    path = tmp_path / "checkpoint.npz"
    with np.load(path) as z:
        data = {k: z[k] for k in z.files}
    head = json.loads(data["meta"].tobytes().decode("utf-8"))
    head["version"] = 99
    data["meta"] = np.frombuffer(json.dumps(head).encode("utf-8"), np.uint8)
    np.savez(path, **data)
    with pytest.raises(checkpoint.CheckpointError, match="version 99"):
        checkpoint.load(str(tmp_path))


@pytest.mark.parametrize("make, args, message", [
    (None, ["--data", "{d}/missing.txt"], "no such file"),
    ("", ["--data", "{f}"], "empty"),
    (b"\x00\x01binary" * 100, ["--data", "{f}"], "binary"),
    (b"\xff\xfe caf\xe9" * 400, ["--data", "{f}"], "not UTF-8"),
    ("tiny text", ["--data", "{f}"], "too small"),
    (None, ["--data", "{d}"], "directory"),
    (None, ["--resume", "{d}/nowhere"], "no checkpoint"),
    (None, ["--task", "series", "--data", "{d}/missing.csv"], "no such file"),
    ("a,b\n1,2\n", ["--task", "series", "--data", "{f}"], "--column"),
    ("a,b\n1,2\n", ["--task", "series", "--data", "{f}", "--column", "c"], "no column"),
    ("a\nx\n", ["--task", "series", "--data", "{f}"], "not numeric"),
])
def test_bad_data_exits_2_with_a_message(tmp_path, capsys, make, args, message):
    f = tmp_path / "data.txt"
    if isinstance(make, bytes):
        f.write_bytes(make)
    elif make is not None:
        f.write_text(make, encoding="utf-8")
    args = [a.format(d=tmp_path, f=f) for a in args]
    with pytest.raises(SystemExit) as e:
        train(*args, "--steps", "2")
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_bytes_mode_reads_any_file(tmp_path):
    f = tmp_path / "data.bin"
    f.write_bytes(bytes(range(256)) * 40)
    assert train("--data", str(f), "--bytes", "--steps", "3", "--every", "3",
                 "--out", str(tmp_path / "run")) == 0
    assert len(state(tmp_path / "run")[1]["vocab"]) == 256
    assert cli.main(["sample", "--checkpoint", str(tmp_path / "run"), "--prime", "ab",
                     "--length", "5", "--seed", "0"]) == 0


def test_sample_command(corpus, tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "30", "--every", "30", "--out", str(out)) == 0
    capsys.readouterr()
    args = ["sample", "--checkpoint", str(out), "--length", "50", "--prime", "the ",
            "--seed", "3", "--temperature", "0.5"]
    assert cli.main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("the ") and len(first) == len("the ") + 50 + 1
    assert cli.main(args) == 0
    assert capsys.readouterr().out == first
    with pytest.raises(SystemExit):
        cli.main(["sample", "--checkpoint", str(out), "--prime", "ZZZ\u2603"])


def test_sample_command_generates_several_continuations(corpus, tmp_path, capsys):
    """--samples N: N continuations of the prime in one call, each the prime's continuation
    (greedy: all the same, and the one --samples 1 prints)."""
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "30", "--every", "30", "--out", str(out)) == 0
    capsys.readouterr()
    base = ["sample", "--checkpoint", str(out), "--length", "40", "--prime", "the "]
    assert cli.main(base + ["--temperature", "0"]) == 0
    single = capsys.readouterr().out
    assert cli.main(base + ["--temperature", "0", "--samples", "3"]) == 0
    text = capsys.readouterr().out
    assert text == "".join(f"--- sample {k} of 3\n" + single for k in (1, 2, 3))
    assert cli.main(base + ["--seed", "2", "--samples", "4"]) == 0
    parts = capsys.readouterr().out.split("--- sample ")[1:]
    assert len(parts) == 4 and all(p.split("\n", 1)[1].startswith("the ") for p in parts)
    assert len({p.split("\n", 1)[1] for p in parts}) > 1       # independent draws
    with pytest.raises(SystemExit):
        cli.main(base + ["--samples", "0"])


def test_series_task_beats_the_naive_baseline(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(["train", "--task", "series", "--hidden", "16", "--seq-len", "16",
                     "--batch", "8", "--steps", "300", "--every", "300", "--lr", "0.05",
                     "--no-progress", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    rmse = float(text.split("held-out RMSE ")[-1].split()[0])
    naive = float(text.split("naive last-value predictor: ")[1].split(")")[0])
    assert rmse < naive


def test_series_from_a_csv_column(tmp_path):
    f = tmp_path / "s.csv"
    t = np.arange(3000)
    f.write_text("time,value\n" + "\n".join(f"{i},{np.sin(i / 7):.6f}" for i in t),
                 encoding="utf-8")
    assert cli.main(["train", "--task", "series", "--data", str(f), "--column", "value",
                     "--hidden", "8", "--seq-len", "8", "--batch", "4", "--steps", "20",
                     "--every", "20", "--no-progress", "--out", str(tmp_path / "r")]) == 0


def test_plot_is_written(corpus, tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "20", "--every", "10", "--out", str(out),
                 "--plot") == 0
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_elman_train_runs_as_a_command(corpus, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "elman", "train", *SMALL, "--data", corpus,
                           "--steps", "5", "--every", "5", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert os.path.exists(out / "checkpoint.npz") and "done: 5 steps" in proc.stdout


def test_builtin_corpus_is_deterministic():
    from elman.data import builtin_text
    a, b = builtin_text(50_000), builtin_text(50_000)
    assert a == b and len(a) == 50_000


EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "examples")


def test_char_lm_example_runs():
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "char_lm.py"), "--steps",
                           "200"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    bits = float(proc.stdout.split("held-out: ")[1].split()[0])
    assert bits < 4.0  # from log2(vocabulary) ~ 6.6 at the start


def test_time_series_example_beats_the_naive_predictor():
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, "time_series.py"),
                           "--steps", "600"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip().splitlines()[-1]
    rmse = float(line.split("held-out RMSE ")[1].split()[0])
    naive = float(line.split("predictor: ")[1].rstrip(")"))
    assert rmse < naive


def test_ctrl_c_in_the_middle_of_a_step_still_resumes_exactly(corpus, tmp_path, monkeypatch):
    """SIGINT arriving between the update and the step's bookkeeping: the run finishes the
    step, then checkpoints, so the update is neither lost nor applied twice."""
    import signal
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    assert train("--data", corpus, "--steps", "12", "--every", "100", "--out", str(ref)) == 0
    real_step = tr.Adagrad.step

    def step_then_signal(self):
        real_step(self)
        if self.steps == 6:
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(tr.Adagrad, "step", step_then_signal)
    assert train("--data", corpus, "--steps", "12", "--every", "100", "--out", str(cut)) == 130
    arrays, meta = state(cut)
    assert meta["step"] == meta["opt_steps"] == 6
    monkeypatch.setattr(tr.Adagrad, "step", real_step)
    assert train("--resume", str(cut)) == 0
    np.testing.assert_array_equal(state(ref)[0]["params"], state(cut)[0]["params"])


def test_resume_keeps_the_run_s_every_and_accepts_the_file(corpus, tmp_path):
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "10", "--every", "5", "--out", str(out)) == 0
    assert train("--resume", str(out / "checkpoint.npz"), "--steps", "15") == 0
    _, meta = state(out)
    assert meta["config"]["every"] == 5 and meta["step"] == 15
    assert [e[0] for e in meta["evals"]] == [5, 10, 15]


@pytest.mark.parametrize("args, message", [
    (["--clip", "-1"], "--clip"), (["--lr", "inf"], "--lr"), (["--lr", "0"], "--lr"),
    (["--epochs", "inf"], "--epochs"), (["--every", "0"], "--every"),
    (["--task", "series", "--data", "{d}"], "directory"),
    (["--compute-dtype", "bfloat16", "--dtype", "float64"], "--compute-dtype"),
])
def test_bad_options_exit_2_with_a_message(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        train(*[a.format(d=tmp_path) for a in args], "--steps", "2")
    assert e.value.code == 2 and message in capsys.readouterr().err


def test_bfloat16_compute_trains_and_resumes_in_float32(corpus, tmp_path, capsys):
    """--compute-dtype bfloat16 trains on bfloat16 products (another trajectory than
    float32's, the same model and checkpoint), and a resume may change the compute dtype."""
    runs = {}
    for compute in ("float32", "bfloat16"):
        out = tmp_path / compute
        assert train("--data", corpus, "--steps", "40", "--every", "20", "--out", str(out),
                     "--lr", "0.1", "--compute-dtype", compute) == 0
        text = capsys.readouterr().out
        assert ("bfloat16 products" in text) == (compute == "bfloat16")
        runs[compute] = state(out)
    (a32, m32), (abf, mbf) = runs["float32"], runs["bfloat16"]
    assert mbf["config"]["compute_dtype"] == "bfloat16"
    assert abf["params"].dtype == np.float32
    assert not np.array_equal(a32["params"], abf["params"])
    assert mbf["evals"][-1][1] < mbf["evals"][0][1] + 0.5
    assert abs(mbf["evals"][-1][1] - m32["evals"][-1][1]) < 0.2
    assert train("--resume", str(tmp_path / "bfloat16"), "--steps", "60",
                 "--compute-dtype", "float32") == 0
    text = capsys.readouterr().out
    assert "bfloat16 products" not in text
    _, meta = state(tmp_path / "bfloat16")
    assert meta["step"] == 60 and meta["config"]["compute_dtype"] == "float32"


def test_checkpoints_of_another_shape_are_clear_errors(corpus, tmp_path, capsys):
    bad = tmp_path / "bad"
    checkpoint.save(str(bad), {"params": np.zeros(3)}, {"config": 3})
    with pytest.raises(SystemExit) as e:
        cli.main(["sample", "--checkpoint", str(bad)])
    assert e.value.code == 2 and "not a checkpoint of elman train" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        train("--resume", str(bad))
    assert e.value.code == 2
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "3", "--every", "3", "--out", str(out)) == 0
    arrays, meta = state(out)
    del arrays["opt_state"]
    checkpoint.save(str(out), arrays, {k: v for k, v in meta.items()
                                       if k not in ("format", "version", "sha256")})
    with pytest.raises(SystemExit) as e:
        train("--resume", str(out))
    assert e.value.code == 2 and "Adagrad state" in capsys.readouterr().err


def test_a_preset_brings_its_learning_rate_unless_lr_is_given(corpus, tmp_path, capsys):
    assert train("--data", corpus, "--steps", "2", "--every", "2", "--preset", "minchar",
                 "--out", str(tmp_path / "a")) == 0
    assert "adagrad lr 0.1," in capsys.readouterr().out
    assert train("--data", corpus, "--steps", "2", "--every", "2", "--preset", "minchar",
                 "--lr", "0.03", "--out", str(tmp_path / "b")) == 0
    assert "adagrad lr 0.03," in capsys.readouterr().out
    assert train("--data", corpus, "--steps", "2", "--every", "2", "--hidden", "64",
                 "--out", str(tmp_path / "c")) == 0
    assert f"adagrad lr {tr.default_lr(64):.4g}," in capsys.readouterr().out   # size-aware
    assert train("--data", corpus, "--steps", "2", "--every", "2", "--hidden", "512",
                 "--out", str(tmp_path / "d")) == 0
    assert (f"adagrad lr {tr.BASE_LR:.4g} (embedding, biases) / {tr.default_lr(512):.4g} "
            f"(matrices),") in capsys.readouterr().out


def _nan_at(monkeypatch, step, corrupt=False):
    """At the given step, forward_backward meets a NaN loss (nothing updated), or the
    update writes a NaN into the parameters (corrupt)."""
    real_fb, real_step = tr.ElmanRNN.forward_backward, tr.Adagrad.step

    def fb(self, *a, **k):
        if not corrupt and self._trainer_step[0] + 1 == step:
            raise elman_nonfinite("the loss is not finite (nan)")
        return real_fb(self, *a, **k)

    def opt_step(self):
        real_step(self)
        if corrupt and self.steps == step:
            self.params[0] = np.nan
            raise elman_nonfinite("the update made a parameter non-finite")

    real_train_step = tr.Trainer.train_step

    def train_step(self):
        self.model._trainer_step = [self.step]
        return real_train_step(self)

    monkeypatch.setattr(tr.ElmanRNN, "forward_backward", fb)
    monkeypatch.setattr(tr.Adagrad, "step", opt_step)
    monkeypatch.setattr(tr.Trainer, "train_step", train_step)


def elman_nonfinite(message):
    import elman
    return elman.NonFiniteError(message)


def test_a_nan_loss_stops_the_run_with_a_clean_checkpoint(corpus, tmp_path, monkeypatch, capsys):
    _nan_at(monkeypatch, 5)
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "10", "--every", "2", "--out", str(out)) == 3
    assert "stopped: step 5" in capsys.readouterr().out
    arrays, meta = state(out)
    assert meta["step"] == 4 and np.isfinite(arrays["params"]).all()


def test_skip_mode_skips_the_bad_steps(corpus, tmp_path, monkeypatch, capsys):
    _nan_at(monkeypatch, 5)
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "10", "--every", "5", "--out", str(out),
                 "--on-nonfinite", "skip") == 0
    assert "steps were skipped" in capsys.readouterr().out
    arrays, meta = state(out)
    assert meta["step"] == 10 and meta["skipped"] >= 1 and np.isfinite(arrays["params"]).all()


def test_a_non_finite_update_is_never_saved(corpus, tmp_path, monkeypatch, capsys):
    _nan_at(monkeypatch, 5, corrupt=True)
    out = tmp_path / "run"
    assert train("--data", corpus, "--steps", "10", "--every", "2", "--out", str(out),
                 "--on-nonfinite", "skip") == 3
    assert "nothing was saved" in capsys.readouterr().out
    arrays, meta = state(out)
    assert meta["step"] == 4 and np.isfinite(arrays["params"]).all()
