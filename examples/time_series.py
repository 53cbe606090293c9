"""Next-value regression on a univariate series through elman's Python API.

    python examples/time_series.py [--steps 1500]

A noisy sum of sines, standardized; an Elman RNN with mean squared error predicts each next
value from the ones before (dense input of one feature). Reports held-out RMSE against the
naive "next = last" predictor. ``elman train --task series`` does the same from a CSV column.
"""
import argparse

import numpy as np

import elman
from elman.data import synthetic_series

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--steps", type=int, default=1500)
args = p.parse_args()

series = synthetic_series(40_000)
mean, std = series[:36_000].mean(), series[:36_000].std()
z = ((series - mean) / std).astype(np.float32)
train, valid = z[:36_000], z[36_000:]
H, T, B = 32, 32, 16

model = elman.ElmanRNN(1, H, 1, seed=0)
opt = elman.Adagrad(model, lr=0.05, max_grad_norm=5.0)
lanes = train[: len(train) // B * B].reshape(B, -1)
h = np.zeros((1, B, H), np.float32)
for step in range(args.steps):
    p0 = (step * T) % (lanes.shape[1] - T - 1)
    if p0 < T:
        h[...] = 0
    x = lanes[:, p0:p0 + T].T[..., None]                     # (T, B, 1) values in
    y = lanes[:, p0 + 1:p0 + T + 1].T[..., None]             # (T, B, 1) next values out
    loss, h = model.forward_backward(x, y, h, loss="mse")
    opt.step()
    if step % 500 == 0:
        print(f"step {step}: training RMSE {np.sqrt(loss) * std:.4f}")

Y, _ = model.forward(valid[:-1, None, None])
rmse = float(np.sqrt(np.mean((Y[:, 0, 0] - valid[1:]) ** 2))) * std
naive = float(np.sqrt(np.mean((valid[1:] - valid[:-1]) ** 2))) * std
print(f"held-out RMSE {rmse:.4f} (naive last-value predictor: {naive:.4f})")
