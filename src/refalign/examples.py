"""A self-contained example the project can show without shipping third-party photos.

:func:`make_example` renders a procedural object (:mod:`refalign.data.procedural`: a mosaic of unique local
patterns with printed glyphs) in two views on different backgrounds. View A gets a synthetic generative artifact
(:mod:`refalign.eval.synth`: shuffled detail over a detailed part) and plays the generated image; view B is the
"real photo" reference. The clean view A is kept as the target, so the example can report how much refinement helped.
The objects come from a seed outside the range the default model was trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from refalign.data.procedural import render_view, textured_object
from refalign.eval.synth import apply_artifact, detail_map, free_form_mask, pick_detailed_location

EXAMPLE_SEED = 20250124


@dataclass
class Example:
    image: np.ndarray  # (H, W, 3) uint8, view A with the artifact
    mask: np.ndarray  # (H, W) bool, the artifact
    reference: np.ndarray  # (H, W, 3) uint8, view B
    reference_mask: np.ndarray  # (H, W) bool, the object in view B
    target: np.ndarray  # (H, W, 3) uint8, clean view A
    artifact_kind: str


def make_example(seed: int = EXAMPLE_SEED, *, size: int = 512, artifact_kind: str = "shuffled") -> Example:
    """Render the example deterministically from ``seed``; the artifact covers about 1.5–3 % of the image."""
    rng = np.random.default_rng(seed)
    texture, obj = textured_object(rng, size=size // 2)
    target, obj_a = render_view(texture, obj, rng, size, jitter=True)
    reference, obj_b = render_view(texture, obj, rng, size, jitter=True)
    radius = max(8, int(0.11 * size))
    centre = pick_detailed_location(detail_map(target, obj_a, radius), rng, top_fraction=0.2)
    mask = free_form_mask(target.shape[:2], centre, radius, rng) & obj_a
    image = apply_artifact(artifact_kind, target, mask, rng)
    return Example(image=image, mask=mask, reference=reference, reference_mask=obj_b, target=target,
                   artifact_kind=artifact_kind)
