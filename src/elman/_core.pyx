# cython: embedsignature=True
"""Bindings to the C kernels in csrc/ (private; the public API is elman.kernels).

Every function takes flat, C-contiguous 1-D buffers (float32 or float64, one dtype per call)
plus explicit sizes. It checks that each buffer holds exactly the elements its sizes say
before any pointer reaches C, releases the GIL around the kernel, and turns a status code into
an exception. An optional buffer is passed as an empty array: length 0 means "absent".
Readable messages naming the user's arguments come from elman.kernels, which validates first;
the checks here are the last line that keeps a direct caller from crashing the process.
"""
import operator

INF = float("inf")

cimport cython
from cython cimport floating
from libc.math cimport isfinite
from libc.stdint cimport int64_t, uint64_t
from cpython.buffer cimport (PyBUF_C_CONTIGUOUS, PyBUF_WRITABLE, PyBuffer_Release,
                            PyObject_GetBuffer)
from cpython.mem cimport PyMem_Free, PyMem_Malloc
from libc.string cimport memcpy, memset
from cpython.pycapsule cimport PyCapsule_GetName, PyCapsule_GetPointer

# ---- helpers ------------------------------------------------------------------------------

cdef int _raise(int status, str where) except -1:
    """Turn a non-OK status into the matching Python exception."""
    msg = f"{where}: {elman_status_string(status).decode()}"
    if status == ELMAN_ERR_NONFINITE:
        raise FloatingPointError(msg)
    if status == ELMAN_ERR_TOO_LARGE:
        raise OverflowError(msg)
    if status == ELMAN_ERR_NO_BLAS:
        raise RuntimeError(msg)
    raise ValueError(msg)


cdef inline int _check(int status, str where) except -1:
    if status != ELMAN_OK:
        _raise(status, where)
    return 0


cdef int _need(Py_ssize_t have, object want, str name) except -1:
    """A required buffer must hold exactly `want` elements."""
    if have != want:
        raise ValueError(f"{name}: buffer holds {have} elements, expected {want}")
    return 0


cdef bint _optional(Py_ssize_t have, object want, str name) except -1:
    """An optional buffer is absent (empty) or holds exactly `want` elements."""
    if have == 0:
        return False
    _need(have, want, name)
    return True


cdef elman_int _size(object v, str name) except -1:
    v = operator.index(v)  # an integer, not a float that would be truncated
    if v < 0 or v > 2**62:
        raise ValueError(f"{name} must be in [0, 2**62], got {v}")
    return v


