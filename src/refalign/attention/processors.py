"""Attention processors that read cross-attention for the alignment stage (paper Algorithm 1).

:func:`capture_cross_attention` swaps the diffusers processor of ONLY the cross-attention layers a
:class:`~refalign.attention.CrossAttentionStore` reads, and restores the originals in ``finally`` — every other layer
keeps its fused scaled-dot-product kernel. The capture processor computes the same output as diffusers'
``AttnProcessor2_0`` but materialises the probabilities one block of query rows at a time, folds each block into the
eq. 5 sum (:func:`~refalign.attention.aggregate.correspondence_from_probs`) and drops it: peak extra memory is one
block, never a layer's full ``(d·d) × N`` map.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import torch

from refalign.attention.aggregate import attention_probabilities, correspondence_from_probs
from refalign.attention.store import CrossAttentionStore
from refalign.models.unet import cross_attention_layer_names

logger = logging.getLogger(__name__)

#: Largest probability block (elements, B·heads·rows·tokens) materialised at once: 1 Mi floats = 4 MiB.
DEFAULT_BLOCK_ELEMENTS = 1 << 20


class AlignmentCaptureProcessor:
    """Cross-attention processor that also accumulates paper eq. 5 into a store.

    Args:
        store: receives the finished ``(B, N)`` map of this layer at the store's current step.
        layer: the layer's index in :func:`~refalign.pipelines.summary.cross_attention_layer_names` order.
        block_elements: cap on the size of a materialised probability block (see :data:`DEFAULT_BLOCK_ELEMENTS`).
    """
    def __init__(self, store: CrossAttentionStore, layer: int, block_elements: int = DEFAULT_BLOCK_ELEMENTS):
        self.store = store
        self.layer = int(layer)
        self.block_elements = int(block_elements)

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        *args,
        **kwargs,
    ) -> torch.Tensor:
        if encoder_hidden_states is None:
            raise RuntimeError(f"layer {self.layer}: the capture processor is for cross-attention (attn2) only")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch_size, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch_size, channel, height * width).transpose(1, 2)
        batch_size, num_queries, _ = hidden_states.shape
        num_tokens = encoder_hidden_states.shape[1]

        bias = None
        if attention_mask is not None:
            bias = attn.prepare_attention_mask(attention_mask, num_tokens, batch_size)
            bias = bias.view(batch_size, attn.heads, -1, bias.shape[-1])
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)

        query = attn.to_q(hidden_states)
        if attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        head_dim = key.shape[-1] // attn.heads
        query = query.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        key = key.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        value = value.view(batch_size, -1, attn.heads, head_dim).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        weights = self.store.query_weights(num_queries, batch_size, query.device)
        rows = max(1, self.block_elements // max(1, batch_size * attn.heads * num_tokens))
        outputs = []
        total = None
        for start in range(0, num_queries, rows):
            stop = min(num_queries, start + rows)
            block_bias = None if bias is None else bias[:, :, start:stop] if bias.shape[2] > 1 else bias
            probs = attention_probabilities(query[:, :, start:stop], key, attn.scale, block_bias)
            part = correspondence_from_probs(probs, weights[:, start:stop])
            total = part if total is None else total + part
            outputs.append(torch.matmul(probs.to(value.dtype), value))
            del probs
        self.store.add(self.layer, total)

        hidden_states = torch.cat(outputs, dim=2) if len(outputs) > 1 else outputs[0]
        hidden_states = hidden_states.transpose(1, 2).reshape(batch_size, -1, attn.heads * head_dim)
        hidden_states = hidden_states.to(query.dtype)
        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)
        if input_ndim == 4:
            hidden_states = hidden_states.transpose(-1, -2).reshape(batch_size, channel, height, width)
        if attn.residual_connection:
            hidden_states = hidden_states + residual
        return hidden_states / attn.rescale_output_factor


def resolve_layers(unet, layers) -> list[tuple[int, str]]:
    """``[(index, module name)]`` of the cross-attention layers to read; an index out of range is a ``ValueError``."""
    names = cross_attention_layer_names(unet)
    if not names:
        raise ValueError("this U-Net has no cross-attention layers (attn2) to read")
    chosen = range(len(names)) if layers is None else layers
    out = []
    for i in chosen:
        if not 0 <= int(i) < len(names):
            raise ValueError(
                f"layer {i} does not exist: this U-Net has {len(names)} cross-attention layers (0-{len(names) - 1})"
            )
        out.append((int(i), names[int(i)]))
    return out


@contextlib.contextmanager
def capture_cross_attention(
    unet, store: CrossAttentionStore, block_elements: int = DEFAULT_BLOCK_ELEMENTS
) -> Iterator[CrossAttentionStore]:
    """Install :class:`AlignmentCaptureProcessor` on the layers ``store`` reads, for the duration of the block.

    Only those layers' processors change; the originals are put back in ``finally``, also when the block raises.
    Usage::

        store = CrossAttentionStore(query_mask, layers=[9])
        with capture_cross_attention(unet, store):
            store.set_step(0)
            unet(...)
        store.maps[(0, 9)]  # (B, num_tokens)
    """
    chosen = resolve_layers(unet, store.layers)
    originals = []
    try:
        for index, name in chosen:
            module = unet.get_submodule(name)
            originals.append((module, module.processor))
            module.set_processor(AlignmentCaptureProcessor(store, index, block_elements))
            store.layer_names[index] = name
        logger.debug("capturing cross-attention of %d layer(s)", len(chosen))
        yield store
    finally:
        for module, processor in reversed(originals):
            module.set_processor(processor)
