"""Cross-attention reading for the alignment stage (paper Algorithm 1, eq. 5, §A.4).

* :class:`CrossAttentionStore` + :func:`capture_cross_attention` — capture eq. 5 maps during U-Net passes;
* :mod:`~refalign.attention.aggregate` — the pure eq. 5 maths;
* :mod:`~refalign.attention.postprocess` — noise-peak removal, largest blob, upsampling → ``M*`` (§A.4);
* :func:`correspondence_overlay` — a Fig. 6-style picture.
"""

from refalign.attention.aggregate import correspondence_from_probs, resize_query_mask, token_map
from refalign.attention.overlay import correspondence_overlay
from refalign.attention.postprocess import PostprocessResult, postprocess_map, upsample_to_reference
from refalign.attention.processors import AlignmentCaptureProcessor, capture_cross_attention, resolve_layers
from refalign.attention.store import CrossAttentionStore

__all__ = [
    "AlignmentCaptureProcessor",
    "CrossAttentionStore",
    "PostprocessResult",
    "capture_cross_attention",
    "correspondence_from_probs",
    "correspondence_overlay",
    "postprocess_map",
    "resize_query_mask",
    "resolve_layers",
    "token_map",
    "upsample_to_reference",
]
