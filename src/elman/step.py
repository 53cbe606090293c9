"""One call for a whole training step: elman.train_step."""
from __future__ import annotations

from .model import ElmanRNN


def train_step(model, opt, x, y, h0=None, *, loss="cross_entropy", reduction="mean",
               last_step_only=False, batch_first=False, h_out=None, lengths=None):
    """Forward, loss, backprop through time, gradient clipping and the optimizer's update,
    in one C call with no Python between the stages.

    The same, bit for bit, as::

        loss, h_T = model.forward_backward(x, y, h0, ...)   # same arguments
        opt.step()

    model: an ElmanRNN; opt: the Adagrad or SGD that updates it. Arguments and shapes as in
    ``ElmanRNN.forward_backward``. Returns (loss, h_T). Raises NonFiniteError when the loss
    or the gradient norm is not finite (nothing is updated then), or when the update made a
    parameter non-finite (the update has been applied, as ``opt.step()`` would have).

    >>> import numpy as np, elman
    >>> m = elman.ElmanRNN(20, 16, 20)
    >>> opt = elman.Adagrad(m, lr=0.05, max_grad_norm=5.0)
    >>> x = np.random.default_rng(0).integers(0, 20, size=(9, 4))
    >>> loss, h = elman.train_step(m, opt, x[:-1], x[1:])
    >>> opt.steps
    1
    """
    if not isinstance(model, ElmanRNN):
        raise TypeError(f"train_step: model must be an elman.ElmanRNN, got "
                        f"{type(model).__name__}")
    return model.train_step(opt, x, y, h0, loss=loss, reduction=reduction,
                            last_step_only=last_step_only, batch_first=batch_first,
                            h_out=h_out, lengths=lengths)
