"""``refalign align`` and ``refalign align-search`` (issue: alignment stage)."""

from __future__ import annotations

from refalign.cli._common import handle_errors
from refalign.errors import NotBuiltError


@handle_errors
def align() -> None:
    """Find the region of the reference that matches the masked artifact (not built yet)."""
    raise NotBuiltError("`refalign align` is not built yet in this version")


@handle_errors
def align_search() -> None:
    """Grid-search the diffusion step and layer that align best on a set of cases (not built yet)."""
    raise NotBuiltError("`refalign align-search` is not built yet in this version")
