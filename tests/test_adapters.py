"""Framework adapters: parity with the reference, kink conventions, jit cache, lazy import."""

from __future__ import annotations

import functools
import subprocess
import sys

import numpy as np
import pytest

from gradparity import Spec, UsageError, make_case, reference_gradients
from gradparity.adapters import BACKENDS, Backend, available_backends, get_backend
from gradparity.core.spec import ACTIVATIONS, head_forms
from gradparity.reference.mlp import REFERENCE_KINKS

#: (rtol, atol) per dtype for the parity grid.
TOL = {"float64": (1e-7, 1e-9), "float32": (1.3e-6, 1e-5)}
SIZES = (3, 5, 4, 3)  # softmax needs >= 2 outputs
BATCH = 6
FRAMEWORK = {"torch": "torch", "jax": "jax"}

GRID = [(dtype, act, head, form)
        for dtype in ("float64", "float32") for act in ACTIVATIONS for head, form in head_forms()]


def _backend(name: str) -> Backend:
    if name in FRAMEWORK:
        pytest.importorskip(FRAMEWORK[name])
    return get_backend(name)


@functools.cache
def _case_and_reference(dtype: str, activation: str, head: str, form: str):
    spec = Spec(sizes=SIZES, activation=activation, head=head, loss_form=form, dtype=dtype,
                batch=BATCH)
    case = make_case(spec)
    return case, reference_gradients(case)


def _all_arrays(g) -> dict[str, np.ndarray]:
    return {"loss": g.loss, **g.forward, **g.grads}


def _assert_matches(got, ref, case, *, backend: str) -> None:
    spec = case.spec
    rtol, atol = TOL[spec.dtype]
    assert set(got.forward) == set(ref.forward), (backend, spec.case_id)
    assert set(got.grads) == set(ref.grads), (backend, spec.case_id)
    expected, actual = _all_arrays(ref), _all_arrays(got)
    L = spec.depth
    for key, e in expected.items():
        a = actual[key]
        msg = f"backend={backend} key={key} case={spec.case_id}"
        assert a.shape == e.shape, f"{msg}: shape {a.shape} != {e.shape}"
        assert a.dtype == e.dtype, f"{msg}: dtype {a.dtype} != {e.dtype}"
        if spec.head == "sigmoid_bce" and spec.loss_form == "probs" and key == f"dA{L}":
            # Composed BCE: the frameworks form dJ/dA = (A - Y) / (A (1 - A)) from a rounded
            # A, so 1 - A carries a relative error of ~eps / min(A, 1 - A); the reference
            # evaluates it from Z. Allow exactly that conditioning (checked against a
            # float64 oracle: torch/jax 3e-5 relative, reference 1e-7, float32).
            A = ref.forward[f"A{L}"].astype(np.float64)
            cond = 1.0 / np.maximum(np.minimum(A, 1.0 - A), np.finfo(e.dtype).tiny)
            eps = float(np.finfo(e.dtype).eps)
            bound = atol + (rtol + 2.0 * eps * cond) * np.abs(e.astype(np.float64))
            err = np.abs(a.astype(np.float64) - e.astype(np.float64))
            assert np.all(err <= bound), f"{msg}: max abs err {err.max():.3g}"
            continue
        np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=msg)


# -- parity grid ------------------------------------------------------------------------
@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize(("dtype", "activation", "head", "form"), GRID,
                         ids=["-".join(p) for p in GRID])
def test_backend_matches_reference(backend, dtype, activation, head, form):
    b = _backend(backend)
    case, ref = _case_and_reference(dtype, activation, head, form)
    got = b.gradients(case)
    assert got.backend == backend and got.notes
    assert got.loss.ndim == 0
    _assert_matches(got, ref, case, backend=backend)


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("form", ["logits", "probs"])
def test_softmax_with_probability_targets(backend, form):
    b = _backend(backend)
    targets = [[0.2, 0.5, 1.0], [0.3, 0.25, 0.0], [0.5, 0.25, 0.0]]
    for dtype in ("float64", "float32"):
        spec = Spec(sizes=(2, 4, 3), activation="tanh", head="softmax_ce", loss_form=form,
                    dtype=dtype, batch=3, targets=targets)
        case = make_case(spec)
        assert case.labels is None
        got = b.gradients(case)
        assert "probability targets" in got.notes
        _assert_matches(got, reference_gradients(case), case, backend=backend)


