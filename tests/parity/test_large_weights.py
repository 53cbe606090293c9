"""A large W_hh takes other loops: a model's forward packs one larger than
ELMAN_PACK_MIN_BYTES in column panels in its workspace (the backward packs W_hh^T always);
at small batches the backward reads a W_hh larger than half the L2 cache
(elman_stream_weight_bytes) as rows of dot products instead; the public rnn_forward
(no workspace) takes W_hh's columns a slab at a time from eight rows (csrc/gemm_small.c,
rnn.c, model.c). They agree with the reference on every kernel path, at every batch size
around the switches, with lengths and in reverse."""
import numpy as np
import pytest

import elman
from elman import _c_backend
from elman import reference as R
from tests.tolerances import assert_close

# 400 x 400 float32 (640 KB) and 260 x 260 float64 (541 KB) both exceed 512 KB, the
# smallest streaming size (half of a 1 MiB L2; more on larger caches: then the first
# parameters stay below it and the test compares the panel loops, which must agree too)
CASES = [("float32", 400), ("float64", 260), ("float32", 1100)]


@pytest.mark.parametrize("path", elman.cpu_paths())
@pytest.mark.parametrize("dtype, H", CASES)
@pytest.mark.parametrize("B", [1, 2, 3, 5, 9, 16])
def test_model_step_matches_reference(path, dtype, H, B):
    rng = np.random.default_rng(B * 7 + H)
    T, V = 4, 9
    m = elman.ElmanRNN(V, H, V, seed=3, dtype=dtype, bidirectional=B == 3)
    x, y = rng.integers(0, V, (T, B)), rng.integers(0, V, (T, B))
    kw = dict(input_size=V, hidden_size=H, output_size=V, bidirectional=B == 3,
              lengths=np.resize([T, 2, 1, 3, 4], B) if B > 1 else None)
    out = []
    with elman.cpu_path(path):
        for mod in (_c_backend, R):
            g = np.zeros_like(m.params)
            value, hs = mod.model_forward_backward(m.params, g, x, y, None, **kw)
            out.append((value, g, np.asarray(hs)))
    (vc, gc, hc), (vr, gr, hr) = out
    assert vc == pytest.approx(vr, rel=1e-5 if dtype == "float32" else 1e-12)
    assert_close(gc, gr, dtype)
    assert_close(hc, hr, dtype)


@pytest.mark.parametrize("B", [1, 2])
def test_sampling_with_a_large_weight_matches_reference(B):
    """float64, so that the sums' order cannot flip a draw: the streamed rows (B = 1, and the
    rows past the four-row blocks) draw the reference's ids."""
    m = elman.ElmanRNN(11, 260, 11, seed=5, dtype="float64")
    ids = m.sample(60, seed=2, batch=B)
    with elman.backend("numpy"):
        want = m.sample(60, seed=2, batch=B)
    np.testing.assert_array_equal(ids, want)
