"""Errors a user can act on.

Every entry point turns a :class:`RefalignError` into one line on stderr and exit code 2 (DESIGN §5); anything
else is a bug and keeps its traceback.
"""


class RefalignError(Exception):
    """Base class of errors caused by the user's input, each with a message that says what and how to fix it."""


class InputError(RefalignError, ValueError):
    """A bad input file or argument (missing, unreadable, wrong size, empty mask, ...)."""


class OutputError(RefalignError):
    """An output path that cannot be written (exists without ``--overwrite``, missing directory)."""


class CheckpointError(RefalignError):
    """A model folder that is missing parts or is corrupt; the message names the bad file."""


class NotBuiltError(RefalignError):
    """A command that this version of refalign does not provide yet."""
