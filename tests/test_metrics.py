"""Known-answer tests of the pure metric functions, and the semantic scorer on tiny random transformers models."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from refalign.eval import metrics


def test_psnr_known_values():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    assert metrics.psnr(a, b) == float("inf")
    b[:] = 1  # MSE 1 -> 10 log10(255^2)
    assert metrics.psnr(a, b) == pytest.approx(20 * np.log10(255), abs=1e-9)
    b[:] = 255
    assert metrics.psnr(a, b) == pytest.approx(0.0, abs=1e-9)


def test_ssim_identity_and_degradation():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (32, 32, 3)).astype(np.uint8)
    assert metrics.ssim(a, a) == pytest.approx(1.0, abs=1e-9)
    assert metrics.ssim(a, 255 - a) < -0.9  # anti-correlated structure
    ramp = np.tile(np.linspace(0, 255, 32), (32, 1)).astype(np.uint8)
    noisy = np.clip(ramp.astype(int) + rng.integers(-40, 41, ramp.shape), 0, 255).astype(np.uint8)
    assert metrics.ssim(ramp, noisy) < 0.5
    # constant images differing in level: luminance term (2·0·100 + c1)/(0 + 100² + c1) exactly
    c1 = (0.01 * 255) ** 2
    assert metrics.ssim(np.zeros((16, 16), np.uint8), np.full((16, 16), 100, np.uint8)) == pytest.approx(c1 / (1e4 + c1))


def test_window_psnr_uses_the_square_window():
    target = np.zeros((200, 200, 3), np.uint8)
    mask = np.zeros((200, 200), bool)
    mask[100:110, 100:110] = True
    out = target.copy()
    out[0:10, 0:10] = 255  # far outside the window: must not count
    p, s = metrics.window_psnr_ssim(out, target, mask)
    assert p == float("inf") and s == pytest.approx(1.0)
    out[mask] = 16  # 100 of the 64x64 = 4096 window pixels differ by 16
    p, _ = metrics.window_psnr_ssim(out, target, mask)
    assert metrics.artifact_window(mask).size == 64
    assert p == pytest.approx(10 * np.log10(255**2 / (16**2 * 100 / 4096)))


def test_background_max_diff():
    img = np.full((50, 50, 3), 100, np.uint8)
    mask = np.zeros((50, 50), bool)
    mask[20:30, 20:30] = True
    out = img.copy()
    out[mask] = 0
    assert metrics.background_max_diff(out, img, mask) == 0
    out[31, 25] = 90  # inside the 8-px dilation: allowed
    assert metrics.background_max_diff(out, img, mask) == 0
    out[45, 45] = 93
    assert metrics.background_max_diff(out, img, mask) == 7
    assert metrics.background_max_diff(out, img, mask, dilation=0) == 10  # the pixel next to the mask counts now


def test_seam_error_detects_a_step_at_the_boundary():
    target = np.full((40, 40, 3), 120, np.uint8)
    mask = np.zeros((40, 40), bool)
    mask[10:30, 10:30] = True
    assert metrics.seam_error(target, target, mask) == 0.0
    pasted = target.copy()
    pasted[mask] = 200  # a visible edge all around
    smooth = target.copy()
    smooth[15:25, 15:25] = 200  # a change well inside the mask, no edge on the boundary
    assert metrics.seam_error(pasted, target, mask) > 100
    assert metrics.seam_error(smooth, target, mask) == 0.0
    band = metrics.boundary_band(mask, 2)
    assert band[10, 20] and band[8, 20] and band[11, 20] and not band[20, 20] and not band[5, 20]


def test_iou():
    a = np.zeros((10, 10), bool)
    b = a.copy()
    a[0:4, 0:5] = True  # 20 px
    b[2:6, 0:5] = True  # 20 px, overlap 10
    assert metrics.iou(a, b) == pytest.approx(10 / 30)
    assert metrics.iou(a, a) == 1.0
    assert metrics.iou(None, a) == 0.0
    assert metrics.iou(np.zeros_like(a), np.zeros_like(a)) == 0.0


def test_ocr_agreement_and_edit_distance():
    assert metrics.edit_distance("kitten", "sitting") == 3
    assert metrics.edit_distance("", "abc") == 3
    assert metrics.ocr_agreement("NIKE", "nike") == 1.0
    assert metrics.ocr_agreement("N1KE!", "nike") == pytest.approx(0.75)
    assert metrics.ocr_agreement("", "") == 1.0
    assert metrics.ocr_agreement("xyz", "") == 0.0


def test_cosine_score_and_bbox_crop():
    assert metrics.cosine_score([1, 0], [1, 0]) == pytest.approx(100.0)
    assert metrics.cosine_score([1, 0], [0, 2]) == pytest.approx(0.0)
    assert metrics.cosine_score([1, 1], [-1, -1]) == pytest.approx(-100.0)
    img = np.arange(100 * 100 * 3, dtype=np.uint8).reshape(100, 100, 3)
    m = np.zeros((100, 100), bool)
    m[40:60, 30:50] = True
    assert metrics.bbox_crop(img, m).shape == (24, 24, 3)
    assert metrics.bbox_crop(img, m, margin=0).shape == (20, 20, 3)


@pytest.mark.parametrize("engine", ["rapidocr", "tesseract"])
def test_ocr_reads_rendered_text(engine):
    """Both engines read a rendered word; RapidOCR's weights are inside its wheel, so this runs with no network."""
    from refalign.eval.ocr import read_text, tesseract_available

    if engine == "rapidocr":
        pytest.importorskip("rapidocr_onnxruntime", reason="the `ocr` extra (rapidocr-onnxruntime) is not installed")
    elif not tesseract_available():
        pytest.skip("tesseract binary not installed (Debian package tesseract-ocr)")
    import cv2

    img = np.full((60, 260, 3), 255, np.uint8)
    cv2.putText(img, "REFINE", (10, 45), cv2.FONT_HERSHEY_SIMPLEX, 1.5, (0, 0, 0), 3)
    assert metrics.ocr_agreement(read_text(img, engine=engine), "REFINE") >= 0.8
    assert read_text(np.full((60, 260, 3), 255, np.uint8), engine=engine) == ""


