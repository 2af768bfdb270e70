"""Pure maths of the alignment stage: paper eq. 5 and the tensor bookkeeping around it.

Paper §3.2–3.3: in a cross-attention layer whose queries form a ``d × d`` grid, the attention probabilities are
``A ∈ R^{(d·d) × N}`` (``N`` reference tokens, eq. 4). The correspondence map of the artifact at step ``t`` and
layer ``l`` is (eq. 5)

    ``M^{t,l} = Σ_{i,j} M_a[i, j] · A[i, j, :]``

with ``A`` averaged over heads and ``M_a`` (the artifact mask) resized to ``d × d``. These functions do exactly that
on tensors and nothing else; the capture processors feed them one chunk of query rows at a time, so a full
``(d·d) × N`` map is never kept.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def query_grid_shape(num_queries: int, mask_hw: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` query grid of a layer with ``num_queries`` positions, for inputs with the aspect of ``mask_hw``.

    U-Net feature maps keep the input's aspect ratio (each level halves both sides), so ``h · w = num_queries`` and
    ``h / w = H / W``. Raises ``ValueError`` when no integer grid fits (the mask does not match the U-Net input).
    """
    mh, mw = mask_hw
    best = None
    for w in range(1, num_queries + 1):
        if num_queries % w:
            continue
        h = num_queries // w
        err = abs(math.log((h / w) / (mh / mw)))
        if best is None or err < best[0]:
            best = (err, h, w)
    if best is None or best[0] > math.log(2.0):
        raise ValueError(f"a layer with {num_queries} query positions has no grid with the aspect of a {mh}x{mw} mask")
    return best[1], best[2]


def resize_query_mask(query_mask: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Resize an artifact mask ``(B, 1, H, W)`` to a layer's query grid and flatten it row-major: ``(B, h·w)``.

    Area interpolation: each query cell is weighted by the fraction of its area under the artifact, so eq. 5's
    ``M_a[i, j]`` is exact when the mask is already at the grid's size and degrades gracefully (no cell flips from 0
    to 1) when a thin mask is shrunk. Upsampling (mask smaller than the grid) uses nearest neighbour.
    """
    if query_mask.ndim != 4 or query_mask.shape[1] != 1:
        raise ValueError(f"query_mask must be (B, 1, H, W); got {tuple(query_mask.shape)}")
    m = query_mask.float()
    h, w = grid_hw
    if tuple(m.shape[-2:]) != (h, w):
        if m.shape[-2] >= h and m.shape[-1] >= w:
            m = F.adaptive_avg_pool2d(m, (h, w))
        else:
            m = F.interpolate(m, size=(h, w), mode="nearest")
    return m.flatten(1)


def attention_probabilities(
    query: torch.Tensor, key: torch.Tensor, scale: float, bias: torch.Tensor | None = None
) -> torch.Tensor:
    """Softmax attention probabilities (paper eq. 4) in float32: ``softmax(scale · Q Kᵀ + bias)``.

    ``query``: ``(B, heads, Q, d)``; ``key``: ``(B, heads, N, d)``; returns ``(B, heads, Q, N)``.
    """
    scores = torch.matmul(query.float() * scale, key.float().transpose(-1, -2))
    if bias is not None:
        scores = scores + bias.float()
    return scores.softmax(dim=-1)


def correspondence_from_probs(probs: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Paper eq. 5 for one block of query rows: head-averaged probabilities summed over queries weighted by the mask.

    Args:
        probs: ``(B, heads, Q, N)`` attention probabilities (rows sum to 1 over ``N``).
        weights: ``(B, Q)`` or ``(1, Q)`` — the resized artifact mask at those query positions.

    Returns:
        ``(B, N)``: ``Σ_q weights[q] · mean_h probs[h, q, :]``. Summing the results of disjoint query blocks gives the
        eq. 5 map of the whole layer.
    """
    if probs.ndim != 4:
        raise ValueError(f"probs must be (B, heads, Q, N); got {tuple(probs.shape)}")
    w = weights.to(probs.dtype)
    if w.shape[0] == 1 and probs.shape[0] != 1:
        w = w.expand(probs.shape[0], -1)
    # (B, 1, 1, Q) @ (B, heads, Q, N): a batched matrix-vector product that reads probs once, without copying it
    return torch.matmul(w[:, None, None, :], probs).squeeze(2).mean(dim=1)


def token_map(flat: torch.Tensor, grid_hw: tuple[int, int]) -> torch.Tensor:
    """Arrange a ``(..., N)`` map over reference tokens on the patch grid ``(..., h, w)``.

    Token order (fixed by :class:`~refalign.models.reference_encoder.ReferenceEncoder`): the ``h·w`` patch tokens
    first, row-major, then an optional CLS token, which has no place on the grid and is dropped.
    """
    h, w = grid_hw
    if flat.shape[-1] < h * w:
        raise ValueError(f"map has {flat.shape[-1]} tokens; the {h}x{w} grid needs at least {h * w}")
    return flat[..., : h * w].reshape(*flat.shape[:-1], h, w)
