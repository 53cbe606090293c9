"""One call for a whole training step: elman.train_step."""
from __future__ import annotations

import numpy as np

from . import kernels
from ._validate import NonFiniteError
from .model import ElmanRNN
from .optim import SGD, Adagrad


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
    where = "train_step"
    if not isinstance(model, ElmanRNN):
        raise TypeError(f"{where}: model must be an elman.ElmanRNN, got {type(model).__name__}")
    if not isinstance(opt, (Adagrad, SGD)):
        raise TypeError(f"{where}: opt must be an elman.Adagrad or elman.SGD, got "
                        f"{type(opt).__name__}")
    if opt.params is not model.params and not (
            np.may_share_memory(opt.params, model.params)
            and opt.params.shape == model.params.shape):
        raise ValueError(f"{where}: opt does not update this model's parameters")
    if getattr(opt, "lr_scales", None):
        raise ValueError(f"{where}: an Adagrad with lr_scales updates in several passes; "
                         f"call model.forward_backward(...) and opt.step() instead")
    with model._exclusive(where):
        return _train_step(where, model, opt, x, y, h0, loss, reduction, last_step_only,
                           batch_first, h_out, lengths)


def _train_step(where, model, opt, x, y, h0, loss, reduction, last_step_only, batch_first,
                h_out, lengths):
    x, is_ids, y, h0, h_out, lengths, ws = model._step_inputs(
        where, x, y, h0, loss, reduction, last_step_only, batch_first, h_out, lengths)
    arch = model._train_arch()
    model._grad_h0 = None  # not computed by the fused step: no stale value from an earlier call
    last_step_only = bool(last_step_only)
    if not kernels._use_c() or getattr(opt, "sparse_rows", False):
        # the reference, and the sparse-row update: the two calls, unfused
        value, hs = kernels._model_forward_backward(
            model.params, model.grads, x, is_ids, y, h0, model.input_size, model.hidden_size,
            model.output_size, model._nl, model.nonlinearity, loss, reduction,
            last_step_only, workspace=ws, arch=arch, lengths=lengths)
        model._last_ids = x if is_ids else None
        opt.step()
        return value, model._final_state(hs, h_out)
    value, norm, stage, hs = kernels._model_train_step(
        model.params, model.grads, x, is_ids, y, h0, model.input_size, model.hidden_size,
        model.output_size, model._nl, loss, reduction, last_step_only, ws, opt, arch, lengths)
    if stage == 1:
        raise NonFiniteError(f"{where}: the loss is not finite ({value}); nothing was updated")
    opt.last_grad_norm = norm
    if stage == 2:
        raise NonFiniteError(f"{where}: the gradient norm is {norm}; nothing was updated")
    opt.steps += 1
    if stage == 3:
        raise NonFiniteError(f"{where}: grad holds NaN or infinity, or the update made a "
                             f"parameter non-finite (the update was applied)")
    return value, model._final_state(hs, h_out)
