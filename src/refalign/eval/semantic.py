"""The paper's semantic scores (§4.1, Table 1) through ``transformers``.

* **CLIP-I** — cosine similarity ×100 of CLIP image embeddings of the refined region and the matching reference
  region.
* **DINO** — the same with the DINOv2 CLS (pooled) feature.
* **CLIP-T** — CLIP score ×100 between the refined region and a caption; as in the paper the caption comes from
  BLIP-2 (here: the caption of the matching reference region, i.e. what the region should show).

Weights are loaded with ``from_pretrained`` from what the user gives (a local folder saved with ``save_pretrained``
or a hub id): ``CLIPModel`` + its image processor and tokenizer, ``AutoModel`` (e.g. ``Dinov2Model``) + image
processor, ``Blip2ForConditionalGeneration`` + ``AutoProcessor``. A score whose weights were not given is skipped
with one logged line.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from refalign.errors import InputError
from refalign.eval.metrics import cosine_score

logger = logging.getLogger(__name__)


@dataclass
class SemanticConfig:
    """Where the scoring models come from (``None`` = skip that score)."""

    clip: str | None = None
    dino: str | None = None
    blip: str | None = None
    device: str = "cpu"
    max_caption_tokens: int = 30


def _load(what: str, option: str, path: str, fn):
    try:
        return fn()
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError... name the source and the fix
        raise InputError(
            f"{option} {path}: could not load the {what} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}); "
            "give a folder saved with save_pretrained or a hub id"
        ) from None


def _features(out):
    """``get_*_features`` return a tensor in older transformers and a model output (projected ``pooler_output``)
    in newer ones."""
    return out if hasattr(out, "shape") else out.pooler_output


class SemanticScorer:
    """Loads the models once and scores regions. Images are ``(H, W, 3) uint8`` arrays."""

    def __init__(self, config: SemanticConfig | None = None):
        import torch  # noqa: F401  (heavy import only when scoring is wanted)

        self.config = cfg = config or SemanticConfig()
        self.clip = self.clip_processor = self.clip_tokenizer = None
        self.dino = self.dino_processor = None
        self.blip = self.blip_processor = None
        if cfg.clip:
            from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

            self.clip = _load("CLIP model", "--clip", cfg.clip, lambda: CLIPModel.from_pretrained(cfg.clip).to(cfg.device).eval())
            self.clip_processor = _load("CLIP image processor", "--clip", cfg.clip, lambda: AutoImageProcessor.from_pretrained(cfg.clip))
            self.clip_tokenizer = _load("CLIP tokenizer", "--clip", cfg.clip, lambda: AutoTokenizer.from_pretrained(cfg.clip))
        else:
            logger.info("CLIP-I and CLIP-T skipped: no CLIP weights given (--clip PATH or hub id)")
        if cfg.dino:
            from transformers import AutoImageProcessor, AutoModel

            self.dino = _load("DINO model", "--dino", cfg.dino, lambda: AutoModel.from_pretrained(cfg.dino).to(cfg.device).eval())
            self.dino_processor = _load("DINO image processor", "--dino", cfg.dino, lambda: AutoImageProcessor.from_pretrained(cfg.dino))
        else:
            logger.info("DINO score skipped: no DINOv2 weights given (--dino PATH or hub id)")
        if cfg.blip:
            from transformers import AutoProcessor, Blip2ForConditionalGeneration

            self.blip = _load("BLIP-2 model", "--blip", cfg.blip,
                              lambda: Blip2ForConditionalGeneration.from_pretrained(cfg.blip).to(cfg.device).eval())
            self.blip_processor = _load("BLIP-2 processor", "--blip", cfg.blip, lambda: AutoProcessor.from_pretrained(cfg.blip))
        elif cfg.clip:
            logger.info("CLIP-T skipped: no BLIP-2 weights given to caption with (--blip PATH or hub id)")

    @property
    def enabled(self) -> bool:
        return self.clip is not None or self.dino is not None

    def _pixels(self, processor, images: list[np.ndarray]):
        return processor(images=images, return_tensors="pt")["pixel_values"].to(self.config.device)

    def clip_image_features(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.no_grad():
            feats = _features(self.clip.get_image_features(pixel_values=self._pixels(self.clip_processor, images)))
        return feats.float().cpu().numpy()

    def clip_text_features(self, texts: list[str]) -> np.ndarray:
        import torch

        limit = int(self.clip.config.text_config.max_position_embeddings)
        tok = self.clip_tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
        with torch.no_grad():
            feats = _features(self.clip.get_text_features(input_ids=tok["input_ids"].to(self.config.device),
                                                          attention_mask=tok["attention_mask"].to(self.config.device)))
        return feats.float().cpu().numpy()

    def dino_features(self, images: list[np.ndarray]) -> np.ndarray:
        import torch

        with torch.no_grad():
            out = self.dino(pixel_values=self._pixels(self.dino_processor, images))
        pooled = getattr(out, "pooler_output", None)
        feats = pooled if pooled is not None else out.last_hidden_state[:, 0]
        return feats.float().cpu().numpy()

    def caption(self, image: np.ndarray) -> str:
        """BLIP-2 caption of an image (greedy decoding)."""
        import torch

        inputs = self.blip_processor(images=[image], return_tensors="pt").to(self.config.device)
        with torch.no_grad():
            ids = self.blip.generate(**inputs, max_new_tokens=self.config.max_caption_tokens, do_sample=False)
        return self.blip_processor.batch_decode(ids, skip_special_tokens=True)[0].strip()

    def score(self, refined_region: np.ndarray, reference_region: np.ndarray) -> dict:
        """``clip_i``, ``dino``, ``clip_t`` and ``caption`` for one case (keys of skipped scores are absent)."""
        result: dict = {}
        if self.clip is not None:
            a, b = self.clip_image_features([refined_region, reference_region])
            result["clip_i"] = cosine_score(a, b)
        if self.dino is not None:
            a, b = self.dino_features([refined_region, reference_region])
            result["dino"] = cosine_score(a, b)
        if self.clip is not None and self.blip is not None:
            caption = self.caption(reference_region)
            result["caption"] = caption
            if not caption:  # nothing to score against; CLIP-T stays unmeasured for this case
                logger.debug("BLIP-2 returned an empty caption; CLIP-T not measured")
                return result
            # CLIPScore (Hessel et al. 2021) without its 2.5 rescaling, clipped at 0, as commonly reported ×100
            result["clip_t"] = max(0.0, cosine_score(self.clip_image_features([refined_region])[0],
                                                     self.clip_text_features([caption])[0]))
        return result
