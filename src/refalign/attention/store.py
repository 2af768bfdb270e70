"""Where captured correspondence maps go: one ``(B, N)`` eq. 5 map per ``(step, layer)``.

The store never holds attention probabilities: the capture processors hand it partial sums of eq. 5 as they compute
each block of query rows, and it keeps only the result. The pipeline tells it which diffusion step it is on
(:meth:`CrossAttentionStore.set_step`); it never infers steps from call counts, so extra U-Net calls (guidance,
training tricks) cannot shift the numbering.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from refalign.attention.aggregate import query_grid_shape, resize_query_mask


class CrossAttentionStore:
    """Collects paper eq. 5 maps ``M^{t,l}`` during U-Net passes.

    Args:
        query_mask: ``(B, 1, H, W)`` float, 1 = artifact, on the U-Net input's grid (any resolution with the input's
            aspect: pixels, latent). Each layer resizes it to its own ``d × d`` query grid (area weights).
        layers: indices into :func:`refalign.pipelines.summary.cross_attention_layer_names` to read (``None`` = all).
        keep_grad: keep the maps in the autograd graph (for an auxiliary alignment loss in training); otherwise they
            are detached as they are produced.

    After the passes, ``maps[(step, layer)]`` is a ``(B, num_tokens)`` tensor; ``layer_names[layer]`` is the module
    it was read from (filled by :func:`~refalign.attention.capture_cross_attention`).
    """

    def __init__(self, query_mask: torch.Tensor, layers: Iterable[int] | None = None, keep_grad: bool = False):
        if not isinstance(query_mask, torch.Tensor) or query_mask.ndim != 4 or query_mask.shape[1] != 1:
            shape = tuple(query_mask.shape) if isinstance(query_mask, torch.Tensor) else type(query_mask).__name__
            raise ValueError(f"query_mask must be a (B, 1, H, W) tensor; got {shape}")
        self.query_mask = query_mask
        self.layers = None if layers is None else sorted({int(i) for i in layers})
        self.keep_grad = bool(keep_grad)
        self.step: int | None = None
        self.maps: dict[tuple[int, int], torch.Tensor] = {}
        self.layer_names: dict[int, str] = {}
        self._weights: dict[tuple[int, tuple, torch.device], torch.Tensor] = {}

    # ------------------------------------------------------------------ driven by the pipeline
    def set_step(self, step: int) -> None:
        """Declare the diffusion step (index into the sampler's schedule) of the next U-Net pass."""
        self.step = int(step)

    def reset(self) -> None:
        """Forget every captured map (keeps the mask and layer selection)."""
        self.maps.clear()
        self.step = None

    # ------------------------------------------------------------------ used by the processors
    def query_weights(self, num_queries: int, batch_size: int, device: torch.device) -> torch.Tensor:
        """The artifact mask resized to a layer's query grid, flattened: ``(B, num_queries)`` (cached per grid)."""
        b = self.query_mask.shape[0]
        if b not in (1, batch_size):
            raise ValueError(
                f"the U-Net batch has {batch_size} samples but query_mask has {b}; alignment reads one conditional "
                "pass (no classifier-free-guidance batch) — give one mask per sample"
            )
        key = (num_queries, (b, batch_size), device)
        if key not in self._weights:
            grid = query_grid_shape(num_queries, tuple(self.query_mask.shape[-2:]))
            w = resize_query_mask(self.query_mask.to(device), grid)
            if b != batch_size:
                w = w.expand(batch_size, -1)
            self._weights[key] = w if self.keep_grad else w.detach()
        return self._weights[key]

    def current_step(self) -> int:
        if self.step is None:
            raise RuntimeError("CrossAttentionStore: call store.set_step(i) before the U-Net pass")
        return self.step

    def add(self, layer: int, correspondence: torch.Tensor) -> None:
        """Record the finished eq. 5 map of ``layer`` at the current step."""
        key = (self.current_step(), int(layer))
        if key in self.maps:
            raise RuntimeError(
                f"CrossAttentionStore: step {key[0]}, layer {key[1]} was already captured; call set_step() with the "
                "next step (or reset()) before another U-Net pass"
            )
        self.maps[key] = correspondence if self.keep_grad else correspondence.detach()

    # ------------------------------------------------------------------ reading
    def stacked(self, step: int) -> torch.Tensor:
        """All captured layers of ``step`` as ``(num_layers_read, B, num_tokens)``, in layer order."""
        layers = sorted(layer for (s, layer) in self.maps if s == step)
        if not layers:
            raise KeyError(f"no maps captured at step {step}")
        return torch.stack([self.maps[(step, layer)] for layer in layers])
