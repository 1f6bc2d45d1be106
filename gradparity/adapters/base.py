"""The protocol every backend implements, and small helpers shared by the adapters.

A backend builds the MLP of a `Case` with its framework's idiomatic parts and returns a
`GradientSet` in the reference's layout (column-major, true partials of J). Adapter modules
import their framework lazily, inside methods, so that importing them (and asking whether
they are available) never loads torch or jax.
"""

from __future__ import annotations

import importlib.util
from importlib import metadata
from typing import Protocol, runtime_checkable

import numpy as np

from gradparity.core.gradients import GradientSet
from gradparity.reference.mlp import REFERENCE_KINKS


class CaseNotSupported(Exception):
    """This backend does not compute this case, for the reason given: the case's row is
    ``skipped`` with it (like an unavailable framework), never an ``error``."""


#: The memory a full forward-mode Jacobian may take (``GRADPARITY_JACFWD_BYTES`` overrides
#: it): every default-suite case needs under 0.3 GB.
JACFWD_BYTES = 4 * 2**30


def jacfwd_cost(spec) -> tuple[int, int]:
    """(tangents, bytes) of ``jacfwd(J)`` on ``spec``'s network: one tangent per element of
    the parameters, the inputs and the zero probes (dZ, dA), each carrying every layer's
    activations and their tangents (an estimate, within a small factor)."""
    sizes, m = spec.sizes, spec.batch
    params = sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    units = sum(sizes[1:])
    tangents = params + m * sizes[0] + 2 * m * units
    item = np.dtype(spec.dtype).itemsize
    return tangents, tangents * 4 * m * units * item


def check_jacfwd(spec, backend: str) -> None:
    """`CaseNotSupported` when a full forward-mode Jacobian of ``spec`` would exceed
    `JACFWD_BYTES`: forward mode is judged on small networks only (basis tangents)."""
    import os

    limit = float(JACFWD_BYTES)
    text = os.environ.get("GRADPARITY_JACFWD_BYTES", "")
    if text.strip():
        try:
            limit = float(text)  # inf: no limit
        except ValueError:
            pass
        if limit != limit:  # NaN: the default
            limit = float(JACFWD_BYTES)
    tangents, need = jacfwd_cost(spec)
    if need > limit:
        raise CaseNotSupported(
            f"{backend}: forward mode here is a full Jacobian (jacfwd), {tangents} tangents "
            f"and about {need / 2**30:.3g} GB for this network, over the "
            f"{limit / 2**30:.3g} GB limit (GRADPARITY_JACFWD_BYTES); judge forward mode on "
            "a smaller network")


