"""Shared fixtures: tiny seeded components in the style of diffusers' ``get_dummy_components``.

The dummy model is far smaller than the ``tiny`` preset so a 2-step pipeline runs in well under a second; it keeps
the shapes that matter (a 16×16 reference-token grid is ``token_grid=(16, 16)`` only in the real presets; here it is
8×8 to stay fast — tests that need the real grid build the ``tiny`` preset).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DREAMBOOTH = Path(os.environ.get("REFALIGN_DEV_DATA", SHARED_DATA / "dreambooth-dev"))


def get_dummy_components(seed: int = 0, resolution: int = 32) -> dict:
    """A tiny inpainting U-Net (cross-attention at two levels), a pixel-unshuffle codec, a 2-layer DINOv2 with an
    8×8 token grid, and DDIM — all seeded."""
    from refalign.models.presets import build_components

    comps = build_components(
        "tiny",
        seed=seed,
        unet={
            "sample_size": resolution // 2,
            "block_out_channels": (16, 32, 32),
            "attention_head_dim": 8,
            "norm_num_groups": 8,
            "cross_attention_dim": 32,
        },
        dinov2={"image_size": 32, "patch_size": 4, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2},
    )
    return comps


def make_dummy_pipeline(seed: int = 0, resolution: int = 32):
    from refalign.pipelines.config import RefalignConfig
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline

    comps = get_dummy_components(seed, resolution)
    res = comps.pop("resolution")
    cfg = RefalignConfig(preset="tiny", resolution=res)
    cfg.alignment.layer = 3
    cfg.alignment.num_inference_steps = 2
    cfg.refinement.num_inference_steps = 2
    pipe = RefineByAlignPipeline(**comps, refalign_config=cfg)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def dummy_pipeline():
    return make_dummy_pipeline()


@pytest.fixture(scope="session")
def dummy_checkpoint(tmp_path_factory) -> Path:
    """A saved dummy checkpoint folder (read-only for tests: copy it before changing anything)."""
    path = tmp_path_factory.mktemp("ckpt") / "dummy-model"
    make_dummy_pipeline().save_pretrained(path)
    return path


def synthetic_scene(size: int = 96, seed: int = 0) -> dict:
    """A textured object on a plain background, a mask on the object, and a reference (the same object, shifted).
    Returns uint8 images and bool masks."""
    rng = np.random.default_rng(seed)
    h = w = size
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.full((h, w, 3), 235, np.uint8)
    obj = ((yy - h / 2) ** 2 / (0.35 * h) ** 2 + (xx - w / 2) ** 2 / (0.3 * w) ** 2) < 1
    tex = (np.sin(xx / 3.0) * 60 + np.cos(yy / 5.0) * 60 + 128).astype(np.uint8)
    image[obj] = np.stack([tex, 255 - tex, np.full_like(tex, 90)], -1)[obj]
    image = np.clip(image.astype(int) + rng.integers(-4, 5, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((h, w), bool)
    mask[h // 2 - 6 : h // 2 + 6, w // 2 - 8 : w // 2 + 4] = True
    reference = np.roll(image, (3, -2), axis=(0, 1))
    return {"image": image, "mask": mask, "reference": reference, "object_mask": obj}


@pytest.fixture
def scene() -> dict:
    return synthetic_scene()


@pytest.fixture(scope="module")
def one_thread():
    """Run a module on one torch thread: the dummy model is far faster so on a shared 2-core machine (thread
    contention dominates its tiny kernels). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


def textured_image(size: int = 320, seed: int = 0) -> np.ndarray:
    """A feature-rich random texture (smooth colour noise plus discs), ``(size, size, 3) uint8``."""
    import cv2

    rng = np.random.default_rng(seed)
    base = rng.integers(0, 255, (size // 8, size // 8, 3), dtype=np.uint8)
    img = cv2.resize(base, (size, size), interpolation=cv2.INTER_CUBIC)
    for _ in range(40):  # corners and blobs for SIFT
        c = tuple(int(v) for v in rng.integers(0, size, 2))
        cv2.circle(img, c, int(rng.integers(3, 12)), tuple(int(v) for v in rng.integers(0, 255, 3)), -1)
    return img


def striped_image(size: int = 320, seed: int = 0) -> np.ndarray:
    """Broad stripes (period 28-40 px, a random direction) under fine per-pixel noise, ``(size, size, 3) uint8``:
    structure a blur keeps and detail it removes."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    angle, period = rng.uniform(0, np.pi), rng.uniform(28, 40)
    stripes = 128 + 60 * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period)
    img = stripes[..., None] * np.array([1.0, 0.8, 0.6], np.float32) + rng.normal(0, 20, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def textured_warp_pair(seed: int = 0):
    """``(image, reference, P)``: a texture and its perspective warp, ``P`` mapping image → reference pixels."""
    import cv2

    img = textured_image(seed=seed)
    h, w = img.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    dst = src + np.float32([[10, -6], [-12, 8], [6, 14], [-8, -10]])
    P = cv2.getPerspectiveTransform(src, dst)
    ref = cv2.warpPerspective(img, P, (w, h), borderMode=cv2.BORDER_REFLECT)
    return img, ref, P
