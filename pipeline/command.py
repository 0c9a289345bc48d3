"""The one command runner: a parser from stage modules' ``register(subparsers)`` functions, and
:func:`run`, the one place where errors become exit codes (:mod:`pipeline.errors`).

Serves ``inception-deploy`` (:mod:`pipeline.cli`, every stage) and ``python -m inception_deploy.engines`` (a
deploy bundle's builder on a device). Device-side: standard library only, Python 3.8.
"""
import argparse
import importlib
import os
import sys
from typing import List, Optional, Sequence

from inception_deploy.pipeline.errors import EXIT_BAD_INPUT, EXIT_INTERNAL, UserError

EPILOG = ("exit codes: 0 ok, 1 a check failed (parity, accuracy budget, gate), 2 unusable input, "
          "3 unsupported on this host (e.g. no TensorRT), 4 internal error")


def build_parser(stages: Sequence[str], prog: str, description: str) -> argparse.ArgumentParser:
    """The parser with the subcommands of ``stages`` (modules with a ``register(subparsers)``);
    a stage package this install does not ship is left out."""
    parser = argparse.ArgumentParser(prog=prog, description=description, epilog=EPILOG)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in stages:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:  # a stage package this install does not ship
            if e.name == name:
                continue
            raise
        module.register(sub)
    return parser


def run(parser: argparse.ArgumentParser, argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` and run the chosen subcommand: the one place errors become exit codes
    (``UserError``: its ``error:`` line and code; a bug: one ``internal error`` line, exit 4)."""
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_BAD_INPUT
    try:
        result = args.func(args)
        return int(result or 0)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug, not bad input: one line, traceback on request
        if os.environ.get("INCEPTION_DEPLOY_DEBUG"):
            raise
        print(f"internal error: {type(e).__name__}: {e} (set INCEPTION_DEPLOY_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_INTERNAL
