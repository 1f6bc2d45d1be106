"""The ``gradparity`` command line.

Exit codes: 0 every tensor agrees (or differs only by a named convention), 1 a parity
failure or a backend error, 2 a usage or input error (one line on stderr, no traceback).
Heavy modules (pandas, torch, jax) are imported inside the commands, never at start-up.
SIGTERM is handled like SIGINT (exit 143 and 130): a result being written is left as it
was, with no temporaries beside it.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import threading
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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like SIGINT's KeyboardInterrupt so that the same clean-up runs."""


def _terminate(signum: int, frame: object) -> None:
    raise Terminated()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; SIGTERM is handled like SIGINT while it runs."""
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


def _main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from gradparity.core import __version__

        print(f"gradparity {__version__}")
        return EXIT_OK
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    from gradparity.core.memory import keep_freed_memory

    keep_freed_memory()  # this process's own allocator: temporaries reuse freed memory
    try:
        return args.handler(args)
    except UsageError as e:
        print(f"gradparity: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # e.g. piped into head: not an error of the run
        sys.stderr.close()
        return EXIT_OK
    except Terminated:
        print("gradparity: terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("gradparity: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
