"""elman as a backend for PyTorch on the CPU: swap two lines, keep the rest of the script.

    import elman.torch
    opt = elman.torch.Adagrad(model.parameters(), lr=1e-2)          # for torch.optim.Adagrad
    rnn = elman.torch.ElmanRNN(I, H, num_layers=2, batch_first=True)  # for torch.nn.RNN

``Adagrad`` is a ``torch.optim.Optimizer`` with torch.optim.Adagrad's arguments,
param_groups and state_dict (each loads the other's, and older torch releases' too), whose
update is elman's fused C kernel working in place on the tensors' memory. ``ElmanRNN`` is a
``torch.nn.RNNBase`` with torch.nn.RNN's constructor, members, parameter names and call,
whose forward and backward are elman's C kernels; double backward, vmap, torch.func,
forward-mode AD, meta tensors, DistributedDataParallel and torch.compile work as with
torch.nn.RNN (its docstring says which code runs where).

torch is an optional dependency: ``pip install "elman[torch]"`` (install a CPU build of
torch first). Only CPU tensors of float32 or float64 are computed on.

Modules: ``optim`` (Adagrad), ``rnn`` (ElmanRNN), ``_layer`` (one layer as an autograd
Function on the C kernels, the same layer in torch ops, and the custom op torch.compile
sees), ``_tensors`` (shared checks).
"""
from .optim import Adagrad
from .rnn import ElmanRNN

__all__ = ["Adagrad", "ElmanRNN"]
