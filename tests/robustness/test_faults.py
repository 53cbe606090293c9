"""Faults: checkpoints survive SIGKILL at random moments of a write and a full disk; memory
stays flat over 10,000 training steps."""
import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import elman
from elman import checkpoint

WRITER = """
import sys, numpy as np
from elman import checkpoint
out, i = sys.argv[1], 0
while True:
    i += 1
    arrays = {"params": np.full(200_000, float(i)), "h": np.full(64, float(i))}
    checkpoint.save(out, arrays, {"step": i})
    print(i, flush=True)
"""


def test_sigkill_during_writes_always_leaves_a_loadable_checkpoint(tmp_path):
    out = str(tmp_path / "run")
    checkpoint.save(out, {"params": np.zeros(200_000), "h": np.zeros(64)}, {"step": 0})
    rng = np.random.default_rng(0)
    seen = set()
    for trial in range(20):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, out], stdout=subprocess.PIPE,
                                text=True)
        proc.stdout.readline()                         # at least one write has finished
        time.sleep(float(rng.uniform(0, 0.05)))        # then kill it anywhere in the next
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        arrays, meta = checkpoint.load(out)            # never raises
        step = meta["step"]
        assert arrays["params"][0] == step and arrays["h"][-1] == step
        seen.add(step)
    assert len(seen) > 1                               # the kills landed at different moments
    leftovers = [f for f in os.listdir(out) if ".tmp-" in f]
    assert len(leftovers) <= 20                        # dead writers' temporaries, harmless


def test_a_full_disk_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    out = str(tmp_path / "run")
    checkpoint.save(out, {"params": np.ones(10)}, {"step": 1})
    real_savez = np.savez

    def disk_full(f, **arrays):
        f.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    with pytest.raises(OSError, match="No space"):
        checkpoint.save(out, {"params": np.full(10, 2.0)}, {"step": 2})
    monkeypatch.setattr(np, "savez", real_savez)
    arrays, meta = checkpoint.load(out)
    assert meta["step"] == 1 and arrays["params"][0] == 1
    assert not [f for f in os.listdir(out) if ".tmp-" in f]   # the temporary is removed


def _rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
@pytest.mark.parametrize("stack", [{}, dict(num_layers=2, bidirectional=True, dropout=0.2)],
                         ids=["one-layer", "stack-lengths"])
def test_memory_stays_flat_over_ten_thousand_steps(stack):
    m = elman.ElmanRNN(30, 32, 30, seed=0, **stack)
    opt = elman.Adagrad(m, lr=0.05, max_grad_norm=1.0)
    x = np.random.default_rng(0).integers(0, 30, (9, 4))
    h = m.init_hidden(4)
    lengths = np.array([8, 3, 5, 1]) if stack else None
    for _ in range(500):   # shapes known, allocator pools warm
        _, h = elman.train_step(m, opt, x[:-1], x[1:], h, h_out=h, lengths=lengths)
    before = _rss_kb()
    for _ in range(10_000):
        _, h = elman.train_step(m, opt, x[:-1], x[1:], h, h_out=h, lengths=lengths)
        m.forward(x[:3])
        if not m.bidirectional:
            m.sample(5, seed=1)
    grown = _rss_kb() - before
    assert grown < 2048, f"RSS grew by {grown} KiB over 10,000 steps"
