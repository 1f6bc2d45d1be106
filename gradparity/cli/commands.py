"""Sub-commands of the ``gradparity`` command line, one module each.

Each module defines ``register(subparsers)``, which adds its parser and sets ``handler``
with ``set_defaults``. Modules import only the standard library at import time: heavy
imports (pandas, torch, jax) go inside the handlers, so ``gradparity --help`` stays light.
"""

#: Command modules, in the order ``gradparity --help`` lists them.
COMMANDS: tuple[str, ...] = (
    "gradparity.cli.run",
    "gradparity.cli.list",
    "gradparity.cli.baseline",
    "gradparity.cli.diff",
    "gradparity.cli.report",
    "gradparity.cli.debug",
    "gradparity.cli.selftest",
    "gradparity.cli.fuzz",
)