cdef inline floating *_p(floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const floating *_cp(const floating[::1] a) noexcept nogil:
    return &a[0] if a.shape[0] > 0 else NULL


cdef inline const elman_int *_ip(const int64_t[::1] a) noexcept nogil:
    return <const elman_int *>&a[0] if a.shape[0] > 0 else NULL


cdef void *_blas_pointer(dict capi, str name) except NULL:
    capsule = capi[name]
    cdef void *p = PyCapsule_GetPointer(capsule, PyCapsule_GetName(capsule))
    if p == NULL:
        raise ImportError(f"scipy.linalg.cython_blas.{name} has no function pointer")
    return p


def _init_blas():
    """Hand SciPy's GEMM to the C kernels (no BLAS is linked at build time)."""
    from scipy.linalg import cython_blas
    capi = cython_blas.__pyx_capi__
    elman_set_blas(<elman_sgemm_fn>_blas_pointer(capi, "sgemm"),
                   <elman_dgemm_fn>_blas_pointer(capi, "dgemm"))


_init_blas()


def has_blas():
    return bool(elman_has_blas())


# ---- the BLAS held to one thread while a kernel runs (elman._threads) --------------------
# The BLAS's get/set-thread-count functions as C pointers, a count of the kernel calls
# running and the settings to restore when the last ends. Called with the GIL held, and
# nothing here releases it, so the count needs no lock (ctypes calls would release it).

ctypedef int (*_threads_get_fn)() noexcept nogil
ctypedef void (*_threads_set_fn)(int) noexcept nogil
cdef _threads_get_fn _blas_get[8]
cdef _threads_set_fn _blas_set[8]
cdef int _blas_saved[8]
cdef int _blas_n = 0
cdef Py_ssize_t _blas_holders = 0


def set_blas_thread_controls(list pairs):
    """The (get address, set address) pairs of the BLAS libraries to hold (at most 8).
    Returns False, changing nothing, while a hold is open (its saved settings would not
    match): the caller tries again later."""
    global _blas_n
    if len(pairs) > 8:
        raise ValueError("set_blas_thread_controls: at most 8 libraries")
    if _blas_holders:
        return False
    cdef size_t g, p
    for k, (g, p) in enumerate(pairs):
        if g == 0 or p == 0:
            raise ValueError("set_blas_thread_controls: a NULL function")
    for k, (g, p) in enumerate(pairs):
        _blas_get[k] = <_threads_get_fn><void *>g
        _blas_set[k] = <_threads_set_fn><void *>p
    _blas_n = len(pairs)
    return True


cdef inline void _blas_hold() noexcept:
    global _blas_holders
    cdef int k, n
    if _blas_holders == 0:
        for k in range(_blas_n):
            n = _blas_get[k]()
            _blas_saved[k] = n
            if n > 1:
                _blas_set[k](1)
    _blas_holders += 1


cdef inline void _blas_release() noexcept:
    global _blas_holders
    cdef int k
    if _blas_holders <= 0:
        return
    _blas_holders -= 1
    if _blas_holders == 0:
        for k in range(_blas_n):
            if _blas_saved[k] > 1:
                _blas_set[k](_blas_saved[k])


def blas_hold():
    """Hold the BLAS to one thread until the matching blas_release()."""
    _blas_hold()


def blas_release():
    """End one blas_hold(); the last gives the BLAS back its setting."""
    _blas_release()


def blas_holders():
    """How many holds are open (for tests)."""
    return _blas_holders


def bf16_native():
    """Whether bfloat16 products run on a native kernel (vdpbf16ps or AMX), else on the
    emulation."""
    return bool(elman_bf16_native())


BF16_KERNELS = ("emulated", "vdpbf16ps", "amx")  # ELMAN_BF16_* in elman.h, slowest first


def bf16_kernel():
    """The kernel the bfloat16 products run on now: one of BF16_KERNELS."""
    return BF16_KERNELS[elman_bf16_kernel()]


def set_bf16_kernel(str name):
    """Run the bfloat16 products on at most the named kernel ("auto": the best there is)."""
    cdef int k
    if name == "auto":
        k = -1
    elif name in BF16_KERNELS:
        k = BF16_KERNELS.index(name)
    else:
        raise ValueError(f"unknown bfloat16 kernel {name!r}; one of "
                         f"{', '.join(BF16_KERNELS)} (or 'auto')")
    if elman_set_bf16_kernel(k) != ELMAN_OK:
        raise ValueError(f"bfloat16 kernel {name!r} needs instructions this CPU or build lacks")


def cpu_features():
    """Bit mask of CPU features (see elman.h, ELMAN_CPU_*)."""
    return int(elman_cpu_features())


def kernel_path():
    return elman_kernel_path().decode()


def build_info():
    return elman_build_info().decode()


def kernel_paths():
    """The kernel paths this build holds (those this CPU runs are kernel_path_supported)."""
    return tuple(elman_kernel_paths().decode().split())


def kernel_path_supported(str name):
    return bool(elman_kernel_path_supported(name.encode()))


def set_kernel_path(str name):
    """Use the named kernel path ("auto": the best this CPU runs)."""
    cdef int s = elman_set_kernel_path(name.encode())
    if s == ELMAN_ERR_CPU:
        raise ValueError(f"kernel path {name!r} needs instructions this CPU lacks")
    if s != ELMAN_OK:
        raise ValueError(f"unknown kernel path {name!r}; this build has "
                         f"{', '.join(kernel_paths())} (or 'auto')")


def max_threads():
    return int(elman_max_threads())


def set_num_threads(int n):
    if n < 1:
        raise ValueError(f"the number of threads must be >= 1, got {n}")
    elman_set_num_threads(n)


# ---- optimizers ---------------------------------------------------------------------------

cdef Py_ssize_t _update_length(Py_ssize_t n_param, Py_ssize_t n_grad,
                               Py_ssize_t n_state) except -1:
    """The length n of an elementwise update: state and grad hold what param holds."""
    _need(n_state, n_param, "state")
    _need(n_grad, n_param, "grad")
    return n_param


def adagrad_update(floating[::1] param, const floating[::1] grad, floating[::1] state,
                   double lr, double lr_decay, double weight_decay, double eps,
                   double clip_value, double grad_scale, int64_t step, bint eps_inside,
                   bint maximize):
    """In place on param and state (n,). Raises FloatingPointError when grad held NaN/inf
    (the update has been applied)."""
    cdef Py_ssize_t n = _update_length(param.shape[0], grad.shape[0], state.shape[0])
    cdef elman_adagrad_opts o
    o.lr = lr; o.lr_decay = lr_decay; o.weight_decay = weight_decay; o.eps = eps
    o.clip_value = clip_value; o.grad_scale = grad_scale; o.step = step
    o.eps_inside = eps_inside; o.maximize = maximize
    cdef int s
    with nogil:
        if floating is float:
            s = elman_adagrad_update_f32(_p(param), _cp(grad), _p(state), n, &o)
        else:
            s = elman_adagrad_update_f64(_p(param), _cp(grad), _p(state), n, &o)
    _check(s, "adagrad_update")


def adagrad_update_many(list params, list grads, list states, bint f64, double lr,
                        double lr_decay, double weight_decay, double eps, int64_t step,
                        bint maximize):
    """Adagrad (torch's: eps outside, no clipping) over many flat buffers of one dtype in
    one call with the GIL released: params[i], grads[i] and states[i] are 1-D C-contiguous
    arrays of one length each. Returns True when a gradient held NaN/inf or an updated
    parameter is not finite (the updates have all been applied)."""
    cdef Py_ssize_t count = len(params), i
    if len(states) != count or len(grads) != count:
        raise ValueError("adagrad_update_many: params, grads and states differ in number")
    cdef void **pp = <void **>PyMem_Malloc(3 * count * sizeof(void *) + 1)
    cdef elman_int *ns = <elman_int *>PyMem_Malloc(count * sizeof(elman_int) + 1)
    if pp == NULL or ns == NULL:
        PyMem_Free(pp)
        PyMem_Free(ns)
        raise MemoryError()
    cdef float[::1] pf, sf
    cdef const float[::1] gf
    cdef double[::1] pd, sd
    cdef const double[::1] gd
    cdef elman_adagrad_opts o
    o.lr = lr; o.lr_decay = lr_decay; o.weight_decay = weight_decay; o.eps = eps
    o.clip_value = INF; o.grad_scale = 1; o.step = step; o.eps_inside = 0
    o.maximize = maximize
    cdef int st = ELMAN_OK, bad = 0
    try:
        for i in range(count):
            if f64:
                pd = params[i]; sd = states[i]; gd = grads[i]
                n = pd.shape[0]
                _need(sd.shape[0], n, "state")
                _need(gd.shape[0], n, "grad")
                if n > 0:
                    pp[i] = &pd[0]; pp[count + i] = <void *>&gd[0]; pp[2 * count + i] = &sd[0]
            else:
                pf = params[i]; sf = states[i]; gf = grads[i]
                n = pf.shape[0]
                _need(sf.shape[0], n, "state")
                _need(gf.shape[0], n, "grad")
                if n > 0:
                    pp[i] = &pf[0]; pp[count + i] = <void *>&gf[0]; pp[2 * count + i] = &sf[0]
            ns[i] = n
            if n == 0:
                pp[i] = pp[count + i] = pp[2 * count + i] = NULL
        with nogil:
            if f64:
                st = elman_adagrad_update_many_f64(<double **>pp, <const double **>(pp + count),
                                                   <double **>pp + 2 * count, ns, count, &o)
            else:
                st = elman_adagrad_update_many_f32(<float **>pp, <const float **>(pp + count),
                                                   <float **>pp + 2 * count, ns, count, &o)
        if st == ELMAN_ERR_NONFINITE:
            bad = 1
        else:
            _check(st, "adagrad_update_many")
    finally:
        PyMem_Free(pp)
        PyMem_Free(ns)
    return bool(bad)


def adagrad_rows_update(floating[::1] param, const floating[::1] grad, floating[::1] state,
                        const int64_t[::1] ids, unsigned char[::1] mask, V, H, double lr,
                        double lr_decay, double weight_decay, double eps, double clip_value,
                        double grad_scale, int64_t step, bint eps_inside, bint maximize):
    """Adagrad on the rows ids of a (V, H) matrix (param, state, grad flat); mask (V,) zeros."""
    cdef elman_int v_ = _size(V, "V"), h_ = _size(H, "H")
    _need(param.shape[0], V * H, "param")
    _need(state.shape[0], V * H, "state")
    _need(grad.shape[0], V * H, "grad")
    _need(mask.shape[0], V, "mask")
    cdef elman_adagrad_opts o
    o.lr = lr; o.lr_decay = lr_decay; o.weight_decay = weight_decay; o.eps = eps
    o.clip_value = clip_value; o.grad_scale = grad_scale; o.step = step
    o.eps_inside = eps_inside; o.maximize = maximize
    cdef Py_ssize_t m = ids.shape[0]
    cdef unsigned char *mp = &mask[0] if mask.shape[0] > 0 else NULL
    cdef int s
    with nogil:
        if floating is float:
            s = elman_adagrad_rows_update_f32(_p(param), _cp(grad), _p(state), _ip(ids), m,
                                              v_, h_, mp, &o)
        else:
            s = elman_adagrad_rows_update_f64(_p(param), _cp(grad), _p(state), _ip(ids), m,
                                              v_, h_, mp, &o)
    _check(s, "adagrad_rows_update")


def proximal_adagrad_update(floating[::1] param, const floating[::1] grad,
                            floating[::1] state, double lr, double l1, double l2,
                            double grad_scale):
    """In place on param and state (n,); TensorFlow's ProximalAdagrad."""
    cdef Py_ssize_t n = _update_length(param.shape[0], grad.shape[0], state.shape[0])
    cdef elman_proximal_opts o
    o.lr = lr; o.l1 = l1; o.l2 = l2; o.grad_scale = grad_scale
    cdef int s
    with nogil:
        if floating is float:
            s = elman_proximal_adagrad_update_f32(_p(param), _cp(grad), _p(state), n, &o)
        else:
            s = elman_proximal_adagrad_update_f64(_p(param), _cp(grad), _p(state), n, &o)
    _check(s, "proximal_adagrad_update")


def rowwise_adagrad_update(floating[::1] param, const floating[::1] grad,
                           floating[::1] state, rows, cols, double lr, double eps,
                           double grad_scale):
    """In place on param (rows*cols,) and state (rows,); FBGEMM's row-wise Adagrad."""
    cdef elman_int r_ = _size(rows, "rows"), c_ = _size(cols, "cols")
    _need(param.shape[0], rows * cols, "param")
    _need(grad.shape[0], rows * cols, "grad")
    _need(state.shape[0], rows, "state")
    cdef elman_rowwise_opts o
    o.lr = lr; o.eps = eps; o.grad_scale = grad_scale
    cdef int s
    with nogil:
        if floating is float:
            s = elman_rowwise_adagrad_update_f32(_p(param), _cp(grad), _p(state), r_, c_, &o)
        else:
            s = elman_rowwise_adagrad_update_f64(_p(param), _cp(grad), _p(state), r_, c_, &o)
    _check(s, "rowwise_adagrad_update")


def sgd_update(floating[::1] param, const floating[::1] grad, floating[::1] momentum_buf,
               double lr, double momentum, double weight_decay, double clip_value,
               double grad_scale, bint maximize):
    """In place on param (n,) and momentum_buf (n,; empty when momentum == 0)."""
    cdef Py_ssize_t n = param.shape[0]
    _need(grad.shape[0], n, "grad")
    if momentum != 0:
        _need(momentum_buf.shape[0], n, "momentum_buf")
    cdef elman_sgd_opts o
    o.lr = lr; o.momentum = momentum; o.weight_decay = weight_decay
    o.clip_value = clip_value; o.grad_scale = grad_scale; o.maximize = maximize
    cdef int s
    with nogil:
        if floating is float:
            s = elman_sgd_update_f32(_p(param), _cp(grad), _p(momentum_buf), n, &o)
        else:
            s = elman_sgd_update_f64(_p(param), _cp(grad), _p(momentum_buf), n, &o)
    _check(s, "sgd_update")


def step_gemm(floating[::1] C, const floating[::1] A, const floating[::1] W, M, K, N):
    """C (M, N) += A (M, K) @ W (K, N) on elman's own kernel (flat row-major buffers)."""
    cdef elman_int m_ = _size(M, "M"), k_ = _size(K, "K"), n_ = _size(N, "N")
    _need(C.shape[0], M * N, "C")
    _need(A.shape[0], M * K, "A")
    _need(W.shape[0], K * N, "W")
    cdef int st
    with nogil:
        if floating is float:
            st = elman_step_gemm_f32(_p(C), _cp(A), _cp(W), m_, k_, n_)
        else:
            st = elman_step_gemm_f64(_p(C), _cp(A), _cp(W), m_, k_, n_)
    _check(st, "step_gemm")


def stream_probe(floating[::1] p, floating[::1] s, const floating[::1] g):
    """The bandwidth probe: s += g, p -= g over n elements (Adagrad's memory traffic)."""
    cdef Py_ssize_t n = p.shape[0]
    _need(s.shape[0], n, "s")
    _need(g.shape[0], n, "g")
    cdef int st
    with nogil:
        if floating is float:
            st = elman_stream_probe_f32(_p(p), _p(s), _cp(g), n)
        else:
            st = elman_stream_probe_f64(_p(p), _p(s), _cp(g), n)
    _check(st, "stream_probe")


def fma_probe(int64_t iters, bint f64=False):
    """(FLOPs done, sink) of the FMA peak probe: iters rounds on every thread (elman.h)."""
    if iters < 0:
        raise ValueError(f"fma_probe: iters must be >= 0, got {iters}")
    cdef double flops = 0, sink = 0
    cdef int st
    with nogil:
        if f64:
            st = elman_fma_probe_f64(iters, &flops, &sink)
        else:
            st = elman_fma_probe_f32(iters, &flops, &sink)
    _check(st, "fma_probe")
    return flops, sink


ctypedef int (*_unit_probe_fn)(elman_int, double *, double *) noexcept nogil


cdef object _unit_probe(_unit_probe_fn probe, int64_t iters, str where):
    if iters < 0:
        raise ValueError(f"{where}: iters must be >= 0, got {iters}")
    cdef double flops = 0, sink = 0
    cdef int st
    with nogil:
        st = probe(iters, &flops, &sink)
    _check(st, where)
    return flops, sink


def bf16_probe(int64_t iters):
    """(FLOPs done, sink) of the vdpbf16ps peak probe; ValueError where the CPU or the
    path in use lacks AVX512_BF16."""
    return _unit_probe(elman_bf16_probe, iters, "bf16_probe")


def bf16_amx_probe(int64_t iters):
    """(FLOPs done, sink) of the AMX peak probe (tdpbf16ps); ValueError where the CPU or
    the path in use lacks AMX-BF16."""
    return _unit_probe(elman_bf16_amx_probe, iters, "bf16_amx_probe")


def all_finite(const floating[::1] x):
    """True when no element of x is NaN or infinite (one vectorized pass)."""
    cdef bint ok
    with nogil:
        if floating is float:
            ok = elman_all_finite_f32(_cp(x), x.shape[0])
        else:
            ok = elman_all_finite_f64(_cp(x), x.shape[0])
    return ok


def index_range(const int64_t[::1] x):
    """(min, max) of a non-empty int64 array in one pass."""
    if x.shape[0] == 0:
        raise ValueError("index_range: empty array")
    cdef elman_int lo = 0, hi = 0
    with nogil:
        elman_index_range(&lo, &hi, _ip(x), x.shape[0])
    return lo, hi


def sumsq(const floating[::1] x):
    """sum(x * x), accumulated in double."""
    cdef double out = 0
    cdef int s
    with nogil:
        if floating is float:
            s = elman_sumsq_f32(&out, _cp(x), x.shape[0])
        else:
            s = elman_sumsq_f64(&out, _cp(x), x.shape[0])
    _check(s, "sumsq")
    return out


# ---- activations --------------------------------------------------------------------------

def act_forward(floating[::1] y, const floating[::1] a, int nonlinearity):
    _need(y.shape[0], a.shape[0], "y")
    cdef int s
    with nogil:
        if floating is float:
            s = elman_act_forward_f32(_p(y), _cp(a), a.shape[0], nonlinearity)
        else:
            s = elman_act_forward_f64(_p(y), _cp(a), a.shape[0], nonlinearity)
    _check(s, "act_forward")


def act_backward(floating[::1] dA, const floating[::1] dH, const floating[::1] y,
                 int nonlinearity):
    _need(dA.shape[0], y.shape[0], "dA")
    _need(dH.shape[0], y.shape[0], "dH")
    cdef int s
    with nogil:
        if floating is float:
            s = elman_act_backward_f32(_p(dA), _cp(dH), _cp(y), y.shape[0], nonlinearity)
        else:
            s = elman_act_backward_f64(_p(dA), _cp(dH), _cp(y), y.shape[0], nonlinearity)
    _check(s, "act_backward")


# ---- Elman layer --------------------------------------------------------------------------

cdef int _rnn_shape(elman_rnn_shape *r, T, B, I, H, int nonlinearity,
                    const int64_t[::1] lengths=None, bint reverse=False) except -1:
    """The shape struct; lengths (B,) or empty/None for full-length sequences (their values
    are checked by the kernels)."""
    r.T = _size(T, "T"); r.B = _size(B, "B"); r.I = _size(I, "I"); r.H = _size(H, "H")
    r.nonlinearity = nonlinearity
    r.reverse = reverse
    r.lengths = NULL
    if lengths is not None and lengths.shape[0] > 0:
        _need(lengths.shape[0], B, "lengths")
        r.lengths = _ip(lengths)
    return 0


cdef int _rnn_inputs(Py_ssize_t nx, Py_ssize_t nids, bint use_ids, T, B, I) except -1:
    if use_ids:
        _need(nids, T * B, "ids")
    else:
        _need(nx, T * B * I, "x")
    return 0


def rnn_forward(floating[::1] hs, const floating[::1] x, const int64_t[::1] ids,
                const floating[::1] W_xh, const floating[::1] W_hh, const floating[::1] b_h,
                T, B, I, H, int nonlinearity, bint use_ids,
                const int64_t[::1] lengths=None, bint reverse=False):
    """hs (T+1, B, H): h0 in (hs[0], or hs[T] in reverse), H_t out. Input x (T, B, I) or
    ids (T, B); lengths (B,) or empty."""
    cdef elman_rnn_shape r
    _rnn_shape(&r, T, B, I, H, nonlinearity, lengths, reverse)
    _need(hs.shape[0], (T + 1) * B * H, "hs")
    _rnn_inputs(x.shape[0], ids.shape[0], use_ids, T, B, I)
    _need(W_xh.shape[0], I * H, "W_xh")
    _need(W_hh.shape[0], H * H, "W_hh")
    _need(b_h.shape[0], H, "b_h")
    cdef const elman_int *idp = _ip(ids) if use_ids else NULL
    cdef int s
    with nogil:
        if floating is float:
            s = elman_rnn_forward_f32(_p(hs), NULL if use_ids else _cp(x), idp, _cp(W_xh),
                                      _cp(W_hh), _cp(b_h), &r)
        else:
            s = elman_rnn_forward_f64(_p(hs), NULL if use_ids else _cp(x), idp, _cp(W_xh),
                                      _cp(W_hh), _cp(b_h), &r)
    _check(s, "rnn_forward")


def rnn_backward(floating[::1] dW_xh, floating[::1] dW_hh, floating[::1] db_h,
                 floating[::1] dh0, floating[::1] dx, floating[::1] dA,
                 const floating[::1] dH, const floating[::1] dh_T, const floating[::1] hs,
                 const floating[::1] x, const int64_t[::1] ids,
                 const floating[::1] W_xh, const floating[::1] W_hh,
                 T, B, I, H, int nonlinearity, bint use_ids,
                 const int64_t[::1] lengths=None, bint reverse=False):
    """Overwrites dW_xh (I,H), dW_hh (H,H), db_h (H,), dh0 (B,H; optional), dx (T,B,I;
    optional, dense only) and dA (T,B,H; may be dH itself)."""
    cdef elman_rnn_shape r
    _rnn_shape(&r, T, B, I, H, nonlinearity, lengths, reverse)
    _rnn_inputs(x.shape[0], ids.shape[0], use_ids, T, B, I)
    _need(dW_xh.shape[0], I * H, "dW_xh")
    _need(dW_hh.shape[0], H * H, "dW_hh")
    _need(db_h.shape[0], H, "db_h")
    _need(dA.shape[0], T * B * H, "dA")
    _need(dH.shape[0], T * B * H, "dH")
    _need(hs.shape[0], (T + 1) * B * H, "hs")
    _need(W_xh.shape[0], I * H, "W_xh")
    _need(W_hh.shape[0], H * H, "W_hh")
    cdef bint has_dh0 = _optional(dh0.shape[0], B * H, "dh0")
    cdef bint has_dh_T = _optional(dh_T.shape[0], B * H, "dh_T")
    cdef bint has_dx = _optional(dx.shape[0], T * B * I, "dx")
    if has_dx and use_ids:
        raise ValueError("dx: token-id inputs have no input gradient")
    cdef const elman_int *idp = _ip(ids) if use_ids else NULL
    cdef int s
    with nogil:
        if floating is float:
            s = elman_rnn_backward_f32(_p(dW_xh), _p(dW_hh), _p(db_h),
                                       _p(dh0) if has_dh0 else NULL, _p(dx) if has_dx else NULL,
                                       _p(dA), _cp(dH), _cp(dh_T) if has_dh_T else NULL, _cp(hs),
                                       NULL if use_ids else _cp(x), idp, _cp(W_xh), _cp(W_hh), &r)
        else:
            s = elman_rnn_backward_f64(_p(dW_xh), _p(dW_hh), _p(db_h),
                                       _p(dh0) if has_dh0 else NULL, _p(dx) if has_dx else NULL,
                                       _p(dA), _cp(dH), _cp(dh_T) if has_dh_T else NULL, _cp(hs),
                                       NULL if use_ids else _cp(x), idp, _cp(W_xh), _cp(W_hh), &r)
    _check(s, "rnn_backward")


cdef elman_int _stack_shape(elman_stack_shape *r, T, B, I, H, L, D, int nonlinearity,
                            const int64_t[::1] lengths, Py_ssize_t n_wt=-1,
                            Py_ssize_t n_hs=-1, Py_ssize_t n_ys=-1) except -1:
    """The shape struct, checked; with the sizes of the forward's wt, hs and ys buffers,
    those checked too. Returns the backward's scratch size."""
    r.T = _size(T, "T"); r.B = _size(B, "B"); r.I = _size(I, "I"); r.H = _size(H, "H")
    r.L = _size(L, "L"); r.D = _size(D, "D")
    r.nonlinearity = nonlinearity
    r.lengths = NULL
    if lengths is not None and lengths.shape[0] > 0:
        _need(lengths.shape[0], B, "lengths")
        r.lengths = _ip(lengths)
    cdef elman_int nw, nh, ny, nk
    _check(elman_stack_sizes(r, &nw, &nh, &ny, &nk), "stack")
    if n_wt >= 0:
        _need(n_wt, nw, "wt")
        _need(n_hs, nh, "hs")
        _need(n_ys, ny, "ys")
    return nk


def stack_sizes(T, B, I, H, L, D):
    """(weights, states, inputs, work): the element counts of elman_stack_forward's wt, hs and
    ys buffers and of elman_stack_backward's scratch."""
    cdef elman_stack_shape r
    _stack_shape(&r, T, B, I, H, L, D, ELMAN_TANH, None)
    cdef elman_int w, h, y, k
    elman_stack_sizes(&r, &w, &h, &y, &k)   # checked by _stack_shape
    return w, h, y, k


cdef int _stack_pointers(list arrays, Py_ssize_t n, elman_stack_shape *r, bint square,
                         str name, const floating **out) except -1:
    """out[k] = the data of arrays[k], each checked to hold H*I_k (or H*H) elements."""
    if len(arrays) != n:
        raise ValueError(f"{name}: {len(arrays)} arrays, expected {n}")
    cdef const floating[::1] v
    cdef Py_ssize_t k
    for k in range(n):
        v = arrays[k]
        want = r.H * r.H if square else r.H * (r.I if k < r.D else r.D * r.H)
        _need(v.shape[0], want, f"{name}[{k}]")
        out[k] = _cp(v)
    return 0


cdef int _stack_vectors(list arrays, Py_ssize_t n, elman_int H, str name,
                        const floating **out) except -1:
    if len(arrays) != n:
        raise ValueError(f"{name}: {len(arrays)} arrays, expected {n}")
    cdef const floating[::1] v
    cdef Py_ssize_t k
    for k in range(n):
        v = arrays[k]
        _need(v.shape[0], H, f"{name}[{k}]")
        out[k] = _cp(v)
    return 0


def stack_forward(floating[::1] wt, floating[::1] hs, floating[::1] ys, floating[::1] out,
                  floating[::1] h_n, const floating[::1] x, const floating[::1] h0,
                  list w_ih, list w_hh, list b_ih, list b_hh, const floating[::1] masks,
                  T, B, I, H, L, D, int nonlinearity, const int64_t[::1] lengths=None):
    """A torch.nn.RNN stack (elman.h, elman_stack_forward): w_ih, w_hh, b_ih and b_hh are
    lists of L*D flat arrays in torch's layout (biases: two empty lists for none); ys empty
    when L = 1, out empty when D = 1, masks empty for no dropout."""
    cdef elman_stack_shape r
    _stack_shape(&r, T, B, I, H, L, D, nonlinearity, lengths, wt.shape[0], hs.shape[0],
                 ys.shape[0])
    _need(out.shape[0], r.T * r.B * r.D * r.H if r.D == 2 else 0, "out")
    _need(h_n.shape[0], r.L * r.D * r.B * r.H, "h_n")
    _need(x.shape[0], r.T * r.B * r.I, "x")
    _need(h0.shape[0], r.L * r.D * r.B * r.H, "h0")
    cdef bint has_masks = _optional(masks.shape[0], (r.L - 1) * r.T * r.B * r.D * r.H, "masks")
    cdef bint has_bias = len(b_ih) > 0 or len(b_hh) > 0
    cdef Py_ssize_t n = r.L * r.D
    cdef const floating **p = <const floating **>PyMem_Malloc(4 * n * sizeof(floating *))
    if p == NULL:
        raise MemoryError()
    cdef int s
    try:
        _stack_pointers(w_ih, n, &r, False, "w_ih", p)
        _stack_pointers(w_hh, n, &r, True, "w_hh", p + n)
        if has_bias:
            _stack_vectors(b_ih, n, r.H, "b_ih", p + 2 * n)
            _stack_vectors(b_hh, n, r.H, "b_hh", p + 3 * n)
        with nogil:
            if floating is float:
                s = elman_stack_forward_f32(_p(wt), _p(hs), _p(ys), _p(out), _p(h_n), _cp(x),
                                            _cp(h0), p, p + n, p + 2 * n if has_bias else NULL,
                                            p + 3 * n if has_bias else NULL,
                                            _cp(masks) if has_masks else NULL, &r)
            else:
                s = elman_stack_forward_f64(_p(wt), _p(hs), _p(ys), _p(out), _p(h_n), _cp(x),
                                            _cp(h0), p, p + n, p + 2 * n if has_bias else NULL,
                                            p + 3 * n if has_bias else NULL,
                                            _cp(masks) if has_masks else NULL, &r)
    finally:
        PyMem_Free(p)
    _check(s, "stack_forward")


def stack_backward(list dw_ih, list dw_hh, floating[::1] db, floating[::1] dh0,
                   floating[::1] dx, floating[::1] work, const floating[::1] d_out,
                   const floating[::1] dh_n, const floating[::1] wt, const floating[::1] hs,
                   const floating[::1] ys, const floating[::1] x, const floating[::1] masks,
                   T, B, I, H, L, D, int nonlinearity, const int64_t[::1] lengths=None):
    """The stack's gradients (elman.h, elman_stack_backward) into the L*D flat arrays of
    dw_ih and dw_hh (torch's layout), db (L*D, H), dh0 and dx (empty: not wanted); d_out,
    dh_n and masks empty when absent."""
    cdef elman_stack_shape r
    cdef elman_int nk = _stack_shape(&r, T, B, I, H, L, D, nonlinearity, lengths,
                                     wt.shape[0], hs.shape[0], ys.shape[0])
    _need(work.shape[0], nk, "work")
    _need(db.shape[0], r.L * r.D * r.H, "db")
    _need(dh0.shape[0], r.L * r.D * r.B * r.H, "dh0")
    _need(x.shape[0], r.T * r.B * r.I, "x")
    cdef bint has_dx = _optional(dx.shape[0], r.T * r.B * r.I, "dx")
    cdef bint has_d_out = _optional(d_out.shape[0], r.T * r.B * r.D * r.H, "d_out")
    cdef bint has_dh_n = _optional(dh_n.shape[0], r.L * r.D * r.B * r.H, "dh_n")
    cdef bint has_masks = _optional(masks.shape[0], (r.L - 1) * r.T * r.B * r.D * r.H, "masks")
    cdef Py_ssize_t n = r.L * r.D
    cdef floating **p = <floating **>PyMem_Malloc(2 * n * sizeof(floating *))
    if p == NULL:
        raise MemoryError()
    cdef int s
    try:
        _stack_pointers(dw_ih, n, &r, False, "dw_ih", <const floating **>p)
        _stack_pointers(dw_hh, n, &r, True, "dw_hh", <const floating **>(p + n))
        for a in dw_ih + dw_hh:   # written: each must be a writable buffer
            _writable(a)
        with nogil:
            if floating is float:
                s = elman_stack_backward_f32(p, p + n, _p(db), _p(dh0),
                                             _p(dx) if has_dx else NULL, _p(work),
                                             _cp(d_out) if has_d_out else NULL,
                                             _cp(dh_n) if has_dh_n else NULL, _cp(wt),
                                             _cp(hs), _cp(ys), _cp(x),
                                             _cp(masks) if has_masks else NULL, &r)
            else:
                s = elman_stack_backward_f64(p, p + n, _p(db), _p(dh0),
                                             _p(dx) if has_dx else NULL, _p(work),
                                             _cp(d_out) if has_d_out else NULL,
                                             _cp(dh_n) if has_dh_n else NULL, _cp(wt),
                                             _cp(hs), _cp(ys), _cp(x),
                                             _cp(masks) if has_masks else NULL, &r)
    finally:
        PyMem_Free(p)
    _check(s, "stack_backward")


cdef int _writable(a) except -1:
    cdef Py_buffer view
    if PyObject_GetBuffer(a, &view, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS) != 0:
        return -1
    PyBuffer_Release(&view)
    return 0


def rnn_rforward(floating[::1] Rhs, const floating[::1] Rx, const floating[::1] hs,
                 const floating[::1] x, const int64_t[::1] ids, const floating[::1] W_xh,
                 const floating[::1] W_hh, const floating[::1] V_xh, const floating[::1] V_hh,
                 const floating[::1] v_b, T, B, I, H, int nonlinearity, bint use_ids,
                 const int64_t[::1] lengths=None, bint reverse=False):
    """Rhs (T+1, B, H) out: the R-operator's forward along V = (V_xh, V_hh, v_b), from hs
    (T+1, B, H) of rnn_forward; Rx (T, B, I; optional, dense only) the input's derivative."""
    cdef elman_rnn_shape r
    _rnn_shape(&r, T, B, I, H, nonlinearity, lengths, reverse)
    _rnn_inputs(x.shape[0], ids.shape[0], use_ids, T, B, I)
    _need(Rhs.shape[0], (T + 1) * B * H, "Rhs")
    _need(hs.shape[0], (T + 1) * B * H, "hs")
    _need(W_xh.shape[0], I * H, "W_xh")
    _need(W_hh.shape[0], H * H, "W_hh")
    _need(V_xh.shape[0], I * H, "V_xh")
    _need(V_hh.shape[0], H * H, "V_hh")
    _need(v_b.shape[0], H, "v_b")
    cdef bint has_Rx = _optional(Rx.shape[0], T * B * I, "Rx")
    if has_Rx and use_ids:
        raise ValueError("Rx: token-id inputs have no derivative")
    cdef const elman_int *idp = _ip(ids) if use_ids else NULL
    cdef const floating *xp = NULL if use_ids else _cp(x)
    cdef const floating *Rxp = _cp(Rx) if has_Rx else NULL
    cdef int s
    with nogil:
        if floating is float:
            s = elman_rnn_rforward_f32(_p(Rhs), Rxp, _cp(hs), xp, idp, _cp(W_xh), _cp(W_hh),
                                       _cp(V_xh), _cp(V_hh), _cp(v_b), &r)
        else:
            s = elman_rnn_rforward_f64(_p(Rhs), Rxp, _cp(hs), xp, idp, _cp(W_xh), _cp(W_hh),
                                       _cp(V_xh), _cp(V_hh), _cp(v_b), &r)
    _check(s, "rnn_rforward")


# ---- projection and losses ----------------------------------------------------------------

def linear_forward(floating[::1] Y, const floating[::1] X, const floating[::1] W,
                   const floating[::1] b, N, K, O):
    """Y (N, O) = X (N, K) @ W (K, O) + b (O,; optional)."""
    cdef elman_int n_ = _size(N, "N"), k_ = _size(K, "K"), o_ = _size(O, "O")
    _need(Y.shape[0], N * O, "Y")
    _need(X.shape[0], N * K, "X")
    _need(W.shape[0], K * O, "W")
    cdef bint has_b = _optional(b.shape[0], O, "b")
    cdef int s
    with nogil:
        if floating is float:
            s = elman_linear_forward_f32(_p(Y), _cp(X), _cp(W), _cp(b) if has_b else NULL, n_, k_, o_)
        else:
            s = elman_linear_forward_f64(_p(Y), _cp(X), _cp(W), _cp(b) if has_b else NULL, n_, k_, o_)
    _check(s, "linear_forward")


def linear_backward(floating[::1] dW, floating[::1] db, floating[::1] dX,
                    const floating[::1] dY, const floating[::1] X, const floating[::1] W,
                    N, K, O):
    """Overwrites dW (K, O) = X^T dY, db (O,; optional), dX (N, K; optional) = dY W^T."""
    cdef elman_int n_ = _size(N, "N"), k_ = _size(K, "K"), o_ = _size(O, "O")
    _need(dW.shape[0], K * O, "dW")
    _need(dY.shape[0], N * O, "dY")
    _need(X.shape[0], N * K, "X")
    _need(W.shape[0], K * O, "W")
    cdef bint has_db = _optional(db.shape[0], O, "db")
    cdef bint has_dX = _optional(dX.shape[0], N * K, "dX")
    cdef int s
    with nogil:
        if floating is float:
            s = elman_linear_backward_f32(_p(dW), _p(db) if has_db else NULL,
                                          _p(dX) if has_dX else NULL, _cp(dY), _cp(X), _cp(W),
                                          n_, k_, o_)
        else:
            s = elman_linear_backward_f64(_p(dW), _p(db) if has_db else NULL,
                                          _p(dX) if has_dX else NULL, _cp(dY), _cp(X), _cp(W),
                                          n_, k_, o_)
    _check(s, "linear_backward")


def softmax_xent(floating[::1] dlogits, const floating[::1] logits, const int64_t[::1] targets,
                 N, O, double scale):
    """Returns scale * sum of row losses; writes dlogits (N, O; optional; may be logits)."""
    cdef elman_int n_ = _size(N, "N"), o_ = _size(O, "O")
    _need(logits.shape[0], N * O, "logits")
    _need(targets.shape[0], N, "targets")
    cdef bint has_d = _optional(dlogits.shape[0], N * O, "dlogits")
    cdef double loss = 0
    cdef int s
    with nogil:
        if floating is float:
            s = elman_softmax_xent_f32(&loss, _p(dlogits) if has_d else NULL, _cp(logits),
                                       _ip(targets), n_, o_, scale)
        else:
            s = elman_softmax_xent_f64(&loss, _p(dlogits) if has_d else NULL, _cp(logits),
                                       _ip(targets), n_, o_, scale)
    if s == ELMAN_ERR_NONFINITE:
        return loss
    _check(s, "softmax_xent")
    return loss


def mse(floating[::1] dpred, const floating[::1] pred, const floating[::1] target,
        double scale):
    """Returns scale * sum (pred - target)^2; writes dpred (optional; may be pred)."""
    cdef Py_ssize_t n = pred.shape[0]
    _need(target.shape[0], n, "target")
    cdef bint has_d = _optional(dpred.shape[0], n, "dpred")
    cdef double loss = 0
    cdef int s
    with nogil:
        if floating is float:
            s = elman_mse_f32(&loss, _p(dpred) if has_d else NULL, _cp(pred), _cp(target), n, scale)
        else:
            s = elman_mse_f64(&loss, _p(dpred) if has_d else NULL, _cp(pred), _cp(target), n, scale)
    if s == ELMAN_ERR_NONFINITE:
        return loss
    _check(s, "mse")
    return loss


# ---- whole model --------------------------------------------------------------------------

cdef int _model_shape(elman_model_shape *m, T, B, I, H, O, int nonlinearity, int loss,
                      int reduction, bint last_step_only, tuple arch=(1, False, 0.0, 0),
                      const int64_t[::1] lengths=None) except -1:
    """The shape struct; arch = (num_layers, bidirectional, dropout, dropout_seed[,
    dropout_batch, dropout_offset[, compute]]), compute 0 (float32) or 1 (bfloat16)."""
    _rnn_shape(&m.rnn, T, B, I, H, nonlinearity, lengths)
    m.O = _size(O, "O")
    m.loss = loss
    m.reduction = reduction
    m.last_step_only = last_step_only
    m.num_layers = _size(arch[0], "num_layers")
    m.bidirectional = 1 if arch[1] else 0
    m.dropout = arch[2]
    m.dropout_seed = arch[3]
    m.dropout_batch = _size(arch[4], "dropout_batch") if len(arch) > 4 else 0
    m.dropout_offset = _size(arch[5], "dropout_offset") if len(arch) > 5 else 0
    m.compute = arch[6] if len(arch) > 6 else 0
    if elman_model_num_params(m) < 0:
        raise OverflowError("the model's parameter count overflows 64 bits")
    return 0


cdef Py_ssize_t _slabs(const elman_model_shape *m):
    return (m.num_layers if m.num_layers > 0 else 1) * (2 if m.bidirectional else 1)


cdef void *_work(unsigned char[::1] work, const elman_model_shape *m, int real_bytes,
                 str where) except? NULL:
    """The workspace pointer, after checking its size (NULL when none is needed)."""
    cdef elman_int want = elman_model_work_bytes(m, real_bytes)
    if want < 0:
        raise ValueError(f"{where}: invalid model shape (dropout, layers or sizes)")
    if work.shape[0] < want:  # a workspace may be larger than this shape needs
        raise ValueError(f"work: buffer holds {work.shape[0]} bytes, this shape needs {want}")
    return <void *>&work[0] if want > 0 else NULL


def model_work_bytes(T, B, I, H, O, int loss, bint last_step_only, tuple arch,
                     bint has_lengths, int real_bytes):
    """Bytes of workspace the model kernels need for this shape."""
    cdef elman_model_shape m
    _model_shape(&m, T, B, I, H, O, 0, loss, 0, last_step_only, arch)
    cdef elman_int one = 1
    if has_lengths:
        m.rnn.lengths = &one  # only whether it is NULL matters for the size
    cdef elman_int n = elman_model_work_bytes(&m, real_bytes)
    if n < 0:
        raise ValueError("model_work_bytes: invalid model shape (dropout, layers or sizes)")
    return n


def model_sizes(T, B, I, H, O, int loss, bint last_step_only, tuple arch, bint has_lengths,
                int real_bytes):
    """Every buffer size of a model call (elman_model_buffer_sizes): a dict of params, hs, Y,
    dA and states (elements) and work_bytes."""
    cdef elman_model_shape m
    _model_shape(&m, T, B, I, H, O, 0, loss, 0, last_step_only, arch)
    cdef elman_int one = 1
    if has_lengths:
        m.rnn.lengths = &one  # only whether it is NULL matters for the sizes
    cdef elman_model_sizes z
    _check(elman_model_buffer_sizes(&z, &m, real_bytes), "model_sizes")
    return dict(params=z.params, hs=z.hs, Y=z.Y, dA=z.dA, states=z.states,
                work_bytes=z.work_bytes)


def model_param_offset(I, H, O, tuple arch, l, d):
    """Offset of W_xh of layer l, direction d in the flat layout (of W_hy for l = L)."""
    cdef elman_model_shape m
    _model_shape(&m, 0, 0, I, H, O, 0, 0, 0, False, arch)
    cdef elman_int off = elman_model_param_offset(&m, _size(l, "l"), _size(d, "d"))
    if off < 0:
        raise ValueError(f"model_param_offset: no layer {l}, direction {d} in this stack")
    return off


def model_num_params(I, H, O, tuple arch):
    cdef elman_model_shape m
    _model_shape(&m, 0, 0, I, H, O, 0, 0, 0, False, arch)
    return elman_model_num_params(&m)


cdef inline void _step_pointers(const floating[::1] x, const int64_t[::1] ids,
                                const int64_t[::1] y_ids, const floating[::1] y_values,
                                bint use_ids, int loss, const floating **xp,
                                const elman_int **idp, const elman_int **yidp,
                                const floating **yvp) noexcept:
    """The input (dense x or token ids) and targets (class ids or values) a training step
    reads; the buffers not used stay NULL. Lengths were checked by _step_buffers."""
    if use_ids:
        idp[0] = _ip(ids)
    else:
        xp[0] = _cp(x)
    if loss == ELMAN_LOSS_XENT:
        yidp[0] = _ip(y_ids)
    else:
        yvp[0] = _cp(y_values)


cdef int _step_buffers(str where, const elman_model_shape *m, Py_ssize_t n_params_buf,
                       Py_ssize_t n_grads, Py_ssize_t n_hs, Py_ssize_t n_Y, Py_ssize_t n_dA,
                       Py_ssize_t n_x, Py_ssize_t n_ids, Py_ssize_t n_y_ids,
                       Py_ssize_t n_y_values, bint use_ids) except -1:
    """The buffer lengths of a training step: every one exactly what C says its sizes are."""
    T, B, I, H, O = m.rnn.T, m.rnn.B, m.rnn.I, m.rnn.H, m.O
    if T < 1 or B < 1:
        raise ValueError(f"{where} needs T >= 1 and B >= 1, got T={T}, B={B}")
    cdef elman_model_sizes z
    # element counts do not depend on the float's size (only work_bytes does, which _work
    # checks against the buffer with sizeof(floating))
    _check(elman_model_buffer_sizes(&z, m, 4), where)
    N = B if m.last_step_only else T * B  # the targets' rows
    _need(n_params_buf, z.params, "params")
    _need(n_grads, z.params, "grads")
    _need(n_hs, z.hs, "hs")
    _need(n_Y, z.Y, "Y")
    _need(n_dA, z.dA, "dA")
    _rnn_inputs(n_x, n_ids, use_ids, T, B, I)
    if m.loss == ELMAN_LOSS_XENT:
        _need(n_y_ids, N, "y")
    else:
        _need(n_y_values, N * O, "y")
    return 0


def model_forward(floating[::1] Y, floating[::1] hs, unsigned char[::1] work,
                  const floating[::1] x, const int64_t[::1] ids, const floating[::1] params,
                  T, B, I, H, O, int nonlinearity, bint use_ids, tuple arch=(1, False, 0.0, 0),
                  const int64_t[::1] lengths=None):
    """Y (T, B, O) outputs; hs (L*D, T+1, B, H) with the initial states in place."""
    cdef elman_model_shape m
    _model_shape(&m, T, B, I, H, O, nonlinearity, 0, 0, False, arch, lengths)
    cdef elman_model_sizes z
    _check(elman_model_buffer_sizes(&z, &m, sizeof(floating)), "model_forward")
    _need(Y.shape[0], z.Y, "Y")
    _need(hs.shape[0], z.hs, "hs")
    _rnn_inputs(x.shape[0], ids.shape[0], use_ids, T, B, I)
    _need(params.shape[0], z.params, "params")
    cdef void *wp = _work(work, &m, sizeof(floating), "model_forward")
    cdef const elman_int *idp = _ip(ids) if use_ids else NULL
    cdef int s
    with nogil:
        if floating is float:
            s = elman_model_forward_f32(_p(Y), _p(hs), wp, NULL if use_ids else _cp(x), idp,
                                        _cp(params), &m)
        else:
            s = elman_model_forward_f64(_p(Y), _p(hs), wp, NULL if use_ids else _cp(x), idp,
                                        _cp(params), &m)
    _check(s, "model_forward")


def model_forward_backward(floating[::1] grads, floating[::1] dh0, floating[::1] hs,
                           floating[::1] Y, floating[::1] dA, unsigned char[::1] work,
                           const floating[::1] x, const int64_t[::1] ids,
                           const int64_t[::1] y_ids, const floating[::1] y_values,
                           const floating[::1] dh_T, const floating[::1] params, T, B, I, H,
                           O, int nonlinearity, bint use_ids, int loss, int reduction,
                           bint last_step_only, tuple arch=(1, False, 0.0, 0),
                           const int64_t[::1] lengths=None):
    """Forward, loss, BPTT. Returns the loss; overwrites grads and dh0 (optional,
    (L*D, B, H)); hs (L*D, T+1, B, H) holds the initial states on entry and the final ones
    on return; dh_T (optional) is an upstream gradient on the final states."""
    cdef elman_model_shape m
    _model_shape(&m, T, B, I, H, O, nonlinearity, loss, reduction, last_step_only, arch,
                 lengths)
    _step_buffers("model_forward_backward", &m, params.shape[0], grads.shape[0], hs.shape[0],
                  Y.shape[0], dA.shape[0], x.shape[0], ids.shape[0], y_ids.shape[0],
                  y_values.shape[0], use_ids)
    cdef void *wp = _work(work, &m, sizeof(floating), "model_forward_backward")
    # Pointers are taken here, with plain ifs: no memoryview temporaries in the nogil block.
    cdef Py_ssize_t nstate = _slabs(&m) * B * H
    cdef floating *dh0p = NULL
    if _optional(dh0.shape[0], nstate, "dh0"):
        dh0p = _p(dh0)
    cdef const floating *dhTp = NULL
    if _optional(dh_T.shape[0], nstate, "dh_T"):
        dhTp = _cp(dh_T)
    cdef const floating *xp = NULL, *yvp = NULL   # the input and targets in use (the
    cdef const elman_int *idp = NULL, *yidp = NULL  # others NULL), from _step_pointers
    _step_pointers(x, ids, y_ids, y_values, use_ids, loss, &xp, &idp, &yidp, &yvp)
    cdef floating *gp = _p(grads), *hsp = _p(hs), *Yp = _p(Y), *dAp = _p(dA)
    cdef const floating *pp = _cp(params)
    cdef double out = 0
    cdef int s
    with nogil:
        if floating is float:
            s = elman_model_forward_backward_f32(&out, gp, dh0p, hsp, Yp, dAp, wp, xp, idp,
                                                 yidp, yvp, dhTp, pp, &m)
        else:
            s = elman_model_forward_backward_f64(&out, gp, dh0p, hsp, Yp, dAp, wp, xp, idp,
                                                 yidp, yvp, dhTp, pp, &m)
    if s == ELMAN_ERR_NONFINITE:
        raise FloatingPointError(f"the loss is not finite ({out}); gradients were not computed")
    _check(s, "model_forward_backward")
    return out


cdef int _gn_shape(elman_model_shape *m, elman_model_sizes *z, str where, T, B, I, H, O,
                   int nonlinearity, int loss, int reduction, bint last_step_only, tuple arch,
                   const int64_t[::1] lengths) except -1:
    """The shape struct and buffer sizes of a Gauss-Newton call (T, B >= 1). Element counts
    do not depend on the float's size; _work checks the byte workspace with it."""
    _model_shape(m, T, B, I, H, O, nonlinearity, loss, reduction, last_step_only, arch, lengths)
    if T < 1 or B < 1:
        raise ValueError(f"{where} needs T >= 1 and B >= 1, got T={T}, B={B}")
    _check(elman_model_buffer_sizes(z, m, 4), where)
    return 0


def model_gauss_newton_prepare(floating[::1] P, floating[::1] hs, unsigned char[::1] work,
                               const floating[::1] x, const int64_t[::1] ids,
                               const floating[::1] params, T, B, I, H, O, int nonlinearity,
                               bint use_ids, int loss, bint last_step_only,
                               tuple arch=(1, False, 0.0, 0),
                               const int64_t[::1] lengths=None):
    """The forward of Gauss-Newton products: hs (L*D, T+1, B, H) (h0 in place) and work for
    the products; P (N, O) the softmax (cross-entropy) or predictions (MSE) of the scored
    rows."""
    cdef elman_model_shape m
    cdef elman_model_sizes z
    _gn_shape(&m, &z, "model_gauss_newton_prepare", T, B, I, H, O, nonlinearity, loss, 0,
              last_step_only, arch, lengths)
    _need(P.shape[0], z.Y, "P")
    _need(hs.shape[0], z.hs, "hs")
    _need(params.shape[0], z.params, "params")
    _rnn_inputs(x.shape[0], ids.shape[0], use_ids, T, B, I)
    cdef void *wp = _work(work, &m, sizeof(floating), "model_gauss_newton_prepare")
    cdef const elman_int *idp = _ip(ids) if use_ids else NULL
    cdef const floating *xp = NULL if use_ids else _cp(x)
    cdef int s
    with nogil:
        if floating is float:
            s = elman_model_gauss_newton_prepare_f32(_p(P), _p(hs), wp, xp, idp, _cp(params),
                                                     &m)
        else:
            s = elman_model_gauss_newton_prepare_f64(_p(P), _p(hs), wp, xp, idp, _cp(params),
                                                     &m)
    if s == ELMAN_ERR_NONFINITE:
        raise FloatingPointError("model_gauss_newton_prepare: the outputs are not finite")
    _check(s, "model_gauss_newton_prepare")


def model_gauss_newton_product(floating[::1] Gv, floating[::1] Rhs, floating[::1] RY,
                               floating[::1] dA, unsigned char[::1] Rwork, floating[::1] hs,
                               unsigned char[::1] work, const floating[::1] P,
                               const floating[::1] v, const floating[::1] x,
                               const int64_t[::1] ids, const floating[::1] params, T, B, I, H,
                               O, int nonlinearity, bint use_ids, int loss, int reduction,
                               bint last_step_only, double damping, double structural_damping,
                               tuple arch=(1, False, 0.0, 0),
                               const int64_t[::1] lengths=None):
    """Gv = (G + damping I + damping * structural_damping * G_S) v, from the prepare's hs,
    work and P (read); Rhs (as hs), RY (as P), dA (L*D, T, B, H) and Rwork are this call's
    workspace."""
    cdef elman_model_shape m
    cdef elman_model_sizes z
    _gn_shape(&m, &z, "model_gauss_newton_product", T, B, I, H, O, nonlinearity, loss,
              reduction, last_step_only, arch, lengths)
    _need(Gv.shape[0], z.params, "Gv")
    _need(v.shape[0], z.params, "v")
    _need(params.shape[0], z.params, "params")
    _need(Rhs.shape[0], z.hs, "Rhs")
    _need(hs.shape[0], z.hs, "hs")
    _need(RY.shape[0], z.Y, "RY")
    _need(P.shape[0], z.Y, "P")
    _need(dA.shape[0], z.dA, "dA")
    _rnn_inputs(x.shape[0], ids.shape[0], use_ids, T, B, I)
    if not (0 <= damping < float("inf")) or not (0 <= structural_damping < float("inf")):
        raise ValueError(f"model_gauss_newton_product: damping and structural_damping must "
                         f"be finite and >= 0, got {damping} and {structural_damping}")
    if z.params > 0 and &Gv[0] == &v[0]:
        raise ValueError("model_gauss_newton_product: Gv and v are one buffer")
    cdef void *wp = _work(work, &m, sizeof(floating), "model_gauss_newton_product")
    cdef void *Rwp = _work(Rwork, &m, sizeof(floating), "model_gauss_newton_product")
    cdef const elman_int *idp = _ip(ids) if use_ids else NULL
    cdef const floating *xp = NULL if use_ids else _cp(x)
    cdef floating *Gvp = _p(Gv), *Rhsp = _p(Rhs), *RYp = _p(RY), *dAp = _p(dA), *hsp = _p(hs)
    cdef const floating *Pp = _cp(P), *vp = _cp(v), *pp = _cp(params)
    cdef int s
    with nogil:
        if floating is float:
            s = elman_model_gauss_newton_product_f32(Gvp, Rhsp, RYp, dAp, Rwp, hsp, wp, Pp, vp,
                                                     xp, idp, pp, &m, damping,
                                                     structural_damping)
        else:
            s = elman_model_gauss_newton_product_f64(Gvp, Rhsp, RYp, dAp, Rwp, hsp, wp, Pp, vp,
                                                     xp, idp, pp, &m, damping,
                                                     structural_damping)
    _check(s, "model_gauss_newton_product")


def model_sample(int64_t[::1] out, floating[::1] h, floating[::1] work, uint64_t[::1] rng,
                 const int64_t[::1] first, double temperature, const floating[::1] params, I,
                 H, O, int nonlinearity, num_layers=1):
    """Generate B = first.shape[0] streams of out.shape[0] // B ids from the ids `first`;
    out (B * n,) written, h (L * B * H,) in/out, work (B * (H + O),), rng (B,) in/out."""
    cdef elman_model_shape m
    _model_shape(&m, 0, 0, I, H, O, nonlinearity, 0, 0, False, (num_layers, False, 0.0, 0))
    _need(params.shape[0], elman_model_num_params(&m), "params")
    cdef Py_ssize_t B = first.shape[0]
    if B < 1:
        raise ValueError("model_sample: at least one stream is needed")
    if out.shape[0] % B:
        raise ValueError(f"model_sample: out has {out.shape[0]} elements, not a multiple "
                         f"of the {B} streams")
    cdef Py_ssize_t n = out.shape[0] // B
    _need(h.shape[0], m.num_layers * B * H, "h")
    _need(work.shape[0], B * (H + O), "work")
    _need(rng.shape[0], B, "rng")
    cdef elman_int *op = <elman_int *>&out[0] if n > 0 else NULL
    cdef const elman_int *fp = _ip(first)
    cdef int s
    with nogil:
        if floating is float:
            s = elman_model_sample_f32(op, _p(h), _p(work), &rng[0], n, B, fp, temperature,
                                       _cp(params), &m)
        else:
            s = elman_model_sample_f64(op, _p(h), _p(work), &rng[0], n, B, fp, temperature,
                                       _cp(params), &m)
    if s == ELMAN_ERR_NONFINITE:
        raise FloatingPointError("model_sample: the output distribution is not finite "
                                 "(NaN or infinity in the parameters or the state)")
    _check(s, "model_sample")


cdef void *_f32_at(float[::1] a) noexcept:
    return <void *>&a[0] if a.shape[0] > 0 else NULL


cdef void *_f64_at(double[::1] a) noexcept:
    return <void *>&a[0] if a.shape[0] > 0 else NULL


@cython.auto_pickle(False)   # it holds raw pointers: not for pickling
cdef class TrainStepPlan:
    """model_train_step with its model shape, buffers and loss options fixed and checked
    once (elman.TrainStep's prepared path). run() takes the batch (x, y as C-contiguous
    arrays of the sizes the shape fixes), the states to start from and to write the final
    ones to, the optimizer's settings and the dropout seed: a call parses a few numbers and
    acquires four buffers, where model_train_step's parses thirty-five arguments."""
    cdef elman_model_shape m
    cdef int kind
    cdef bint f64
    cdef Py_ssize_t real, n_ids, n_dense, n_y_ids, n_y_values, slab, bh, n_h
    cdef void *pp
    cdef void *gp
    cdef void *sp
    cdef void *hsp
    cdef void *Yp
    cdef void *dAp
    cdef void *wp
    cdef object keep

    def __init__(self, params, grads, state, hs, Y, dA, unsigned char[::1] work, T, B, I, H,
                 O, int nonlinearity, int loss, int reduction, bint last_step_only, str kind,
                 tuple arch):
        where = "TrainStepPlan"
        _model_shape(&self.m, T, B, I, H, O, nonlinearity, loss, reduction, last_step_only,
                     arch, None)
        self.f64 = params.dtype.itemsize == 8
        self.real = 8 if self.f64 else 4
        # each a 1-D contiguous array of the params' dtype, or the memoryview refuses it
        if self.f64:
            self.pp, self.gp, self.sp = _f64_at(params), _f64_at(grads), _f64_at(state)
            self.hsp, self.Yp, self.dAp = _f64_at(hs), _f64_at(Y), _f64_at(dA)
        else:
            self.pp, self.gp, self.sp = _f32_at(params), _f32_at(grads), _f32_at(state)
            self.hsp, self.Yp, self.dAp = _f32_at(hs), _f32_at(Y), _f32_at(dA)
        n_T, n_B, n_I, n_H, n_O = self.m.rnn.T, self.m.rnn.B, self.m.rnn.I, self.m.rnn.H, self.m.O
        N = n_B if last_step_only else n_T * n_B
        _step_buffers(where, &self.m, params.shape[0], grads.shape[0], hs.shape[0],
                      Y.shape[0], dA.shape[0], 0, n_T * n_B, N, N * n_O, True)
        self.wp = _work(work, &self.m, self.real, where)
        n_params = elman_model_num_params(&self.m)
        if kind == "adagrad":
            self.kind = ELMAN_OPT_ADAGRAD
            _need(state.shape[0], n_params, "state")
        elif kind == "sgd":
            self.kind = ELMAN_OPT_SGD
            if state.shape[0] != 0:
                _need(state.shape[0], n_params, "state")
        else:
            raise ValueError(f"{where}: unknown optimizer {kind!r}")
        self.n_ids, self.n_dense = n_T * n_B, n_T * n_B * n_I
        self.n_y_ids, self.n_y_values = N, N * n_O
        self.bh = n_B * n_H
        self.slab = (n_T + 1) * self.bh
        self.n_h = _slabs(&self.m) * self.bh
        self.keep = (params, grads, state, hs, Y, dA, work)

    def run(self, x, bint is_ids, y, h0, h_out, double lr, double lr_decay,
            double weight_decay, double eps, double clip_value, int64_t step, bint eps_inside,
            bint maximize, double momentum, double max_grad_norm, uint64_t dropout_seed,
            int64_t repeat=1):
        """(loss, grad norm, stage) as model_train_step; h0 (L*D, B, H) or None (zeros),
        copied into hs; the final states written to h_out (or left in hs when None).
        repeat > 1 (benchmarks: the C work without the call's) runs the step that many times
        on this batch from the same h0, the step count advancing, stopping at the first that
        is not finite."""
        cdef Py_buffer bx, by, bh0, bho
        cdef bint xent = self.m.loss == ELMAN_LOSS_XENT
        cdef Py_ssize_t want_x = self.n_ids * 8 if is_ids else self.n_dense * self.real
        cdef Py_ssize_t want_y = self.n_y_ids * 8 if xent else self.n_y_values * self.real
        cdef Py_ssize_t k, S = _slabs(&self.m), T = self.m.rnn.T
        cdef int D = 2 if self.m.bidirectional else 1
        cdef char *hs = <char *>self.hsp
        cdef size_t row = <size_t>(self.bh * self.real)
        cdef elman_optimizer o
        cdef double out = 0, norm = 0
        cdef int s = ELMAN_OK
        cdef int64_t r
        if repeat < 1:
            raise ValueError(f"TrainStepPlan.run: repeat must be >= 1, got {repeat}")
        PyObject_GetBuffer(x, &bx, PyBUF_C_CONTIGUOUS)
        try:
            PyObject_GetBuffer(y, &by, PyBUF_C_CONTIGUOUS)
            try:
                if bx.len != want_x or by.len != want_y:
                    raise ValueError(f"TrainStepPlan.run: x holds {bx.len} bytes and y "
                                     f"{by.len}; this shape needs {want_x} and {want_y}")
                if h0 is None:
                    for k in range(S):
                        memset(hs + (k * self.slab + (T * self.bh if k % D else 0))
                               * self.real, 0, row)
                else:
                    PyObject_GetBuffer(h0, &bh0, PyBUF_C_CONTIGUOUS)
                    try:
                        if bh0.len != self.n_h * self.real:
                            raise ValueError(f"TrainStepPlan.run: h0 holds {bh0.len} bytes, "
                                             f"this shape needs {self.n_h * self.real}")
                        for k in range(S):
                            memcpy(hs + (k * self.slab + (T * self.bh if k % D else 0))
                                   * self.real, <char *>bh0.buf + k * row, row)
                    finally:
                        PyBuffer_Release(&bh0)
                o.kind = <elman_optimizer_kind>self.kind
                o.adagrad.lr = lr; o.adagrad.lr_decay = lr_decay
                o.adagrad.weight_decay = weight_decay; o.adagrad.eps = eps
                o.adagrad.clip_value = clip_value; o.adagrad.grad_scale = 1
                o.adagrad.step = step; o.adagrad.eps_inside = eps_inside
                o.adagrad.maximize = maximize
                o.sgd.lr = lr; o.sgd.momentum = momentum; o.sgd.weight_decay = weight_decay
                o.sgd.clip_value = clip_value; o.sgd.grad_scale = 1; o.sgd.maximize = maximize
                o.max_grad_norm = max_grad_norm
                self.m.dropout_seed = dropout_seed
                _blas_hold()   # (nothing below raises before the release)
                with nogil:
                    for r in range(repeat):
                        if self.f64:
                            s = elman_model_train_step_f64(
                                &out, &norm, <double *>self.pp, <double *>self.gp,
                                <double *>self.sp, <double *>self.hsp, <double *>self.Yp,
                                <double *>self.dAp, self.wp,
                                NULL if is_ids else <const double *>bx.buf,
                                <const elman_int *>bx.buf if is_ids else NULL,
                                <const elman_int *>by.buf if xent else NULL,
                                NULL if xent else <const double *>by.buf, &self.m, &o)
                        else:
                            s = elman_model_train_step_f32(
                                &out, &norm, <float *>self.pp, <float *>self.gp,
                                <float *>self.sp, <float *>self.hsp, <float *>self.Yp,
                                <float *>self.dAp, self.wp,
                                NULL if is_ids else <const float *>bx.buf,
                                <const elman_int *>bx.buf if is_ids else NULL,
                                <const elman_int *>by.buf if xent else NULL,
                                NULL if xent else <const float *>by.buf, &self.m, &o)
                        if s != ELMAN_OK:
                            break
                        o.adagrad.step += 1
                _blas_release()
            finally:
                PyBuffer_Release(&by)
        finally:
            PyBuffer_Release(&bx)
        if s == ELMAN_ERR_NONFINITE:
            stage = 1 if not isfinite(out) else 2 if max_grad_norm != INF and not isfinite(norm) else 3
            return out, norm, stage
        _check(s, "model_train_step")
        if h_out is not None:
            PyObject_GetBuffer(h_out, &bho, PyBUF_C_CONTIGUOUS | PyBUF_WRITABLE)
            try:
                if bho.len != self.n_h * self.real:
                    raise ValueError(f"TrainStepPlan.run: h_out holds {bho.len} bytes, this "
                                     f"shape needs {self.n_h * self.real}")
                for k in range(S):
                    memcpy(<char *>bho.buf + k * row,
                           hs + (k * self.slab + (0 if k % D else T * self.bh)) * self.real,
                           row)
            finally:
                PyBuffer_Release(&bho)
        return out, norm, 0


def model_train_step(floating[::1] params, floating[::1] grads, floating[::1] state,
                     floating[::1] hs, floating[::1] Y, floating[::1] dA,
                     const floating[::1] x, const int64_t[::1] ids, const int64_t[::1] y_ids,
                     const floating[::1] y_values, T, B, I, H, O, int nonlinearity,
                     bint use_ids, int loss, int reduction, bint last_step_only, str kind,
                     double lr, double lr_decay, double weight_decay, double eps,
                     double clip_value, int64_t step, bint eps_inside, bint maximize,
                     double momentum, double max_grad_norm, tuple arch=(1, False, 0.0, 0),
                     const int64_t[::1] lengths=None, unsigned char[::1] work=None):
    """Forward, BPTT, clipping and the update in one call. Returns (loss, grad_norm or nan,
    stage): stage 0 when all was finite, else the first stage that was not: 1 the loss
    (nothing written), 2 the gradient norm (nothing updated), 3 the update (applied)."""
    cdef elman_model_shape m
    _model_shape(&m, T, B, I, H, O, nonlinearity, loss, reduction, last_step_only, arch,
                 lengths)
    _step_buffers("model_train_step", &m, params.shape[0], grads.shape[0], hs.shape[0],
                  Y.shape[0], dA.shape[0], x.shape[0], ids.shape[0], y_ids.shape[0],
                  y_values.shape[0], use_ids)
    cdef void *wp = NULL
    if work is not None:
        wp = _work(work, &m, sizeof(floating), "model_train_step")
    elif elman_model_work_bytes(&m, sizeof(floating)) != 0:
        raise ValueError("model_train_step: this shape needs a workspace")
    n_params = elman_model_num_params(&m)
    cdef elman_optimizer o
    if kind == "adagrad":
        o.kind = ELMAN_OPT_ADAGRAD
        _need(state.shape[0], n_params, "state")
    elif kind == "sgd":
        o.kind = ELMAN_OPT_SGD
        if momentum != 0:
            _need(state.shape[0], n_params, "state")
    else:
        raise ValueError(f"model_train_step: unknown optimizer {kind!r}")
    o.adagrad.lr = lr; o.adagrad.lr_decay = lr_decay; o.adagrad.weight_decay = weight_decay
    o.adagrad.eps = eps; o.adagrad.clip_value = clip_value; o.adagrad.grad_scale = 1
    o.adagrad.step = step; o.adagrad.eps_inside = eps_inside; o.adagrad.maximize = maximize
    o.sgd.lr = lr; o.sgd.momentum = momentum; o.sgd.weight_decay = weight_decay
    o.sgd.clip_value = clip_value; o.sgd.grad_scale = 1; o.sgd.maximize = maximize
    o.max_grad_norm = max_grad_norm
    cdef floating *sp = _p(state) if state.shape[0] > 0 else NULL
    cdef const floating *xp = NULL, *yvp = NULL   # as in model_forward_backward
    cdef const elman_int *idp = NULL, *yidp = NULL
    _step_pointers(x, ids, y_ids, y_values, use_ids, loss, &xp, &idp, &yidp, &yvp)
    cdef floating *pp = _p(params), *gp = _p(grads), *hsp = _p(hs), *Yp = _p(Y), *dAp = _p(dA)
    cdef double out = 0, norm = 0
    cdef int s
    with nogil:
        if floating is float:
            s = elman_model_train_step_f32(&out, &norm, pp, gp, sp, hsp, Yp, dAp, wp, xp, idp,
                                           yidp, yvp, &m, &o)
        else:
            s = elman_model_train_step_f64(&out, &norm, pp, gp, sp, hsp, Yp, dAp, wp, xp, idp,
                                           yidp, yvp, &m, &o)
    if s == ELMAN_ERR_NONFINITE:
        # which stage was not finite: the loss (nothing written), the gradient norm (grads
        # written, nothing updated) or the update (applied)
        stage = 1 if not isfinite(out) else 2 if max_grad_norm != INF and not isfinite(norm) else 3
        return out, norm, stage
    _check(s, "model_train_step")
    return out, norm, 0
