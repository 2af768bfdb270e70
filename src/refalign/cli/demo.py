"""``refalign demo`` (issue: web demo)."""

from __future__ import annotations

from refalign.cli._common import handle_errors
from refalign.errors import NotBuiltError


@handle_errors
def demo() -> None:
    """Launch the web demo (not built yet)."""
    raise NotBuiltError("`refalign demo` is not built yet in this version")
