"""ElmanRNN <-> torch.nn.RNN + torch.nn.Linear: the weights of one as the other's.

torch stores the transposes of elman's matrices and two hidden biases (bias_ih, bias_hh)
where elman has one, b_h; the parameter names map layer by layer (elman.layout.layer_names
gives torch's suffixes). torch is imported only when these are called."""
from __future__ import annotations

import numpy as np

from .layout import layer_names


def torch_names(model):
    """((W_xh, W_hh, b_h) names, torch's suffix) for every layer and direction."""
    D = 2 if model.bidirectional else 1
    return [(layer_names(l, d), f"_l{l}" + ("_reverse" if d else ""))
            for l in range(model.num_layers) for d in range(D)]


def from_torch(cls, rnn, linear, *, dtype=None):
    """A ``cls`` (an ElmanRNN) holding the weights of rnn and linear (ElmanRNN.from_torch)."""
    import torch
    where = "ElmanRNN.from_torch"
    if not isinstance(rnn, torch.nn.RNN):
        raise TypeError(f"{where}: rnn must be a torch.nn.RNN, got {type(rnn).__name__}")
    if not isinstance(linear, torch.nn.Linear):
        raise TypeError(f"{where}: linear must be a torch.nn.Linear, got "
                        f"{type(linear).__name__}")
    if getattr(rnn, "proj_size", 0):
        raise ValueError(f"{where}: torch.nn.RNN has no proj_size elman can hold")
    D = 2 if rnn.bidirectional else 1
    if linear.in_features != D * rnn.hidden_size:
        raise ValueError(f"{where}: linear takes {linear.in_features} inputs, the RNN "
                         f"gives {D * rnn.hidden_size}")
    w_ih = rnn.weight_ih_l0.detach().cpu().numpy()
    dtype = np.dtype(dtype or (np.float64 if w_ih.dtype == np.float64 else np.float32))
    m = cls(rnn.input_size, rnn.hidden_size, linear.out_features,
            nonlinearity=rnn.nonlinearity, num_layers=rnn.num_layers,
            bidirectional=rnn.bidirectional, dropout=float(rnn.dropout), dtype=dtype)
    p = m.named_params()

    def get(name):
        return getattr(rnn, name).detach().cpu().numpy()

    for (nx, nh, nb), sfx in torch_names(m):
        p[nx][...] = get("weight_ih" + sfx).T
        p[nh][...] = get("weight_hh" + sfx).T
        p[nb][...] = 0
        if rnn.bias:
            p[nb][...] = get("bias_ih" + sfx).astype(np.float64) + get("bias_hh" + sfx)
    p["W_hy"][...] = linear.weight.detach().cpu().numpy().T
    p["b_y"][...] = (linear.bias.detach().cpu().numpy() if linear.bias is not None else 0)
    return m


def to_torch(model):
    """(torch.nn.RNN, torch.nn.Linear) computing what model computes (ElmanRNN.to_torch)."""
    import torch
    dt = torch.float64 if model.dtype == np.float64 else torch.float32
    rnn = torch.nn.RNN(model.input_size, model.hidden_size, nonlinearity=model.nonlinearity,
                       num_layers=model.num_layers, bidirectional=model.bidirectional,
                       dropout=model.dropout, dtype=dt)
    D = 2 if model.bidirectional else 1
    linear = torch.nn.Linear(D * model.hidden_size, model.output_size, dtype=dt)
    p = model.named_params()
    with torch.no_grad():
        for (nx, nh, nb), sfx in torch_names(model):
            getattr(rnn, "weight_ih" + sfx).copy_(torch.from_numpy(p[nx].T.copy()))
            getattr(rnn, "weight_hh" + sfx).copy_(torch.from_numpy(p[nh].T.copy()))
            getattr(rnn, "bias_ih" + sfx).copy_(torch.from_numpy(p[nb].copy()))
            getattr(rnn, "bias_hh" + sfx).zero_()
        linear.weight.copy_(torch.from_numpy(p["W_hy"].T.copy()))
        linear.bias.copy_(torch.from_numpy(p["b_y"].copy()))
    return rnn, linear
