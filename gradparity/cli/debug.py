"""``gradparity debug``: find the first wrong gradient of your own backprop or PyTorch model.

``gradparity debug FILE.py`` runs ``backpropagation(cache, Y, parameters)`` (and
``forward(X, parameters)`` if the file has one) from FILE.py, or the learner code of another
API family (`gradparity.debug.families`); ``gradparity debug --torch
MODULE:ATTR`` checks an ``nn.Sequential``. Exit 0 when everything agrees, 1 otherwise, 2 on
a usage error (one line).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from gradparity.cli.common import check_tolerance_options, csv_list
from gradparity.core.errors import UsageError
from gradparity.debug.request import REQUEST_KEYS, debug_backends

if TYPE_CHECKING:
    pass


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "debug", help="find the first wrong gradient of your own backprop or PyTorch model",
        description="Run your backpropagation(cache, Y, parameters) from FILE.py (or your "
        "nn.Sequential with --torch), the reference, torch and jax on one case; name the first "
        "quantity that diverges, what it explains, and why it is wrong.")
    p.add_argument("file", nargs="?", metavar="FILE.py",
                   help="a Python file with backpropagation(cache, Y, parameters) and, "
                   "optionally, forward(X, parameters) -> (AL, cache); or learner code of "
                   "another API family (see --api), unchanged")
    p.add_argument("--torch", metavar="MODULE:ATTR",
                   help="a PyTorch model to check instead: module:attr or file.py:attr "
                   "naming an nn.Module, a class or a factory (called with no arguments)")
    p.add_argument("--jax", metavar="MODULE:FN",
                   help="a JAX function fn(params, X) -> outputs (or loss(params, X, Y), "
                   "loss(params, batch)) to check instead")
    p.add_argument("--params", metavar="NAME",
                   help="--jax: the parameters in the function's file (a variable, or an "
                   "init function; default: params, or an init_*params* function)")
    p.add_argument("--loss", metavar="LOSS",
                   help="--torch/--jax: the training loss: a torch loss class "
                   "(CrossEntropyLoss, MSELoss(reduction='sum'), ...) or the name of a loss "
                   "object or function in the model's file (default: the one the file names)")
    p.add_argument("--sizes", metavar="N0,...,NL",
                   help="layer widths (default: from parameters/layer_dims in FILE.py, else "
                   "4,5,5,1)")
    p.add_argument("--activation", help="hidden activation (default: inferred from your "
                   "forward, else relu)")
    p.add_argument("--head", help="output activation + loss (default: inferred from your "
                   "forward, else sigmoid_bce; --torch: sigmoid_bce for one output, "
                   "softmax_ce for more)")
    p.add_argument("--loss-form", dest="loss_form", help="logits or probs (default: the "
                   "head's first)")
    p.add_argument("--dtype", help="float64 (default) or float32; --torch: the module's")
    p.add_argument("--batch", type=int, help="number of examples m (default 8)")
    p.add_argument("--seed", type=int, default=0, help="seed of the case's arrays (default 0)")
    p.add_argument("--backends", type=csv_list, action="extend", metavar="NAMES",
                   help="frameworks to run on the same case: torch,jax (the default; "
                   "with --torch: jax), or none")
    p.add_argument("--backprop", metavar="NAME", help="name of your backprop function "
                   "(default: backpropagation)")
    p.add_argument("--forward", metavar="NAME", help="name of your forward function (default: "
                   "forward or forward_propagation; 'none' to use the harness's)")
    p.add_argument("--out", metavar="PATH", help="write the full table: a .csv or .parquet "
                   "file, or a folder (table.csv, report.txt, environment.json)")
    p.add_argument("--timeout", type=float, default=60.0, metavar="SECONDS",
                   help="wall-clock limit of the session, which runs your code in a child "
                   "process (default 60); past it: exit 2 naming the line that was running")
    p.add_argument("--api", metavar="NAME", help="the API family of FILE.py: seed, dlai_deep, "
                   "dlai_2layer, nielsen or cs231n (default: recognised from its functions)")
    p.add_argument("--data", metavar="FILE", help="your X and Y: a .npz (X, Y), a pair "
                   "X.npy,Y.npy or a CSV (last column Y); their dtype is kept")
    p.add_argument("--definitions-only", dest="definitions_only", action="store_true",
                   help="import only the definitions of FILE.py (skip a training script at "
                   "its top level; done anyway when importing it takes too long)")
    p.add_argument("--rtol", type=float, help="relative tolerance (default: per dtype)")
    p.add_argument("--atol", type=float, help="absolute tolerance (default: per dtype)")
    p.set_defaults(handler=cmd_debug)


def _check_out(out: str | None) -> None:
    if out is None:
        return
    path = Path(out)
    if path.suffix == ".parquet":
        from gradparity.experiments.io import have_parquet

        if not have_parquet():
            raise UsageError(f"--out={out!r}: parquet needs pyarrow (pip install "
                             "'gradparity[report]'); use a .csv file or a folder")
    elif path.suffix and path.suffix != ".csv":
        raise UsageError(f"--out={out!r}: expected a .csv or .parquet file, or a folder")
    if path.exists() and path.is_dir() != (path.suffix == ""):
        raise UsageError(f"--out={out!r}: exists and is a {'folder' if path.is_dir() else 'file'}")
    from gradparity.experiments.io import check_output_file, check_output_folder

    if path.suffix:
        check_output_file(path)
    else:
        check_output_folder(path)


def _write(result, out: str) -> Path:
    from gradparity.experiments.io import (
        csv_writer,
        json_writer,
        parquet_writer,
        text_writer,
        write_file_atomically,
        write_folder_atomically,
    )

    df = result.table()
    path = Path(out)
    if path.suffix == ".csv":
        return write_file_atomically(path, csv_writer(df))
    if path.suffix == ".parquet":
        return write_file_atomically(path, parquet_writer(df))
    return write_folder_atomically(path, {
        "table.csv": csv_writer(df),
        "report.txt": text_writer(result.report()),
        "environment.json": json_writer(df.attrs.get("environment", {})),
    })


#: The options `compute` reads (the request the isolated child gets).
def cmd_debug(args: argparse.Namespace) -> int:
    """Check the options, run the session in a child process (`gradparity.debug.isolation`)
    and print its report; ``--out`` is resolved here, before user code runs, and written
    here."""
    _check(args)
    from gradparity.debug.isolation import run_isolated

    out = None if args.out is None else str(Path(args.out).resolve())
    request = {k: getattr(args, k) for k in REQUEST_KEYS}
    if args.data:  # resolved here, before user code can change the working directory
        request["data"] = ",".join(str(Path(p).resolve()) if p else p
                                   for p in str(args.data).split(","))
    what = (args.file if args.file is not None else f"--torch={args.torch}"
            if args.torch is not None else f"--jax={args.jax}")
    result = run_isolated(request, timeout=args.timeout, what=what)
    print(result.report(), end="")
    if out is not None:
        _write(result, out)
        print(f"table: {Path(args.out)}")
    return result.exit_code


def _check(args: argparse.Namespace) -> None:
    if sum(v is not None for v in (args.file, args.torch, args.jax)) != 1:
        raise UsageError("debug: give one of FILE.py (your backprop), --torch MODULE:ATTR or "
                         "--jax MODULE:FN")
    for flag in ("loss", "params"):
        if getattr(args, flag) is not None and args.file is not None:
            raise UsageError(f"--{flag}: used with --torch or --jax only")
    if args.batch is not None and args.batch < 1:
        raise UsageError(f"--batch={args.batch}: expected a positive integer")
    if args.seed < 0:
        raise UsageError(f"--seed={args.seed}: expected a non-negative integer")
    check_tolerance_options(args)
    t = args.timeout
    if not (isinstance(t, float) and 0.0 < t < float("inf")):
        raise UsageError(f"--timeout={t!r}: expected a positive number of seconds")
    debug_backends(args.backends, ())  # names checked before any user code runs
    _check_out(args.out)
