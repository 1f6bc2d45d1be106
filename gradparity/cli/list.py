"""``gradparity list``: suites, activations, heads, regimes, backends and the kernel
configurations of this CPU."""

from __future__ import annotations

import argparse

from gradparity.cli.common import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("list", help="list suites, activations, heads and backends")
    p.set_defaults(handler=cmd_list)


def cmd_list(args: argparse.Namespace) -> int:
    from gradparity.adapters.registry import DESCRIPTIONS, available_backends
    from gradparity.core.spec import ACTIVATIONS, DTYPES, HEADS, REGIMES
    from gradparity.experiments.suites import SUITES

    print("suites:")
    for name, (make, desc) in SUITES.items():
        print(f"  {name:<10} {len(make()):>4} cases  {desc}")
    print("activations:\n  " + ", ".join(ACTIVATIONS))
    print("heads (loss forms):")
    for h in HEADS.values():
        print(f"  {h.name:<13} {'/'.join(h.forms):<13} {h.description}")
    print("dtypes:\n  " + ", ".join(DTYPES))
    print("regimes:\n  " + ", ".join(REGIMES))
    print("backends:")
    for name, (ok, note) in available_backends().items():
        print(f"  {name:<14} {'installed' if ok else 'missing':<10} {note}")
        print(f"  {'':<14} {'':<10} {DESCRIPTIONS[name]}")
    from gradparity.experiments.environment import kernel_configurations

    print("kernel configurations of this CPU (baseline save --kernels):")
    for name, variables in kernel_configurations().items():
        shown = " ".join(f"{k}={v}" for k, v in variables.items()) or "(no variables)"
        print(f"  {name:<21} {shown}")
    return EXIT_OK


