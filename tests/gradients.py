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


def numerical_jvp(f, v, d, eps=EPS):
    """The derivative of f() (an array) along the direction d of v, (f(v + eps d) -
    f(v - eps d)) / (2 eps), v changed in place and restored bit for bit."""
    old = v.copy()
    v[...] = old + eps * d
    fp = np.array(f(), dtype=np.float64)
    v[...] = old - eps * d
    fm = np.array(f(), dtype=np.float64)
    v[...] = old
    return (fp - fm) / (2 * eps)


def numerical_jacobian(f, v, eps=EPS):
    """d f() / d v by central differences, (f().size, v.size): column i is the derivative
    along the i-th element of v (changed in place and restored)."""
    flat = v.reshape(-1)
    cols = []
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        fp = np.array(f(), dtype=np.float64).reshape(-1)
        flat[i] = old - eps
        fm = np.array(f(), dtype=np.float64).reshape(-1)
        flat[i] = old
        cols.append((fp - fm) / (2 * eps))
    return np.stack(cols, axis=1)
