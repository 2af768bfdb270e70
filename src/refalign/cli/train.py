"""``refalign train`` (issue: training)."""

from __future__ import annotations

from refalign.cli._common import handle_errors
from refalign.errors import NotBuiltError


@handle_errors
def train() -> None:
    """Train a refiner in both modes of paper §3.4 (not built yet)."""
    raise NotBuiltError("`refalign train` is not built yet in this version")
