"""``gradparity check --torch MODULE:ATTR`` / ``--jax MODULE:FN``: gate CI on your own model's
gradients (a torch module or a JAX function), as `assert_grads_match` does: prints
``Gradients match.`` or the failure message (the first wrong quantity of your model, its
diagnosis and line). Exit 0 when everything agrees, 1 otherwise, 2 on a usage error (one
line). The options are added to ``gradparity check`` (whose ``--baseline`` form re-runs a
baseline's cases).
"""

from __future__ import annotations

import argparse

from gradparity.cli.common import EXIT_FAIL, EXIT_OK, check_tolerance_options
from gradparity.core.errors import UsageError


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The model options of ``gradparity check``."""
    g = p.add_argument_group("your own model (instead of --baseline)")
    g.add_argument("--torch", metavar="MODULE:ATTR", help="a PyTorch model: module:attr or "
                   "file.py:attr naming an nn.Module, a class or a factory")
    g.add_argument("--jax", metavar="MODULE:FN", help="a JAX function fn(params, X), "
                   "loss(params, X, Y) or loss(params, batch)")
    g.add_argument("--loss", metavar="LOSS", help="--torch: the training loss (default: the "
                   "one the model's file names)")
    g.add_argument("--params", metavar="NAME", help="--jax: the parameters in the file")
    g.add_argument("--head", help="output activation + loss for a model returning logits")
    g.add_argument("--dtype", help="float32 or float64 (default: the model's)")
    g.add_argument("--batch", type=int, help="number of examples m (default 8)")
    g.add_argument("--seed", type=int, default=0, help="seed of the drawn case (default 0)")
    g.add_argument("--backends", type=_csv, action="extend", metavar="NAMES",
                   help="frameworks run on the same case (default: the other one), or none")
    g.add_argument("--rtol", type=float, help="relative tolerance (default: per dtype)")
    g.add_argument("--atol", type=float, help="absolute tolerance (default: per dtype)")


def _csv(text: str) -> list[str]:
    from gradparity.cli.common import csv_list

    return csv_list(text)


def cmd_model_check(args: argparse.Namespace) -> int:
    if args.torch is not None and args.jax is not None:
        raise UsageError("check: give one of --torch MODULE:ATTR or --jax MODULE:FN")
    if getattr(args, "baseline", None) is not None:
        raise UsageError("--baseline: not used with --torch/--jax (a model is checked "
                         "against the reference, not a baseline)")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch={args.batch}: expected a positive integer")
    if args.seed < 0:
        raise UsageError(f"--seed={args.seed}: expected a non-negative integer")
    check_tolerance_options(args)
    backends = args.backends
    if backends == ["none"]:
        backends = []
    elif backends is None:
        backends = ["jax"] if args.torch else ["torch"]
    for b in backends:
        if b not in ("torch", "jax"):
            raise UsageError(f"--backends={b!r}: expected torch, jax or none")

    from gradparity.ci.assertions import check_grads
    from gradparity.debug.torch_session import import_target

    target, label, module = import_target(args.torch or args.jax,
                                          "--torch" if args.torch else "--jax")
    if args.torch:
        from gradparity.debug.torch_session import instantiate

        target = instantiate(target, label, module)
    options = {"module": module, "label": label, "loss": args.loss, "params": args.params,
               "head": args.head, "dtype": args.dtype, "batch": args.batch, "seed": args.seed}
    if args.torch and args.params is not None:
        raise UsageError("--params: used with --jax only")
    result = check_grads(target, backends, rtol=args.rtol, atol=args.atol,
                         **{k: v for k, v in options.items() if v is not None})
    print(result.message())
    return EXIT_OK if result.ok else EXIT_FAIL
