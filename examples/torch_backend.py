"""A PyTorch character model whose RNN and optimizer are elman's: two lines differ from the
plain torch script (marked below); run with --torch for the plain one, to compare.

    python examples/torch_backend.py [--steps 300] [--torch]

Needs torch (pip install "elman[torch]", a CPU build). Prints the loss and the time per
step. tests/test_elman_torch.py checks that the two compute the same numbers.
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F

import elman.torch
from elman.data import builtin_text

p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
p.add_argument("--steps", type=int, default=300)
p.add_argument("--torch", action="store_true", help="plain torch.nn.RNN and torch Adagrad")
args = p.parse_args()

text = builtin_text(300_000)
vocab = sorted(set(text))
ids = torch.tensor([vocab.index(c) for c in text[:200_000]])
V, H, T, B = len(vocab), 256, 64, 32
RNN = torch.nn.RNN if args.torch else elman.torch.ElmanRNN          # <- line 1
Adagrad = torch.optim.Adagrad if args.torch else elman.torch.Adagrad  # <- line 2


class CharModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(V, V)   # a learned input, as one-hot times a matrix
        self.rnn = RNN(V, H, num_layers=2, batch_first=True)
        self.head = torch.nn.Linear(H, V)

    def forward(self, x, h=None):
        out, h = self.rnn(self.embed(x), h)
        return self.head(out), h


torch.manual_seed(0)
model = CharModel()
opt = Adagrad(model.parameters(), lr=0.01)
lanes = ids[: len(ids) // B * B].reshape(B, -1)
h, t0, losses = None, time.perf_counter(), []
for step in range(args.steps):
    k = (step * T) % (lanes.shape[1] - T - 1)
    x, y = lanes[:, k:k + T], lanes[:, k + 1:k + T + 1]
    logits, h = model(x, h)
    h = h.detach()                      # truncated BPTT: carry the state, not the gradient
    loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
    opt.step()
    losses.append(loss.item())
    if step % 100 == 0 or step == args.steps - 1:
        print(f"step {step:4d}  loss {loss.item():.3f} nats/char")
ms = (time.perf_counter() - t0) / args.steps * 1e3
print(f"{'torch' if args.torch else 'elman.torch'}: {ms:.1f} ms per step, final loss "
      f"{np.mean(losses[-20:]):.3f} (mean of the last 20)")
