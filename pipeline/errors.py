"""User-facing errors: one line naming what was expected and the way out, never a traceback.

Exit codes are shared by every subcommand (documented in the README):
0 success, 1 the check ran and failed (parity, accuracy budget, gate regression),
2 unusable input (bad arguments, missing or mismatched files), 3 missing dependency or
unsupported platform for the request (e.g. no TensorRT here), 4 internal error (a bug).
"""

from typing import Optional

EXIT_OK = 0
EXIT_CHECK_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_UNSUPPORTED = 3
EXIT_INTERNAL = 4


class UserError(Exception):
    """An error the user can fix; the CLI prints ``error: <message>`` and exits with ``exit_code``."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, exit_code: "Optional[int]" = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class CheckFailed(UserError):
    """A measurement ran and broke its limit (parity tolerance, accuracy budget, gate)."""

    exit_code = EXIT_CHECK_FAILED


class Unsupported(UserError):
    """The request needs something this host does not have (a dependency, TensorRT, a GPU)."""

    exit_code = EXIT_UNSUPPORTED
