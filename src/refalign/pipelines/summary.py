"""A plain summary of a checkpoint (``refalign info``)."""

from __future__ import annotations

from typing import Any

from refalign.models.unet import cross_attention_layer_names
from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline


def summarize_checkpoint(path: str) -> dict[str, Any]:
    """What ``refalign info`` prints: components and their sizes, the settings of ``refalign.json``."""
    pipe = RefineByAlignPipeline.from_pretrained(path)
    comps: dict[str, Any] = {}
    total = 0
    for name, module in pipe.components.items():
        if hasattr(module, "parameters"):
            n = sum(p.numel() for p in module.parameters())
            total += n
        else:
            n = None
        comps[name] = {"class": type(module).__name__, "parameters": n}
    cfg = pipe.refalign_config
    return {
        "path": str(path),
        "preset": cfg.preset,
        "resolution": cfg.resolution,
        "components": comps,
        "total_parameters": total,
        "alignment": cfg.to_dict()["alignment"],
        "refinement": cfg.to_dict()["refinement"],
        "num_cross_attention_layers": len(cross_attention_layer_names(pipe.unet)),
        "token_grid": list(pipe.reference_encoder.token_grid),
        "prediction_type": pipe.scheduler.config.get("prediction_type")
        + (" as a correction over the masked input" if pipe.residual_prediction else ""),
        "timestep_spacing": pipe.scheduler.config.get("timestep_spacing"),
        "masked_fill": cfg.masked_fill,
        "warped_guidance": pipe.uses_warped_guidance,
        "training": cfg.training,
    }
