"""The Refine-by-Align pipeline (alignment + refinement) and its checkpoint format."""
