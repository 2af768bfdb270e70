"""``refalign bench`` (issue: evaluation)."""

from __future__ import annotations

from refalign.cli._common import handle_errors
from refalign.errors import NotBuiltError


@handle_errors
def bench() -> None:
    """Run a method over a folder of cases and report the paper's metrics (not built yet)."""
    raise NotBuiltError("`refalign bench` is not built yet in this version")
