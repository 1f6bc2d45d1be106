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
                "definitions_only")


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


def compute(request: dict[str, object]) -> DebugResult:
    """The debug session of ``request`` (the `REQUEST_KEYS` options), in this process: a
    `DebugResult`. ``gradparity debug`` calls it in a child process."""
    args = argparse.Namespace(**{k: request.get(k) for k in REQUEST_KEYS})
    if args.seed is None:
        args.seed = 0
    from gradparity.debug.session import (
        DEFAULT_BATCH,
        debug_torch,
        load_torch_target,
        parse_sizes,
    )

    if args.torch is not None:
        for flag in ("sizes", "activation", "backprop", "forward", "api", "data"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag}: not used with --torch (the module defines it)")
        model, label = load_torch_target(args.torch)
        batch = args.batch if args.batch is not None else DEFAULT_BATCH
        return debug_torch(model, head=args.head, loss_form=args.loss_form, dtype=args.dtype,
                           batch=batch, seed=args.seed, rtol=args.rtol, atol=args.atol,
                           backends=debug_backends(args.backends, ("jax",)), label=label)
    from gradparity.debug.api import debug_code

    sizes = parse_sizes(args.sizes) if args.sizes else None
    return debug_code(args.file, sizes=sizes, activation=args.activation,
                      head=args.head, loss_form=args.loss_form, dtype=args.dtype,
                      batch=args.batch, seed=args.seed,
                      backends=debug_backends(args.backends, ("torch", "jax")),
                      rtol=args.rtol, atol=args.atol, backprop_name=args.backprop,
                      forward_name="" if args.forward == "none" else args.forward,
                      api=args.api, data=args.data,
                      definitions_only=bool(args.definitions_only))
