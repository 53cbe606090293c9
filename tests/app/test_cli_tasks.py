"""elman train --task adding|... (the long-range problems): a short run with each
optimizer, what it reports and checkpoints, bit-identical resume (HF included: its damping,
CG warm start and curvature draws), the plot, and flags that do not apply."""
import numpy as np
import pytest

from elman import checkpoint, cli, tasks
from elman.task_train import EVAL_SEED, TaskTrainer, sparse_init
from elman.train import TrainConfig

TINY = ["--hidden", "8", "--batch", "40", "--eval-sequences", "200", "--no-progress"]


def train(*args):
    return cli.main(["train", *TINY, *args])


def test_hf_run_reports_the_test_fraction_and_its_state(tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--task", "adding", "--length", "12", "--optimizer", "hf", "--steps", "6",
                 "--every", "3", "--curvature", "0.5", "--cg-iters", "30",
                 "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "hf: damping 1, structural damping 0.03333" in text
    assert "% of 200 test sequences right" in text and "done: 6 steps" in text
    arrays, meta = checkpoint.load(str(out))
    assert meta["step"] == 6 and len(meta["evals"]) == 2
    assert meta["hf"]["steps"] == 6 and meta["hf"]["damping"] > 0
    assert arrays["opt_state"].shape == arrays["params"].shape   # the CG warm start
    assert meta["sequences"] == 240
    # the report is the task's own rule on the fixed test sequences
    t = TaskTrainer(TrainConfig(**{**meta["config"]}))
    t.model.params[...] = arrays["params"]
    assert meta["evals"][-1][1] == tasks.evaluate(t.model, "adding", n=200, T=12,
                                                  seed=EVAL_SEED)


@pytest.mark.parametrize("opt", [["--optimizer", "hf", "--cg-iters", "20"],
                                 ["--optimizer", "adagrad", "--lr", "0.05"],
                                 ["--optimizer", "sgd", "--lr", "0.05"]],
                         ids=["hf", "adagrad", "sgd"])
def test_resume_is_bit_identical(tmp_path, opt):
    full, part = tmp_path / "full", tmp_path / "part"
    common = ["--task", "temporal_order", "--length", "20", *opt]
    assert train(*common, "--steps", "6", "--every", "3", "--out", str(full)) == 0
    assert train(*common, "--steps", "3", "--every", "3", "--out", str(part)) == 0
    assert train("--resume", str(part), "--steps", "6") == 0
    (a, ma), (b, mb) = checkpoint.load(str(full)), checkpoint.load(str(part))
    assert ma["step"] == mb["step"] == 6
    np.testing.assert_array_equal(a["params"], b["params"])
    if "opt_state" in a:
        np.testing.assert_array_equal(a["opt_state"], b["opt_state"])
    assert ma["evals"] == mb["evals"] and ma.get("hf") == mb.get("hf")


def test_first_order_run_and_plot(tmp_path, capsys):
    out = tmp_path / "run"
    assert train("--task", "copy", "--length", "5", "--steps", "20", "--every", "10",
                 "--lr", "0.05", "--plot", "--out", str(out)) == 0
    text = capsys.readouterr().out
    assert "adagrad lr 0.05, clip 5.0" in text
    assert (out / "loss.png").stat().st_size > 1000


@pytest.mark.parametrize("args, message", [
    (["--optimizer", "hf"], "--optimizer hf trains the long-range tasks"),
    (["--length", "50"], "--length applies to the long-range tasks"),
    (["--task", "adding", "--seq-len", "9"], "--seq-len does not apply to --task adding"),
    (["--task", "adding", "--damping", "2"], "--damping is a setting of --optimizer hf"),
    (["--task", "adding", "--optimizer", "hf", "--lr", "0.1"], "--lr and --clip are settings"),
    (["--task", "adding", "--optimizer", "hf", "--curvature", "2"], "--curvature is a fraction"),
    (["--task", "adding", "--layers", "2"], "one layer without dropout"),
    (["--task", "adding", "--spectral-radius", "0"], "--spectral-radius must be a positive"),
    (["--task", "adding", "--input-scale", "nan"], "--input-scale must be a positive"),
    (["--input-scale", "0.5"], "--input-scale applies to the long-range tasks"),
    (["--task", "adding", "--length", "3"], "T must be >= 11"),
])
def test_flags_that_do_not_apply_exit_2(tmp_path, capsys, args, message):
    with pytest.raises(SystemExit) as e:
        cli.main(["train", "--no-progress", *args, "--out", str(tmp_path / "r"),
                  "--steps", "1"])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_sparse_init_has_the_papers_structure():
    t = TaskTrainer(TrainConfig(task="adding", hidden=40, batch=4, dtype="float64"))
    sparse_init(t.model, 3)
    p = t.model.named_params()
    assert np.all(np.count_nonzero(p["W_hh"], axis=0) == 15)       # 15 inputs per unit
    assert np.all(np.count_nonzero(p["W_xh"], axis=0) == 2)         # all of its 2 inputs
    assert np.max(np.abs(np.linalg.eigvals(p["W_hh"]))) == pytest.approx(1.2)
    assert not p["b_h"].any() and not p["b_y"].any()


def test_sparse_init_scales_are_settings():
    base = TaskTrainer(TrainConfig(task="adding", hidden=40, batch=4, dtype="float64"))
    t = TaskTrainer(TrainConfig(task="adding", hidden=40, batch=4, dtype="float64",
                                spectral_radius=0.9, input_scale=0.25))
    p, q = t.model.named_params(), base.model.named_params()
    assert np.max(np.abs(np.linalg.eigvals(p["W_hh"]))) == pytest.approx(0.9)
    np.testing.assert_allclose(p["W_hh"], q["W_hh"] * (0.9 / 1.2))
    np.testing.assert_allclose(p["W_xh"], q["W_xh"] * 0.25)
    np.testing.assert_array_equal(p["W_hy"], q["W_hy"])
