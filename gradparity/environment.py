"""Environment metadata that travels with every table.

Versions are read from package metadata (no framework import). Thread counts are read
from a framework only if it is already imported.
"""

from __future__ import annotations

import os
import platform
import sys

from gradparity.adapters.base import dist_version


def _cpu() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


#: SIMD features that decide which kernels NumPy, OpenBLAS, torch and XLA run.
ISA_FLAGS: tuple[str, ...] = (
    "sse4_2", "avx", "fma", "avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
    "avx512_bf16", "amx_tile", "asimd", "sve",
)
#: Environment variables that change kernels or thread counts, recorded with every run.
KERNEL_VARIABLES: tuple[str, ...] = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "OPENBLAS_CORETYPE",
    "ATEN_CPU_CAPABILITY", "XLA_FLAGS",
)


def _cpu_isa() -> str:
    """The `ISA_FLAGS` this CPU reports, space-separated (empty if unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    have = set(line.split(":", 1)[1].split())
                    return " ".join(x for x in ISA_FLAGS if x in have)
    except OSError:
        pass
    return ""


def _blas() -> str:
    import numpy as np

    try:
        cfg = np.show_config(mode="dicts")  # numpy >= 1.26
        blas = cfg.get("Build Dependencies", {}).get("blas", {})
        name = blas.get("name", "unknown")
        version = blas.get("version", "")
        return f"{name} {version}".strip()
    except Exception:  # noqa: BLE001 - metadata only; never fail a run for it
        return "unknown"


def environment() -> dict[str, str]:
    """Versions, BLAS, CPU and its SIMD features, kernel variables and threads, as strings
    (stable keys, sorted when written)."""
    import gradparity

    env = {
        "gradparity": gradparity.__version__,
        "python": platform.python_version(),
        "numpy": dist_version("numpy") or "missing",
        "pandas": dist_version("pandas") or "missing",
        "torch": dist_version("torch") or "missing",
        "jax": dist_version("jax") or "missing",
        "jaxlib": dist_version("jaxlib") or "missing",
        "blas": _blas(),
        "platform": f"{platform.system()} {platform.machine()}",
        "cpu": _cpu(),
        "cpu_isa": _cpu_isa(),
        "cpu_count": str(os.cpu_count()),
    }
    for var in KERNEL_VARIABLES:
        env[var] = os.environ.get(var, "")
    torch = sys.modules.get("torch")
    if torch is not None:
        env["torch_threads"] = str(torch.get_num_threads())
        try:
            env["torch_cpu_capability"] = str(torch.backends.cpu.get_cpu_capability())
        except Exception:  # noqa: BLE001 - metadata only
            pass
    return env
