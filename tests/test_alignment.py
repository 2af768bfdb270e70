"""The alignment stage end to end (``pipe.align``) and the step × layer search.

``engineered_pipeline`` sets the weights of the dummy model so that the answer is known: the reference encoder turns
white patches of the reference into "target" tokens and black ones into (almost) zero tokens, and the U-Net carries
the mask channel of its input straight to the query of cross-attention layer 0, where queries under the artifact
attend to the target tokens and all other queries attend to the rest. The correspondence of the artifact is then
exactly the white square of the reference.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from conftest import make_dummy_pipeline

from refalign.errors import InputError

# The white square of the reference: pixels 8:20 x 12:24 of a 32x32 reference = tokens 2:5 x 3:6 of the 8x8 grid
REF_BOX = (slice(8, 20), slice(12, 24))
TOKEN_BOX = (slice(2, 5), slice(3, 6))


def _pass_channel(conv: torch.nn.Conv2d, src: int) -> None:
    """Make ``conv`` copy input channel ``src`` to output channel 0 (centre tap) and output zeros elsewhere."""
    conv.weight.zero_()
    conv.weight[0, src, conv.kernel_size[0] // 2, conv.kernel_size[1] // 2] = 1.0
    if conv.bias is not None:
        conv.bias.zero_()


@torch.no_grad()
def engineer(pipe):
    enc = pipe.reference_encoder
    bb = enc.backbone
    # DINOv2: channel 0 of every patch token = mean pixel value (-1 black ... +1 white); the layers are the identity
    proj = bb.embeddings.patch_embeddings.projection
    proj.weight.zero_()
    proj.weight[0] = 1.0 / proj.weight[0].numel()
    proj.bias.zero_()
    bb.embeddings.position_embeddings.zero_()
    bb.embeddings.cls_token.zero_()
    for layer in bb.encoder.layer:
        layer.layer_scale1.lambda1.zero_()
        layer.layer_scale2.lambda1.zero_()
    bb.layernorm.weight.fill_(1.0)
    bb.layernorm.bias.zero_()
    # projector: white -> (5.6, ..., 5.6), black -> ~0
    l1, l2 = enc.projector[0], enc.projector[2]
    l1.weight.zero_()
    l1.weight[0, 0] = 1.0
    l1.bias.zero_()
    l2.weight.zero_()
    l2.weight[:, 0] = 1.0
    l2.bias.zero_()

    unet = pipe.unet
    mask_channel = (unet.config.in_channels - 1) // 2
    _pass_channel(unet.conv_in, mask_channel)
    unet.down_blocks[0].resnets[0].conv2.weight.zero_()
    unet.down_blocks[0].resnets[0].conv2.bias.zero_()
    _pass_channel(unet.down_blocks[0].downsamplers[0].conv, 0)
    res = unet.down_blocks[1].resnets[0]
    res.conv2.weight.zero_()
    res.conv2.bias.zero_()
    _pass_channel(res.conv_shortcut, 0)
    tr = unet.down_blocks[1].attentions[0]
    tr.norm.weight.fill_(1.0)
    tr.norm.bias.zero_()
    _pass_channel(tr.proj_in, 0)
    block = tr.transformer_blocks[0]
    block.attn1.to_out[0].weight.zero_()
    block.attn1.to_out[0].bias.zero_()
    block.norm2.weight.fill_(1.0)
    block.norm2.bias.zero_()
    # layer 0: q = ±c·1 (sign = inside/outside the artifact), k = token
    block.attn2.to_q.weight.zero_()
    block.attn2.to_q.weight[:, 0] = 1.0
    block.attn2.to_k.weight.copy_(torch.eye(block.attn2.to_k.weight.shape[0]))
    return pipe


def engineered_pipeline():
    pipe = make_dummy_pipeline()
    pipe.refalign_config.alignment.layer = 0
    return engineer(pipe)


@pytest.fixture(scope="module")
def engineered():
    """One engineered pipeline shared by the tests of this module (none of them changes it)."""
    return engineered_pipeline()


def scene():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[24:40, 24:40] = True
    reference = np.zeros((32, 32, 3), np.uint8)
    reference[REF_BOX] = 255
    corr = np.zeros((32, 32), bool)
    corr[REF_BOX] = True
    return image, mask, reference, corr


def _count_unet_calls(pipe):
    calls = []
    handle = pipe.unet.register_forward_hook(lambda *a: calls.append(1))
    return calls, handle


def test_align_finds_the_engineered_correspondence(engineered):
    pipe = engineered
    image, mask, reference, corr = scene()
    calls, handle = _count_unet_calls(pipe)
    out = pipe.align(image, mask, reference)
    handle.remove()
    assert len(calls) == 1  # default alignment = exactly one U-Net pass
    assert (out.step, out.layer) == (0, 0)
    want_tokens = np.zeros((8, 8), bool)
    want_tokens[TOKEN_BOX] = True
    assert out.raw_map.shape == out.soft_map.shape == (8, 8)
    np.testing.assert_array_equal(out.token_mask, want_tokens)
    assert out.raw_map[want_tokens].min() > 10 * out.raw_map[~want_tokens].max()
    assert out.mask.shape == (32, 32) and out.mask.dtype == bool
    iou = (out.mask & corr).sum() / (out.mask | corr).sum()
    assert iou > 0.9
    assert out.score > 0.95
    assert 0.0 <= out.soft_map.min() and out.soft_map.max() == 1.0
    assert out.soft_on_reference().shape == (32, 32)


def test_queries_outside_the_artifact_attend_elsewhere(engineered):
    from refalign.pipelines.alignment import capture_maps, prepare_alignment

    pipe = engineered
    image, mask, reference, _ = scene()
    prepared = prepare_alignment(pipe, image, mask, reference)
    prepared.query_mask = 1.0 - prepared.query_mask  # eq. 5 over the complement of the artifact
    maps, _ = capture_maps(pipe, prepared, 0, [0], 2)
    m = maps[0]
    target = np.zeros((8, 8), bool)
    target[TOKEN_BOX] = True
    assert m[~target].min() > 10 * m[target].max()


def test_align_is_deterministic_and_respects_object_mask(engineered):
    pipe = engineered
    image, mask, reference, _ = scene()
    a = pipe.align(image, mask, reference)
    b = pipe.align(image, mask, reference)
    np.testing.assert_array_equal(a.raw_map, b.raw_map)
    obj = np.zeros((32, 32), bool)
    obj[:, :18] = True  # the object covers only the left part of the square
    c = pipe.align(image, mask, reference, object_mask=obj)
    assert c.mask.any() and not (c.mask & ~obj).any()


def test_align_on_a_random_model_runs_every_layer(dummy_pipeline, scene):
    for layer in range(7):
        out = dummy_pipeline.align(scene["image"], scene["mask"], scene["reference"], step=1, layer=layer)
        assert out.mask.shape == scene["reference"].shape[:2]
        assert 0.0 <= out.score <= 1.0 and np.isfinite(out.raw_map).all()


def test_align_refuses_bad_step_layer_and_inputs(dummy_pipeline, scene):
    args = (scene["image"], scene["mask"], scene["reference"])
    with pytest.raises(InputError, match="layer 7 is out of range"):
        dummy_pipeline.align(*args, layer=7)
    with pytest.raises(InputError, match="step 2 is out of range"):
        dummy_pipeline.align(*args, step=2)
    with pytest.raises(InputError, match="marks no pixels"):
        dummy_pipeline.align(scene["image"], np.zeros_like(scene["mask"]), scene["reference"])
    with pytest.raises(InputError, match="object_mask"):
        dummy_pipeline.align(*args, object_mask=np.ones((5, 5), bool))


# --------------------------------------------------------------------------------------------- search


def _cases(root, with_gt=2, without_gt=1):
    from refalign.eval.cases import write_case

    image, mask, reference, corr = scene()
    for i in range(with_gt):
        write_case(root / f"case{i}", image=image, mask=mask, reference=reference, correspondence=corr)
    for i in range(without_gt):
        write_case(root / f"nogt{i}", image=image, mask=mask, reference=reference)
    return root


def test_search_shapes_one_pass_per_step_and_outputs(tmp_path, engineered):
    from refalign.eval.alignment_search import search_alignment

    pipe = engineered
    cases = _cases(tmp_path / "cases")
    calls, handle = _count_unet_calls(pipe)
    result = search_alignment(pipe, cases, num_inference_steps=3, output_dir=tmp_path / "out", progress=False)
    handle.remove()
    assert len(calls) == 2 * 3  # T passes per case, each reading all 7 layers (not T x L)
    assert result.gamma.shape == (3, 7) and result.per_case.shape == (2, 3, 7)
    assert result.case_names == ["case0", "case1"] and result.skipped == ["nogt0"]
    step, layer, score = result.best
    assert layer == 0 and step == 0 and score > 0.9  # the engineered layer wins at every step
    assert (result.gamma[:, 0] > 0.9).all()
    lines = (tmp_path / "out" / "gamma.csv").read_text().splitlines()
    assert lines[0].startswith("step,timestep,l0") and len(lines) == 4 and len(lines[1].split(",")) == 9
    best = json.loads((tmp_path / "out" / "best.json").read_text())
    assert (best["step"], best["layer"], best["num_inference_steps"]) == (0, 0, 3)
    assert set(best["cases"]) == {"case0", "case1"}
    from PIL import Image

    assert Image.open(tmp_path / "out" / "gamma.png").size[0] > 50


def test_search_without_ground_truth_is_an_error(tmp_path, dummy_pipeline):
    from refalign.eval.alignment_search import search_alignment

    cases = _cases(tmp_path / "cases", with_gt=0, without_gt=1)
    with pytest.raises(InputError, match="correspondence.png"):
        search_alignment(dummy_pipeline, cases, num_inference_steps=2, progress=False)


def test_heatmap_without_matplotlib(tmp_path, monkeypatch):
    import builtins

    from refalign.eval.alignment_search import write_heatmap

    real_import = builtins.__import__

    def no_mpl(name, *a, **k):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_mpl)
    write_heatmap(np.random.default_rng(0).random((4, 5)), tmp_path / "g.png", best=(1, 2))
    from PIL import Image

    img = Image.open(tmp_path / "g.png")
    assert img.size == (5 * 24 + 24, 4 * 24)


def test_store_alignment_defaults(tmp_path, dummy_checkpoint):
    from refalign.eval.alignment_search import SearchResult, store_alignment_defaults
    from refalign.pipelines.config import RefalignConfig

    ckpt = tmp_path / "ckpt"
    shutil.copytree(dummy_checkpoint, ckpt)
    gamma = np.zeros((4, 7))
    gamma[2, 5] = 0.7
    result = SearchResult(gamma, gamma[None], ["a"], 4, [900, 600, 300, 1], [f"n{i}" for i in range(7)])
    store_alignment_defaults(ckpt, result)
    cfg = RefalignConfig.load(ckpt / "refalign.json")
    assert (cfg.alignment.step, cfg.alignment.layer, cfg.alignment.num_inference_steps) == (2, 5, 4)
    assert cfg.alignment.score == pytest.approx(0.7)
