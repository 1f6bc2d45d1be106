"""Environment metadata that travels with every table.

Versions are read from package metadata (no framework import). Thread counts are read
from a framework only if it is already imported.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Mapping

from gradparity.adapters.base import dist_version, framework_runtime


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


def cpu_flags() -> set[str]:
    """Every feature flag this CPU reports (empty if unknown)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def _cpu_isa() -> str:
    """The `ISA_FLAGS` this CPU reports, space-separated (empty if unknown)."""
    have = cpu_flags()
    return " ".join(x for x in ISA_FLAGS if x in have)


#: The oldest kernels every x86-64 library here can still be told to run: torch without
#: vector kernels, XLA without AVX (so without FMA), OpenBLAS's SSE kernels, one thread.
LEGACY_KERNELS: dict[str, str] = {
    "ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2", "OPENBLAS_CORETYPE": "Nehalem",
}


def kernel_configurations() -> dict[str, dict[str, str]]:
    """Name -> environment variables, for the kernel choices this CPU can run.

    Each one makes a library pick other kernels, as another CPU would: torch's with
    ``ATEN_CPU_CAPABILITY``, XLA's code generation with ``--xla_cpu_max_isa``, OpenBLAS's
    with ``OPENBLAS_CORETYPE``, the summation order with the thread count. ``stock`` sets
    none (every library's own choice); a configuration that would repeat it on this CPU
    is left out (``aten-avx2`` without AVX-512, ``threads-N`` with N cores).
    """
    flags = cpu_flags()
    cores = os.cpu_count() or 1
    configs: dict[str, dict[str, str]] = {
        "stock": {},
        "aten-default": {"ATEN_CPU_CAPABILITY": "default"},
    }
    if "avx512f" in flags:
        configs["aten-avx2"] = {"ATEN_CPU_CAPABILITY": "avx2"}
    for n in (1, 2):
        if n != cores:
            configs[f"threads-{n}"] = {"OMP_NUM_THREADS": str(n)}
    configs["xla-sse4_2"] = {"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"}
    configs["openblas-nehalem"] = {"OPENBLAS_CORETYPE": "Nehalem"}
    configs["openblas-sandybridge"] = {"OPENBLAS_CORETYPE": "Sandybridge"}
    if "avx512f" in flags:
        configs["openblas-skylakex"] = {"OPENBLAS_CORETYPE": "SkylakeX"}
    configs["legacy"] = dict(LEGACY_KERNELS)
    return configs


def envelope_configurations() -> dict[str, dict[str, str]]:
    """The kernel choices a baseline's errors are taken over (`gradparity.ci.kernels`):
    this CPU's own (``stock``), ``avx2`` where the CPU has AVX-512 (another vector width,
    still with FMA), and ``legacy`` (no FMA: the other accuracy class of XLA's elementwise
    code)."""
    configs: dict[str, dict[str, str]] = {"stock": {}}
    if "avx512f" in cpu_flags():
        configs["avx2"] = {"ATEN_CPU_CAPABILITY": "avx2", "XLA_FLAGS": "--xla_cpu_max_isa=AVX2",
                           "OPENBLAS_CORETYPE": "Haswell"}
    configs["legacy"] = dict(LEGACY_KERNELS)
    return configs


def kernel_environment(variables: dict[str, str], base: dict[str, str] | None = None
                       ) -> dict[str, str]:
    """``base`` (default: this process's environment) without any kernel variable that
    `LEGACY_KERNELS` names (of ``XLA_FLAGS`` only its ``--xla_cpu_max_isa``), then with
    ``variables``: the environment of a child process that runs under one kernel
    configuration."""
    env = dict(os.environ if base is None else base)
    # XLA_FLAGS may carry the user's other flags: only the ISA limit is replaced
    xla = [t for t in env.pop("XLA_FLAGS", "").split()
           if not t.startswith("--xla_cpu_max_isa")]
    for k in LEGACY_KERNELS:
        env.pop(k, None)
    env.update(variables)
    xla += env.pop("XLA_FLAGS", "").split()
    if xla:
        env["XLA_FLAGS"] = " ".join(xla)
    return env


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


def environment(runtime: Mapping[str, str] | None = None) -> dict[str, str]:
    """Versions, BLAS, CPU and its SIMD features, kernel variables and threads, as strings
    (stable keys, sorted when written). ``runtime``: the frameworks' settings
    (`framework_runtime`) of the processes that computed, when not this one."""
    from gradparity.core import __version__

    env = {
        "gradparity": __version__,
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
    env.update(framework_runtime() if runtime is None else runtime)
    return env