# ---------------------------------------------------------------------------------------------- semantic scores
def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "<s>", "</s>"] + "a photo of the an object dog cat backpack red blue".split()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", bos_token="<s>",
                                   eos_token="</s>")


def save_tiny_scoring_models(root) -> dict[str, str]:
    """Tiny random CLIPModel, Dinov2Model and Blip2ForConditionalGeneration with their processors, saved the way a
    user's weights would be (``save_pretrained`` folders)."""
    import torch
    from transformers import (BitImageProcessor, Blip2Config, Blip2ForConditionalGeneration, Blip2Processor,
                              BlipImageProcessor, CLIPConfig, CLIPImageProcessor, CLIPModel, Dinov2Config,
                              Dinov2Model)

    torch.manual_seed(0)
    small = dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32,
                 patch_size=8)
    paths = {k: str(root / k) for k in ("clip", "dino", "blip")}
    clip_cfg = CLIPConfig(text_config=dict(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                           num_attention_heads=2, max_position_embeddings=32),
                          vision_config=small, projection_dim=8)
    CLIPModel(clip_cfg).save_pretrained(paths["clip"])
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(paths["clip"])
    _tokenizer().save_pretrained(paths["clip"])
    Dinov2Model(Dinov2Config(**small)).save_pretrained(paths["dino"])
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(paths["dino"])
    proc = Blip2Processor(image_processor=BlipImageProcessor(size={"height": 32, "width": 32}), tokenizer=_tokenizer(),
                          num_query_tokens=4)
    blip_cfg = Blip2Config(
        vision_config=small,
        qformer_config=dict(vocab_size=32, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, encoder_hidden_size=16, max_position_embeddings=32),
        text_config=dict(model_type="opt", vocab_size=len(proc.tokenizer) + 1, hidden_size=16, num_hidden_layers=1,
                         num_attention_heads=2, ffn_dim=32, max_position_embeddings=64, word_embed_proj_dim=16,
                         pad_token_id=0, bos_token_id=2, eos_token_id=3),
        num_query_tokens=4)
    blip_cfg.image_token_index = proc.tokenizer.convert_tokens_to_ids("<image>")
    blip = Blip2ForConditionalGeneration(blip_cfg)
    with torch.no_grad():  # make the random decoder say "dog": constant final hidden state, matching (tied) row
        norm = blip.language_model.model.decoder.final_layer_norm
        norm.weight.zero_()
        norm.bias.fill_(1.0)
        blip.language_model.get_output_embeddings().weight[proc.tokenizer.convert_tokens_to_ids("dog")] = 1.0
    blip.save_pretrained(paths["blip"])
    proc.save_pretrained(paths["blip"])
    return paths


@pytest.fixture(scope="module")
def tiny_scoring_models(tmp_path_factory):
    return save_tiny_scoring_models(tmp_path_factory.mktemp("scoring"))


def test_semantic_scorer_loads_user_folders(tiny_scoring_models):
    from refalign.eval.semantic import SemanticConfig, SemanticScorer

    scorer = SemanticScorer(SemanticConfig(**tiny_scoring_models))
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (40, 50, 3)).astype(np.uint8)
    b = rng.integers(0, 256, (30, 30, 3)).astype(np.uint8)
    same = scorer.score(a, a)
    assert same["clip_i"] == pytest.approx(100.0, abs=1e-3) and same["dino"] == pytest.approx(100.0, abs=1e-3)
    other = scorer.score(a, b)
    assert set(other) == {"clip_i", "dino", "clip_t", "caption"}
    assert -100 <= other["clip_i"] <= 100 and -100 <= other["dino"] <= 100 and 0 <= other["clip_t"] <= 100
    assert other["caption"].split()[0] == "dog"


