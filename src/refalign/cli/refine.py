"""``refalign refine``: both stages on one image or a folder of cases (issue: refinement stage)."""

from __future__ import annotations

from refalign.cli._common import handle_errors
from refalign.errors import NotBuiltError


@handle_errors
def refine() -> None:
    """Refine the masked artifact of an image from a reference photo (not built yet)."""
    raise NotBuiltError("`refalign refine` is not built yet in this version")
