"""The ``gradparity`` command line.

Exit codes: 0 every tensor agrees (or differs only by a named convention), 1 a parity
failure or a backend error, 2 a usage or input error (one line on stderr, no traceback).
Heavy modules (pandas, torch, jax) are imported inside the commands, never at start-up.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gradparity.cli.commands import COMMANDS
from gradparity.cli.common import EXIT_OK, EXIT_USAGE
from gradparity.core.errors import UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="gradparity", description=(
        "Gradient parity between a NumPy backprop reference, PyTorch autograd and JAX grad."))
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", parser_class=_Parser)
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from gradparity.core import __version__

        print(f"gradparity {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return args.handler(args)
    except UsageError as e:
        print(f"gradparity: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. piped into head: not an error of the run
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        print("gradparity: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
