"""A character language model through elman's Python API, in a few lines.

    python examples/char_lm.py [--steps 2000] [--data FILE]

Trains on a text file (default: a slice of the Python standard library's sources), carrying
the hidden state from window to window (truncated BPTT), then prints held-out bits per
character and a sample. ``elman train`` does the same with progress, checkpoints and resume.
"""
import argparse
import math

import numpy as np

import elman
from elman.data import builtin_text

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--steps", type=int, default=2000)
p.add_argument("--data", help="a UTF-8 text file (default: built-in text)")
args = p.parse_args()

text = open(args.data, encoding="utf-8").read() if args.data else builtin_text(1_000_000)
vocab = sorted(set(text))
lookup = {c: i for i, c in enumerate(vocab)}
ids = np.array([lookup[c] for c in text])
train, valid = ids[: -len(ids) // 20], ids[-len(ids) // 20:]
V, H, T, B = len(vocab), 128, 32, 32

model = elman.ElmanRNN(V, H, V, init="normal0.01", seed=0)
opt = elman.Adagrad(model, lr=0.02, max_grad_norm=5.0)
lanes = train[: len(train) // B * B].reshape(B, -1)          # B contiguous stretches
h = np.zeros((1, B, H), np.float32)
x, y = np.empty((T, B), np.int64), np.empty((T, B), np.int64)
for step in range(args.steps):
    p0 = (step * T) % (lanes.shape[1] - T - 1)
    if p0 < T:
        h[...] = 0                                           # a new pass: fresh state
    x[...], y[...] = lanes[:, p0:p0 + T].T, lanes[:, p0 + 1:p0 + T + 1].T
    loss, h = model.forward_backward(x, y, h, h_out=h)       # carries h, no allocation
    opt.step()
    if step % 500 == 0:
        print(f"step {step}: {loss / math.log(2):.3f} bits/char")

Y, _ = model.forward(valid[:-1, None])                       # one long held-out stream
nats, _ = elman.kernels.softmax_cross_entropy(Y[:, 0], valid[1:])
print(f"held-out: {nats / math.log(2):.3f} bits/char")
start = vocab.index("\n") if "\n" in vocab else 0
print("".join(vocab[i] for i in model.sample(300, start=start, temperature=0.8, seed=1)))
