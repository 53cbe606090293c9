"""elman: Elman recurrent networks and Adagrad on CPUs.

C kernels (csrc/) do the work; this package is a thin layer over them:

- :class:`ElmanRNN` — stacked, optionally bidirectional Elman layers (dropout between
  them) and an output layer, over one flat parameter buffer;
- :class:`Adagrad`, :class:`SGD`, :func:`clip_grad_norm_` — fused optimizer updates;
- :func:`train_step` — forward, BPTT, clipping and the update in one C call; and
  :class:`TrainStep`, the same prepared for one shape (a few microseconds per call);
- :class:`HessianFree` — second-order training: conjugate gradient on damped Gauss-Newton
  products (``ElmanRNN.gauss_newton``), as Martens & Sutskever train RNNs; and
  :class:`NonlinearCG`, full-batch nonlinear conjugate gradient (torch.optim.LBFGS's
  ``step(closure)``); :mod:`elman.tasks`, the long-range problems they were tested on;
- :mod:`elman.kernels` — functional in-place kernels on NumPy arrays;
- :mod:`elman.reference` — the NumPy twin of every kernel (the specification);
- :func:`backend` — switch between the ``"c"`` and ``"numpy"`` backends;
- :func:`cpu_path` — the instruction set the hot loops use (``ELMAN_CPU``),
  :func:`bf16_kernel` the kernel of the bfloat16 products (``ELMAN_BF16_KERNEL``), and
  :func:`set_num_threads` for their OpenMP threads.
"""
from . import _core  # noqa: F401  (loads the kernels and hands them SciPy's BLAS)
from . import kernels, reference
from ._config import (bf16_kernel, config, cpu_path, cpu_paths, get_num_threads,
                      set_num_threads, show_config)
from ._validate import NonFiniteError
from .kernels import backend
from .model import ElmanRNN
from .optim import SGD, Adagrad, ProximalAdagrad, RowwiseAdagrad, clip_grad_norm_
from .model import train_step
from .prepared import TrainStep
from .gauss_newton import GaussNewton
from .hf import HessianFree, HFStep
from .ncg import NonlinearCG

__version__ = "0.1.0"

__all__ = ["ElmanRNN", "HessianFree", "HFStep", "GaussNewton", "NonlinearCG", "Adagrad", "ProximalAdagrad", "RowwiseAdagrad", "SGD", "clip_grad_norm_", "train_step", "TrainStep", "kernels",
           "reference",
           "backend", "cpu_path", "cpu_paths", "bf16_kernel", "get_num_threads", "set_num_threads",
           "show_config", "config", "NonFiniteError", "__version__"]
