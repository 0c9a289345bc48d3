"""``inception-deploy``: one command, one subcommand per stage.

Stages register their subcommands from their own package (``<package>/cli.py``, a
``register(subparsers)`` function), imported lazily so that the device-side commands never
import torch. Every error the user can fix prints one ``error:`` line and exits with the code
documented in :mod:`pipeline.errors` (:func:`pipeline.command.run`).
"""
import argparse
import sys
from typing import List, Optional

from inception_deploy.pipeline import command

STAGE_CLIS = ("inception_deploy.pipeline.export_cli", "inception_deploy.calibration.cli", "inception_deploy.engines.cli",
              "inception_deploy.benchmarks.cli", "inception_deploy.benchmarks.runtime_cli")
DESCRIPTION = ("Take a trained PyTorch (timm) classifier to ONNX, INT8/FP16, TensorRT engines, "
               "and prove what was lost.")


def build_parser() -> argparse.ArgumentParser:
    """Every stage package this install ships (:func:`pipeline.command.build_parser`)."""
    return command.build_parser(STAGE_CLIS, "inception-deploy", DESCRIPTION)


def main(argv: Optional[List[str]] = None) -> int:
    """``inception-deploy``: every stage's subcommands."""
    return command.run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
