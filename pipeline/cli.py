"""``inception-deploy``: one command, one subcommand per stage.

Stages register their subcommands from their own package (``<package>/cli.py``, a
``register(subparsers)`` function), imported lazily so that the device-side commands never
import torch. Every error the user can fix prints one ``error:`` line and exits with the code
documented in :mod:`pipeline.errors`.
"""
import argparse
import importlib
import os
import sys
from typing import List, Optional, Sequence

from pipeline.errors import EXIT_BAD_INPUT, UserError

STAGE_CLIS = ("pipeline.export_cli", "calibration.cli", "engines.cli", "benchmarks.cli")
INTERNAL_ERROR = 4


DESCRIPTION = ("Take a trained PyTorch (timm) classifier to ONNX, INT8/FP16, TensorRT engines, "
               "and prove what was lost.")
EPILOG = ("exit codes: 0 ok, 1 a check failed (parity, accuracy budget, gate), 2 unusable input, "
          "3 unsupported on this host (e.g. no TensorRT), 4 internal error")


def build_parser(stages: Sequence[str] = STAGE_CLIS, prog: str = "inception-deploy",
                 description: str = DESCRIPTION) -> argparse.ArgumentParser:
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
        return INTERNAL_ERROR


def main(argv: Optional[List[str]] = None) -> int:
    """``inception-deploy``: every stage's subcommands."""
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
