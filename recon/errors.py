"""The named errors of recon, and the exit code each one means.

    ReconError                 base: message for a person, exit code for a script
    ├── UsageError             bad options or settings (exit 2, nothing sent)
    ├── InputError             the input file cannot be read (exit 2, nothing sent)
    │   └── InvalidInput       the file was read but rows break the rules (exit 2)
    ├── JournalError           the journal cannot be used safely (exit 2)
    └── StoppedEarly           the batch stopped before the end (exit 3, resumable)
        └── Unauthorized       the provider refused the credentials (exit 3)

`cli.main` is the one place that turns these into messages and exit codes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from recon.schema import Rejection

# The exit-code contract of DESIGN.md.
OK = 0
EXCEPTIONS = 1
BAD_INPUT = 2
STOPPED = 3


class ReconError(Exception):
    """Base of every error recon reports to a person."""

    exit_code = BAD_INPUT


class UsageError(ReconError):
    """Options or settings that cannot work together."""


class InputError(ReconError):
    """The input file cannot be read as a table of orders."""


class InvalidInput(InputError):
    """The input was read, but some rows break the rules; nothing was sent."""

    def __init__(self, message: str, rejections: list[Rejection]) -> None:
        super().__init__(message)
        self.rejections = rejections


class JournalError(ReconError):
    """The journal is damaged or belongs to something else; using it could capture twice."""


class StoppedEarly(ReconError):
    """The batch stopped before every order had its turn; the same command resumes it."""

    exit_code = STOPPED


class Unauthorized(StoppedEarly):
    """The provider answered 401: a credential is wrong, nothing else will pass."""
