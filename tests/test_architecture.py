"""The structure docs/architecture.md describes, held by tests: one signature per kernel
across the two backends, one source for the option codes, and no module of the package
reaching into another's private names."""
import ast
import inspect
import pathlib

import pytest

from elman import _c_backend, _core, kernels, reference
from elman.layout import layer_names, param_layout

SRC = pathlib.Path(__file__).resolve().parent.parent / "src" / "elman"
BACKEND_FUNCTIONS = sorted(
    name for name, obj in vars(_c_backend).items()
    if inspect.isfunction(obj) and not name.startswith("_") and obj.__module__ == _c_backend.__name__)


def test_the_c_backend_implements_the_reference():
    """Every public function of the C backend is a reference function, and the kernels of
    the reference are all there (the rest of reference.__all__ are layout and RNG names)."""
    assert set(BACKEND_FUNCTIONS) <= set(reference.__all__)
    not_kernels = {"RNNGrads", "param_layout", "param_views", "splitmix64"}
    assert set(reference.__all__) - not_kernels == set(BACKEND_FUNCTIONS)


@pytest.mark.parametrize("name", BACKEND_FUNCTIONS)
def test_both_backends_have_one_signature(name):
    assert (inspect.signature(getattr(_c_backend, name))
            == inspect.signature(getattr(reference, name)))


def test_option_codes_come_from_the_c_enums():
    assert _c_backend.NONLINEARITIES == {"tanh": _core.elman_nonlinearity.ELMAN_TANH,
                                         "relu": _core.elman_nonlinearity.ELMAN_RELU}
    assert _c_backend.LOSSES == {"cross_entropy": _core.elman_loss.ELMAN_LOSS_XENT,
                                 "mse": _core.elman_loss.ELMAN_LOSS_MSE}
    assert _c_backend.REDUCTIONS == {"mean": _core.elman_reduction.ELMAN_REDUCE_MEAN,
                                     "sum": _core.elman_reduction.ELMAN_REDUCE_SUM}
    assert kernels.NONLINEARITIES == _c_backend.NONLINEARITIES == {"tanh": 0, "relu": 1}
    assert kernels.LOSSES == _c_backend.LOSSES
    assert kernels.REDUCTIONS == _c_backend.REDUCTIONS
    assert [e.name for e in _core.elman_optimizer_kind] == ["ELMAN_OPT_ADAGRAD",
                                                            "ELMAN_OPT_SGD"]


def _private_reaches(path):
    """(line, 'module._name') for every attribute access of an underscore name on a module
    of the package imported by this file (elman._core's names are its API, so _core is
    treated like any other module)."""
    tree = ast.parse(path.read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0 and node.module is None:
            modules.update(a.asname or a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module in ("elman", "elman.torch"):
            modules.update(a.asname or a.name for a in node.names
                           if a.name[0].islower() and not a.name.startswith("__"))
    found = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in modules and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return found


def test_no_module_reaches_into_another_s_private_names():
    bad = {str(p.relative_to(SRC)): _private_reaches(p) for p in sorted(SRC.rglob("*.py"))}
    assert {k: v for k, v in bad.items() if v} == {}


def test_the_private_name_check_finds_a_reach(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from . import kernels\nkernels._model_forward(1)\nkernels.rnn_forward(2)\n")
    assert _private_reaches(f) == [(2, "kernels._model_forward")]


@pytest.mark.parametrize("I,H,O,L,bi", [(3, 2, 3, 1, False), (7, 5, 4, 3, False),
                                        (6, 4, 6, 2, True), (1, 1, 1, 4, True)])
def test_the_python_layout_is_the_c_layout(I, H, O, L, bi):
    """layout.param_layout (names and shapes) sits where C puts each slab and the head, and
    the buffer sizes the C backend allocates are the ones C reports."""
    layout, n = param_layout(I, H, O, L, bi)
    arch = (L, bi, 0.0, 0)
    offsets = {name: off for name, _, off in layout}
    D = 2 if bi else 1
    for l in range(L):
        for d in range(D):
            assert offsets[layer_names(l, d)[0]] == _core.model_param_offset(I, H, O, arch, l, d)
    assert offsets["W_hy"] == _core.model_param_offset(I, H, O, arch, L, 0)
    assert n == _core.model_num_params(I, H, O, arch)
    sizes = _core.model_sizes(5, 3, I, H, O, 0, False, arch, False, 4)
    S = L * D
    assert sizes == dict(params=n, hs=S * 6 * 3 * H, Y=15 * O, dA=S * 5 * 3 * H,
                         states=S * 3 * H, work_bytes=sizes["work_bytes"])
    with pytest.raises(ValueError, match="no layer"):
        _core.model_param_offset(I, H, O, arch, L, 1)
