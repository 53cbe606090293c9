"""The seed experiment, done right: an Elman RNN classifies sequences, trained with Adagrad.

Input 10 features per step, 5 hidden units, 2 classes, softmax cross-entropy on the last
step, Adagrad with learning rate 0.01, 1000 full-batch iterations over 100 random sequences
of 10 steps, the loss printed every 100 iterations.

The seed document that proposed this experiment had two faults, fixed here:
- its network had no recurrence: each step's hidden state was computed from that step's input
  alone, so the "RNN" was a feed-forward layer applied T times. Here H_t depends on H_{t-1}
  through W_hh, and gradients flow back through time.
- it called an optimizer API that does not exist in any library. Here the update is
  elman.Adagrad, whose formula (PyTorch's, accumulate first, then divide) is in its docstring.

Its names map to elman's: U = W_xh, W = W_hh, b = b_h, V = W_hy, c = b_y.

The labels are not noise: a sequence's class is whether the sum of its first feature over the
10 steps is positive, which the network can only tell by carrying a running sum in its state.

    python examples/seed_example.py [--iterations 1000] [--lr 0.01] [--seed 0]
"""
import argparse

import numpy as np

import elman


def make_data(rng, samples=100, steps=10, features=10):
    x = rng.standard_normal((steps, samples, features)).astype(np.float32)  # (T, B, I)
    y = (x[:, :, 0].sum(axis=0) > 0).astype(np.int64)                       # (B,)
    return x, y


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=1000)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x, y = make_data(rng)
    model = elman.ElmanRNN(input_size=10, hidden_size=5, output_size=2, seed=args.seed)
    opt = elman.Adagrad(model, lr=args.lr)

    for it in range(1, args.iterations + 1):
        loss, _ = model.forward_backward(x, y, loss="cross_entropy", last_step_only=True)
        opt.step()
        if it % 100 == 0:
            print(f"iteration {it:5d}  loss {loss:.4f}")

    x_test, y_test = make_data(rng)  # 100 sequences the model has not seen
    for name, xs, ys in (("training", x, y), ("held-out", x_test, y_test)):
        logits, _ = model.forward(xs)  # (T, B, 2): the last step's logits classify
        accuracy = float((logits[-1].argmax(axis=1) == ys).mean())
        print(f"{name} accuracy {accuracy:.2f} (chance 0.50)")


if __name__ == "__main__":
    main()
