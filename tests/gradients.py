"""Central finite differences, shared by the gradient checks."""
import numpy as np

EPS = 1e-6


def numerical_grad(f, v, idx=None, eps=EPS):
    """d f() / d v by central differences, v changed in place and restored: an array shaped
    as v, or for the flat indices idx only, a 1-D array of len(idx)."""
    flat = v.reshape(-1)
    which = range(flat.size) if idx is None else idx
    g = np.zeros(len(which))
    for n, i in enumerate(which):
        old = flat[i]
        flat[i] = old + eps
        fp = f()
        flat[i] = old - eps
        fm = f()
        flat[i] = old
        g[n] = (fp - fm) / (2 * eps)
    return g.reshape(v.shape).astype(v.dtype) if idx is None else g
