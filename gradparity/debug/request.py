"""One debug session from plain options: what ``gradparity debug`` runs in its child process.

The command line checks the options and starts the child (`gradparity.debug.isolation`);
the child calls `compute` with the same options as a dict of plain values (`REQUEST_KEYS`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from gradparity.core.errors import UsageError

if TYPE_CHECKING:
    from gradparity.debug.result import DebugResult

#: The options of a debug session, as the command line names them.
REQUEST_KEYS = ("file", "torch", "sizes", "activation", "head", "loss_form", "dtype", "batch",
                "seed", "backends", "backprop", "forward", "rtol", "atol", "api", "data",
                "definitions_only", "jax", "loss", "params")


def debug_backends(values: list[str] | None, default: tuple[str, ...]) -> tuple[str, ...]:
    """The ``--backends`` of a debug session: names, ``none`` for none, or ``default``."""
    if not values:
        return default
    if values == ["none"]:
        return ()
    for v in values:
        if v not in ("torch", "jax"):
            raise UsageError(f"--backends={v!r}: expected torch, jax or none")
    return tuple(dict.fromkeys(values))


def framework_backends(request: dict[str, object]) -> tuple[str, ...]:
    """The frameworks a session of ``request`` compares with (its ``--backends``, else: jax
    for a torch model, torch for a JAX function, both for NumPy code)."""
    values = request.get("backends")
    if request.get("torch") is not None:
        return debug_backends(values, ("jax",))
    if request.get("jax") is not None:
        return debug_backends(values, ("torch",))
    return debug_backends(values, ("torch", "jax"))


def compute(request: dict[str, object]) -> DebugResult:
    """The debug session of ``request`` (the `REQUEST_KEYS` options), in this process: a
    `DebugResult`. ``gradparity debug`` calls it in a child process."""
    args = argparse.Namespace(**{k: request.get(k) for k in REQUEST_KEYS})
    if args.seed is None:
        args.seed = 0
    from gradparity.debug.session import DEFAULT_BATCH, parse_sizes

    batch = args.batch if args.batch is not None else DEFAULT_BATCH
    if args.torch is not None:
        for flag in ("sizes", "activation", "backprop", "forward", "api", "data"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag}: not used with --torch (the module defines it)")
        if args.params is not None:
            raise UsageError("--params: used with --jax only")
        from gradparity.debug.torch_session import debug_torch, import_target

        model, label, module = import_target(args.torch)
        return debug_torch(model, head=args.head, loss_form=args.loss_form, dtype=args.dtype,
                           batch=batch, seed=args.seed, rtol=args.rtol, atol=args.atol,
                           backends=framework_backends(request), label=label,
                           loss=args.loss, module=module)
    if args.jax is not None:
        for flag in ("sizes", "activation", "backprop", "forward", "api", "data"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag}: not used with --jax (the function defines it)")
        from gradparity.debug.jax_model import debug_jax
        from gradparity.debug.torch_session import import_target

        fn, label, module = import_target(args.jax, "--jax")
        return debug_jax(fn, params=args.params, head=args.head, loss=args.loss,
                         dtype=args.dtype, batch=batch, seed=args.seed, rtol=args.rtol,
                         atol=args.atol, backends=framework_backends(request),
                         label=label, module=module)
    from gradparity.debug.api import debug_code

    sizes = parse_sizes(args.sizes) if args.sizes else None
    return debug_code(args.file, sizes=sizes, activation=args.activation,
                      head=args.head, loss_form=args.loss_form, dtype=args.dtype,
                      batch=args.batch, seed=args.seed,
                      backends=framework_backends(request),
                      rtol=args.rtol, atol=args.atol, backprop_name=args.backprop,
                      forward_name="" if args.forward == "none" else args.forward,
                      api=args.api, data=args.data,
                      definitions_only=bool(args.definitions_only))
