"""``refalign make-cases`` (issue: evaluation)."""

from __future__ import annotations

from refalign.cli._common import handle_errors
from refalign.errors import NotBuiltError


@handle_errors
def make_cases() -> None:
    """Build benchmark cases with synthetic artifacts from real photos (not built yet)."""
    raise NotBuiltError("`refalign make-cases` is not built yet in this version")
