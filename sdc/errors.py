"""Errors sdc reports to users. Each carries the exit code the CLI returns.

Exit codes (see README): 0 success, 1 usage error, 2 bad input.
Messages are one line, meant to be printed as-is after "sdc: error: ".
"""
from __future__ import annotations


class SdcError(Exception):
    """Base of every error sdc reports to the user without a traceback."""

    exit_code = 2


class UsageError(SdcError):
    """The command line asks for something inconsistent or impossible."""

    exit_code = 1


class BadInputError(SdcError):
    """An input file or stream is unreadable, damaged or not what it claims."""

    exit_code = 2


class FormatError(BadInputError):
    """An .sdc byte stream violates spec/FORMAT.md.

    `chunk` names the damaged chunk (e.g. "header", "L2") when known.
    """

    def __init__(self, message: str, chunk: str | None = None):
        super().__init__(message)
        self.chunk = chunk


class CodecMismatchError(BadInputError):
    """The file was made with other codec weights than the ones loaded."""