def test_reference_backend_is_the_reference():
    b = get_backend("reference")
    assert b.available() and b.unavailable_reason() == ""
    assert b.kink_conventions("float32") == REFERENCE_KINKS
    case, ref = _case_and_reference("float64", "relu", "softmax_ce", "probs")
    got = b.gradients(case)
    assert got.backend == "reference"
    for key, e in _all_arrays(ref).items():
        np.testing.assert_array_equal(_all_arrays(got)[key], e, err_msg=key)


# -- kink conventions -------------------------------------------------------------------
MEASURED = {
    "torch": {"relu": 0.0, "leaky_relu": 0.01, "linear_l1": 0.0},
    "jax": {"relu": 0.0, "leaky_relu": 1.0, "linear_l1": 1.0},
}


@pytest.mark.parametrize("backend", ["torch", "jax"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_kink_conventions_are_measured(backend, dtype):
    b = _backend(backend)
    conv = b.kink_conventions(dtype)
    assert conv == MEASURED[backend]
    conv["relu"] = 123.0  # a copy: the cache is not exposed
    assert b.kink_conventions(dtype) == MEASURED[backend]


# -- jax: jit cache and x64 scoping -----------------------------------------------------
def test_jax_jit_is_compiled_once_per_structure():
    pytest.importorskip("jax")
    from gradparity.adapters.jax_grad import jit_cache_info

    b = get_backend("jax")
    # A structure no other test uses: depth 2, gelu_tanh, huber.
    specs = [Spec(sizes=(2, 3, 2), activation="gelu_tanh", head="linear_huber",
                  dtype="float32", batch=4, seed=s) for s in (1, 2, 3)]
    before = jit_cache_info()
    first = b.gradients(make_case(specs[0]))
    after_first = jit_cache_info()
    assert after_first["structures"] == before["structures"] + 1
    assert after_first["traces"] == before["traces"] + 1
    others = [b.gradients(make_case(s)) for s in specs[1:]]
    assert jit_cache_info() == after_first  # reused: no new function, no retrace
    assert not np.array_equal(first.grads["dW1"], others[0].grads["dW1"])
    # Another dtype is another structure.
    b.gradients(make_case(specs[0].replace(dtype="float64")))
    assert jit_cache_info()["structures"] == after_first["structures"] + 1


def test_jax_x64_does_not_leak():
    jax = pytest.importorskip("jax")
    import jax.numpy as jnp

    b = get_backend("jax")
    case64 = make_case(Spec(sizes=(2, 3, 2), activation="relu", head="linear_mse",
                            dtype="float64", batch=3))
    got = b.gradients(case64)
    assert got.grads["dW1"].dtype == np.float64 and got.loss.dtype == np.float64
    assert jnp.ones(1).dtype == jnp.float32
    assert not jax.config.jax_enable_x64
    case32 = make_case(case64.spec.replace(dtype="float32"))
    assert b.gradients(case32).grads["dW1"].dtype == np.float32
    b.kink_conventions("float64")
    assert jnp.ones(1).dtype == jnp.float32


# -- torch: no global state -------------------------------------------------------------
def test_torch_leaves_global_state_alone():
    torch = pytest.importorskip("torch")
    b = get_backend("torch")
    rng = torch.random.get_rng_state()
    dtype = torch.get_default_dtype()
    case, ref = _case_and_reference("float64", "elu", "linear_l1", "logits")
    with torch.no_grad():  # a caller's no_grad must not break the adapter
        got = b.gradients(case)
    assert torch.is_grad_enabled()
    assert torch.equal(torch.random.get_rng_state(), rng)
    assert torch.get_default_dtype() == dtype
    _assert_matches(got, ref, case, backend="torch")
    assert "reduction='sum'" in got.notes


def test_torch_layers_hold_the_case_parameters_without_drawing_any(monkeypatch):
    """The layers are nn.Linear with the case's W and b; no initialisation is drawn for
    them (the draw, thrown away at once, was 2-24 ms a case)."""
    torch = pytest.importorskip("torch")
    b = get_backend("torch")
    case, ref = _case_and_reference("float32", "relu", "softmax_ce", "logits")
    lin = b._linear(3, 4, case.parameters["W1"][:4, :3], case.parameters["b1"][:4], torch.float32)
    assert isinstance(lin, torch.nn.Linear)
    assert np.array_equal(lin.weight.detach().numpy(), case.parameters["W1"][:4, :3])
    assert np.array_equal(lin.bias.detach().numpy(), case.parameters["b1"][:4, 0])

    def drawn(*args, **kwargs):
        raise AssertionError("an initialisation was drawn")

    monkeypatch.setattr(torch.nn.init, "kaiming_uniform_", drawn)
    monkeypatch.setattr(torch.nn.init, "uniform_", drawn)
    _assert_matches(b.gradients(case), ref, case, backend="torch")


@pytest.mark.parametrize("layout", ["flipped", "read-only", "big-endian", "fortran"])
@pytest.mark.parametrize("name", ["torch", "torch.func", "torch.fwd", "torch.vmap", "jax",
                                  "jax.eager", "jax.fwd", "jax.checkpoint", "jax.vmap"])
def test_backends_take_case_arrays_of_any_layout(name, layout):
    """A Case's arrays may be flipped views (negative strides) or in the other byte order,
    both of which torch refuses, read-only or in Fortran order: same values, same
    result."""
    import dataclasses

    backend = get_backend(name)
    if not backend.available():
        pytest.skip(backend.unavailable_reason())
    case, _ = _case_and_reference("float64", "tanh", "softmax_ce", "logits")

    def odd(a):
        if layout == "flipped":
            return np.ascontiguousarray(a[::-1, ::-1])[::-1, ::-1]
        if layout == "read-only":
            a = a.copy()
            a.setflags(write=False)
            return a
        if layout == "big-endian":
            return a.astype(a.dtype.newbyteorder(">"))
        return np.asfortranarray(a)

    other = dataclasses.replace(case, X=odd(case.X), Y=odd(case.Y),
                                parameters={k: odd(v) for k, v in case.parameters.items()})
    assert all(np.array_equal(odd(a), a) for a in (case.X, *case.parameters.values()))
    got, want = backend.gradients(other), backend.gradients(case)
    for name, a in _all_arrays(want).items():
        assert np.array_equal(_all_arrays(got)[name], a), name


# -- registry ---------------------------------------------------------------------------
def test_importing_gradparity_does_not_import_frameworks():
    code = (
        "import sys\n"
        "import gradparity, gradparity.adapters\n"
        "from gradparity.adapters import available_backends, get_backend\n"
        "bs = [get_backend(n) for n in ('reference', 'torch', 'jax')]\n"
        "available_backends(); [b.available() for b in bs]\n"
        "loaded = sorted(m for m in ('torch', 'jax', 'jaxlib') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_unknown_backend_is_a_one_line_usage_error():
    with pytest.raises(UsageError) as info:
        get_backend("xyz")
    assert str(info.value) == f"backend='xyz': expected one of {', '.join(BACKENDS)}"


def test_registry_lists_backends_and_availability():
    assert BACKENDS[:3] == ("reference", "torch", "jax")
    avail = available_backends()
    assert list(avail) == list(BACKENDS)
    for name, (ok, note) in avail.items():
        assert isinstance(ok, bool) and isinstance(note, str)
        b = get_backend(name)
        assert isinstance(b, Backend) and b.name == name
        assert b is get_backend(name)
    assert avail["reference"][0]


@pytest.mark.parametrize(("name", "module"), [("torch", "gradparity.adapters.torch_autograd"),
                                              ("jax", "gradparity.adapters.jax_grad")])
def test_missing_framework_reason(monkeypatch, name, module):
    import importlib

    b = get_backend(name)
    monkeypatch.setattr(importlib.import_module(module), "modules_found", lambda *m: False)
    assert not b.available()
    assert b.unavailable_reason() == (
        f"{name} is not installed (pip install 'gradparity[{name}]')")
    assert available_backends()[name] == (False, b.unavailable_reason())
