import contextlib
import os
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))

from hypothesis import settings  # noqa: E402

settings.register_profile("ci", max_examples=60, deadline=None, derandomize=True)
settings.register_profile("dev", max_examples=25, deadline=None)
settings.register_profile("stress", max_examples=1000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# Input checks in C that both backends share (argument validation, not kernels).
VALIDATION_HELPERS = {"all_finite", "index_range"}


@contextlib.contextmanager
def count_core_calls():
    """Counts calls into the compiled kernels (elman._core) while the block runs; the
    validation helpers every backend uses are not counted."""
    import elman
    calls = []
    saved = {}
    for name in dir(elman._core):
        fn = getattr(elman._core, name)
        if name.startswith("_") or not callable(fn) or name in VALIDATION_HELPERS:
            continue
        saved[name] = fn
        setattr(elman._core, name,
                lambda *a, _n=name, _f=fn, **k: (calls.append(_n), _f(*a, **k))[1])
    try:
        yield calls
    finally:
        for name, fn in saved.items():
            setattr(elman._core, name, fn)


@pytest.fixture(scope="module")
def one_torch_thread():
    """Tiny torch problems: one intra-op thread is faster and keeps results deterministic.
    Modules that compare with torch use it with pytestmark."""
    import torch
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=["c", "numpy"])
def backend_name(request):
    import elman
    with elman.backend(request.param):
        yield request.param


@pytest.fixture(params=[np.float32, np.float64], ids=["f32", "f64"])
def dtype(request):
    return np.dtype(request.param)
