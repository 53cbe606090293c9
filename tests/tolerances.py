"""Per-dtype tolerances for comparing the C kernels with the NumPy reference.

One kernel call: both backends do the same operations in the same order; they differ only
where the BLAS sums products in another order, or where libm's tanh/exp differ from NumPy's
by an ulp or two. Composed kernels (a model step over T steps) sum many such terms, and
entries that are sums of cancelling terms get an absolute error on the scale of the whole
array, so ``atol`` is relative to the array's largest magnitude (at least 1). Trajectories
(many optimizer steps) compound all that, so they get TRAJECTORY.
"""
import numpy as np

KERNEL = {
    np.dtype(np.float32): dict(rtol=1e-4, atol=1e-5),
    np.dtype(np.float64): dict(rtol=1e-10, atol=1e-12),
}

TRAJECTORY = {
    np.dtype(np.float32): dict(rtol=2e-3, atol=2e-4),
    np.dtype(np.float64): dict(rtol=1e-9, atol=1e-10),
}


def tol(dtype, table=KERNEL):
    return table[np.dtype(dtype)]


def assert_close(actual, desired, dtype, table=KERNEL, err_msg=""):
    t = tol(dtype, table)
    desired = np.asarray(desired)
    scale = max(1.0, float(np.abs(desired).max())) if desired.size else 1.0
    np.testing.assert_allclose(actual, desired, rtol=t["rtol"], atol=t["atol"] * scale,
                               err_msg=err_msg)


def stable_seed(*parts) -> int:
    """A generator seed from a test's parameters, the same in every process. (``hash()`` of
    a tuple holding a str is salted per process, so a seed made from it draws a different
    case on every run: a case can then land a relu pre-activation within the finite
    difference's step of 0, where the derivative jumps, on one run in many.)"""
    import zlib
    return zlib.crc32(repr(parts).encode())