def framework_runtime() -> dict[str, str]:
    """The settings of the frameworks imported in this process that choose their kernels:
    torch's thread count and vector ISA (empty when torch is not imported here)."""
    import sys

    out: dict[str, str] = {}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch_threads"] = str(torch.get_num_threads())
        try:
            out["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
        except Exception:  # noqa: BLE001 - metadata only
            pass
    return out


#: Keys of `Backend.kink_conventions`: hidden activations with a kink at 0, and the L1 head
#: (the keys of the reference's own conventions).
KINK_KEYS: tuple[str, ...] = tuple(REFERENCE_KINKS)


@runtime_checkable
class Backend(Protocol):
    """A framework that computes the loss, forward values and gradients of a case."""

    name: str

    def available(self) -> bool:
        """True when the framework can be imported (checked without importing it)."""
        ...

    def unavailable_reason(self) -> str:
        """Why `available()` is False, with the install hint; ``""`` when available."""
        ...

    def gradients(self, case) -> GradientSet:
        """Loss, forward values and gradients of ``case`` in the reference's layout."""
        ...

    def kink_conventions(self, dtype: str) -> dict[str, float]:
        """Derivatives the framework uses at kinks, measured from the framework itself.

        Keys: ``"relu"`` (relu'(0)), ``"leaky_relu"`` (leaky_relu'(0), slope 0.01) and
        ``"linear_l1"`` (d|r|/dr at r = 0 through the backend's L1 loss).
        """
        ...

    def version(self) -> str | None:
        """The framework's version (from package metadata), or None if not installed."""
        ...


@runtime_checkable
class LayerBackend(Backend, Protocol):
    """A backend that can also run one hidden layer on its own (the layer-own rows of
    `gradparity.judge.layer_own`; the output layer runs as a one-layer case)."""

    def layer_gradients(self, case, layer: int, a_prev: np.ndarray, dA_out: np.ndarray
                        ) -> dict[str, np.ndarray]:
        """Hidden layer ``layer`` on its own: forward from ``a_prev`` = A[l-1]
        ``(n_{l-1}, m)``, backward from ``dA_out`` = dJ/dA[l] ``(n_l, m)``. Returns ``Z``,
        ``A``, ``dZ``, ``dW``, ``db``, ``dA_prev`` as `gradparity.reference.mlp.layer_step`
        (the layer-own rows, `gradparity.judge.layer_own`)."""
        ...


def modules_found(*modules: str) -> bool:
    """True if every module can be found, without importing any of them."""
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


def dist_version(dist: str) -> str | None:
    """Installed version of a distribution, from metadata (no import)."""
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def kink_value(value) -> float:
    """A measured derivative as the shortest decimal that rounds to it in its own dtype.

    torch's float32 leaky_relu'(0) is float32(0.01) = 0.0099999998; reported as 0.01, the
    slope it stands for, so it compares equal to the reference's float64 convention.
    """
    v = np.asarray(value).reshape(())[()]
    return float(np.format_float_scientific(v, unique=True))


def as_numpy(array, dtype: np.dtype, *, what: str, backend: str,
             transpose: bool = False) -> np.ndarray:
    """A framework array as a C-contiguous NumPy copy, optionally transposed.

    The dtype must already be ``dtype``: casting here would hide a framework that ran in
    the wrong precision (e.g. JAX truncating float64 to float32), so a mismatch raises.
    """
    a = np.asarray(array)
    if a.dtype != dtype:
        raise RuntimeError(
            f"{backend}: {what} came back as {a.dtype}, expected {dtype} "
            "(the framework did not compute in the case's dtype)"
        )
    if transpose:
        a = a.T
    return np.array(a, dtype=dtype, order="C", copy=True)


#: The table's ``mode`` column for a per-example backend's rows, by quantity: parameter
#: gradients (and J) are means over the batch of per-example values; dZ and dA are each
#: example's own gradient (the seed's per-example convention) divided by m.
PER_EXAMPLE_MODES: dict[str, str] = {
    "loss": "per_example_mean", "dW": "per_example_mean", "db": "per_example_mean",
    "dZ": "per_example_div_m", "dA": "per_example_div_m",
}


def batch_from_per_example(per_example: dict[str, np.ndarray], m: int, *,
                           divide: bool = True, mean: bool = True) -> dict[str, np.ndarray]:
    """Per-example gradients -> the true partials of J = (1/m) sum_i loss_i.

    ``per_example`` holds each example's gradient of its own loss_i: ``dWl`` of shape
    ``(m, n_l, n_{l-1})`` and ``dbl`` ``(m, n_l, 1)`` (one per example: their mean is the
    batch gradient), ``dZl``/``dAl`` of shape ``(n_l, m)`` (column i depends on example i
    only, and is m times the true partial, the seed's per-example dZ: divided by m).
    ``divide`` and ``mean`` False are the wrapper's two classic bugs (per-example
    intermediates not divided by m; parameter gradients summed), for the self-test.
    """
    out: dict[str, np.ndarray] = {}
    for key, g in per_example.items():
        if key.startswith(("dW", "db")):
            total = g.sum(axis=0)
            out[key] = total / g.dtype.type(m) if mean else total
        else:
            out[key] = g / g.dtype.type(m) if divide else g.copy()
    return out