def test_semantic_scorer_skips_missing_weights_with_one_line(caplog, tiny_scoring_models):
    from refalign.eval.semantic import SemanticConfig, SemanticScorer

    with caplog.at_level(logging.INFO, logger="refalign.eval.semantic"):
        scorer = SemanticScorer(SemanticConfig(dino=tiny_scoring_models["dino"]))
    assert any("CLIP-I and CLIP-T skipped" in r.message for r in caplog.records)
    img = np.zeros((20, 20, 3), np.uint8)
    assert set(scorer.score(img, img)) == {"dino"}


def test_semantic_scorer_bad_folder_is_a_clear_error(tmp_path):
    from refalign.errors import InputError
    from refalign.eval.semantic import SemanticConfig, SemanticScorer

    with pytest.raises(InputError, match=r"--clip .*could not load the CLIP model"):
        SemanticScorer(SemanticConfig(clip=str(tmp_path)))


# ------------------------------------------------------------------------------------- metrics over the artifact
def _textured(size=96, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (size, size, 3)).astype(np.uint8)


def test_box_and_mask_psnr_count_only_the_artifact():
    target = np.zeros((200, 200, 3), np.uint8)
    mask = np.zeros((200, 200), bool)
    mask[100:110, 100:120] = True
    assert metrics.artifact_box(mask) == (92, 92, 118, 128)
    assert metrics.artifact_box(mask, margin=200) == (0, 0, 200, 200)  # clipped to the image
    out = target.copy()
    out[0:10, 0:10] = 255  # outside the box: does not count
    assert metrics.box_psnr_ssim(out, target, mask)[0] == float("inf")
    out[mask] = 16  # 200 of the 26 x 36 = 936 box pixels differ by 16; every mask pixel does
    p, s = metrics.box_psnr_ssim(out, target, mask)
    assert p == pytest.approx(10 * np.log10(255**2 / (16**2 * 200 / 936)))
    assert metrics.mask_psnr(out, target, mask) == pytest.approx(10 * np.log10(255**2 / 16**2))
    # the same error weighs more in the box than in the old window (twice the artifact's size, at least 64 px)
    assert p < metrics.window_psnr_ssim(out, target, mask)[0] and s < 1.0


def test_gmsd_is_zero_for_identity_and_punishes_blur_more_than_a_level_shift():
    import cv2

    a = _textured()
    assert metrics.gmsd(a, a) == pytest.approx(0.0, abs=1e-12)
    blurred = cv2.GaussianBlur(a, (0, 0), 2.0)
    brighter = np.clip(a.astype(int) + 20, 0, 255).astype(np.uint8)
    assert metrics.gmsd(blurred, a) > 0.1
    assert metrics.gmsd(brighter, a) < 0.02  # the same gradients: GMS ≈ 1 everywhere, no deviation
    # known answer: a ramp of 3 grey levels per column against a flat output, no downsampling. Prewitt gives
    # |∇| = 6 inside and 3 on the two border columns (replicated border); GMS = c / (m² + c) there, and the
    # deviation of a two-valued map with shares p, 1 − p is |v1 − v2| · sqrt(p (1 − p))
    ramp = np.tile(np.arange(40, dtype=np.uint8) * 3, (40, 1))
    flat = np.full_like(ramp, 60)
    v_in, v_edge, p = 170 / (36 + 170), 170 / (9 + 170), 2 / 40
    assert metrics.gmsd(flat, ramp, downsample=1) == pytest.approx(abs(v_in - v_edge) * np.sqrt(p * (1 - p)))
    assert metrics.box_gmsd(flat, ramp, np.ones_like(ramp, bool)) == pytest.approx(metrics.gmsd(flat, ramp))


def test_detail_ratio():
    import cv2

    a = _textured(64, 1)
    mask = np.zeros((64, 64), bool)
    mask[16:48, 16:48] = True
    assert metrics.detail_ratio(a, a, mask) == pytest.approx(1.0)
    blurred = a.copy()
    blurred[mask] = cv2.GaussianBlur(a, (0, 0), 3.0)[mask]
    assert metrics.detail_ratio(blurred, a, mask) < 0.3
    flat = np.full_like(a, 128)
    assert metrics.detail_ratio(a, flat, mask) is None  # no texture in the truth: undefined
    # known value: a vertical stripe pattern 0/100 has |Laplacian| 200 at every interior pixel, 2 × of 0/50
    stripes = np.zeros((32, 32), np.uint8)
    stripes[:, ::2] = 100
    half = (stripes // 2).astype(np.uint8)
    m = np.zeros((32, 32), bool)
    m[8:24, 8:24] = True
    assert metrics.mean_abs_laplacian(stripes, m) == pytest.approx(200.0)
    assert metrics.detail_ratio(half, stripes, m) == pytest.approx(0.5)
