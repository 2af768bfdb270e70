"""Checkpoint format: save → load round trip, refalign.json, and clear errors for incomplete or corrupt folders."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from refalign.errors import CheckpointError
from refalign.pipelines.config import RefalignConfig
from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline


def _unet_out(pipe):
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 8:20, 10:22] = 1
    ref = torch.rand(1, 3, 40, 40, generator=g) * 2 - 1
    lat, masked, lmask = pipe.prepare_inpainting_inputs(image, mask)
    noisy = torch.randn(lat.shape, generator=g)
    with torch.no_grad():
        return pipe.unet_forward(noisy, torch.tensor([500]), masked, lmask, pipe.encode_reference(ref))


def test_round_trip_is_bit_identical(dummy_pipeline, tmp_path):
    dummy_pipeline.refalign_config.alignment.layer = 4
    dummy_pipeline.refalign_config.training = {"max_steps": 7}
    dummy_pipeline.save_pretrained(tmp_path / "ckpt")
    assert (tmp_path / "ckpt" / "refalign.json").is_file()
    assert list((tmp_path / "ckpt" / "unet").glob("*.safetensors"))
    loaded = RefineByAlignPipeline.from_pretrained(tmp_path / "ckpt")
    assert torch.equal(_unet_out(dummy_pipeline), _unet_out(loaded))
    assert loaded.refalign_config == dummy_pipeline.refalign_config
    assert loaded.refalign_config.alignment.layer == 4
    assert type(loaded.codec).__name__ == "PixelUnshuffleCodec"


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no such model folder"):
        RefineByAlignPipeline.from_pretrained(tmp_path / "nope")


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda p: (p / "model_index.json").unlink(), "model_index.json"),
        (lambda p: (p / "refalign.json").unlink(), "refalign.json"),
        (lambda p: (p / "refalign.json").write_text("{not json"), "refalign.json"),
        (lambda p: shutil.rmtree(p / "unet"), "unet"),
        (lambda p: (p / "unet" / "config.json").write_text("[1, 2"), "unet/config.json"),
        (lambda p: (p / "reference_encoder" / "diffusion_pytorch_model.safetensors").unlink(), "reference_encoder"),
    ],
    ids=["no-index", "no-refalign-json", "bad-refalign-json", "no-unet", "bad-config", "no-weights"],
)
def test_incomplete_or_corrupt_folder_names_the_file(dummy_checkpoint, tmp_path, damage, named):
    ckpt = _copy(dummy_checkpoint, tmp_path / "ckpt")
    damage(ckpt)
    with pytest.raises(CheckpointError) as err:
        RefineByAlignPipeline.from_pretrained(ckpt)
    assert named in str(err.value)


def test_truncated_weights_are_detected(dummy_checkpoint, tmp_path):
    ckpt = _copy(dummy_checkpoint, tmp_path / "ckpt")
    weights = ckpt / "unet" / "diffusion_pytorch_model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unet/diffusion_pytorch_model.safetensors.*truncated"):
        RefineByAlignPipeline.from_pretrained(ckpt)


def test_garbage_weights_are_detected(dummy_checkpoint, tmp_path):
    ckpt = _copy(dummy_checkpoint, tmp_path / "ckpt")
    (ckpt / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(CheckpointError, match="corrupt weights"):
        RefineByAlignPipeline.from_pretrained(ckpt)


def test_newer_format_is_refused(dummy_checkpoint, tmp_path):
    ckpt = _copy(dummy_checkpoint, tmp_path / "ckpt")
    data = json.loads((ckpt / "refalign.json").read_text())
    data["format_version"] = 99
    (ckpt / "refalign.json").write_text(json.dumps(data))
    with pytest.raises(CheckpointError, match="newer than this refalign"):
        RefineByAlignPipeline.from_pretrained(ckpt)


def test_config_round_trip():
    cfg = RefalignConfig(preset="sd", resolution=512, training={"lr": 1e-5})
    cfg.alignment.step = 24
    assert RefalignConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "section,key,value,words",
    [("refinement", "paste_mode", "sideways", "paste_mode 'sideways'"),
     ("refinement", "masked_content", "nothing", "masked_content 'nothing'"),
     ("refinement", "num_samples", 0, "num_samples 0"),
     ("refinement", "ramp", -1.0, "ramp -1.0"),
     (None, "masked_fill", "blur", "masked_fill 'blur'")],
)
def test_bad_refinement_settings_are_refused_at_load(section, key, value, words):
    data = RefalignConfig().to_dict()
    (data[section] if section else data)[key] = value
    with pytest.raises(CheckpointError, match=words):
        RefalignConfig.from_dict(data, source="ckpt/refalign.json")


@pytest.mark.parametrize(
    "settings, named",
    [(["alignment.score=0.9"], "alignment.score"),
     (["refinement.reference_fill=0"], "refinement.reference_fill"),
     (["refinement.paste_mode=window", "refinement.detail_transfer=true"], "refinement.detail_transfer"),
     (["refinement.paste_mode=window", "refinement.ramp=1.0"], "refinement.ramp"),
     (["refinement.masked_content=fill"], "refinement.masked_content")],
)
def test_set_refuses_fixed_settings_and_silent_no_ops(settings, named):
    from refalign.errors import InputError
    from refalign.pipelines.config import apply_overrides

    with pytest.raises(InputError, match=named.replace(".", r"\.")) as err:
        apply_overrides(RefalignConfig(), settings)
    assert "\n" not in str(err.value)
    # the same combinations are accepted when they do something
    ok = apply_overrides(RefalignConfig(), ["refinement.paste_mode=residual", "refinement.ramp=1.0",
                                            "refinement.masked_content=fill", "refinement.strength=0.5"])
    assert ok.refinement.ramp == 1.0 and ok.refinement.masked_content == "fill"
    # switching the checkpoint to the paper's path leaves its own unregistered/harmonize inert: that is intended
    shipped = apply_overrides(RefalignConfig(), ["refinement.source=reference", "refinement.unregistered=auto",
                                                 "refinement.paste_mode=residual",
                                                 "refinement.harmonize=true"])
    paper = apply_overrides(shipped, ["refinement.source=model"])
    assert paper.refinement.source == "model"
    with pytest.raises(InputError, match="refinement.unregistered"):
        apply_overrides(shipped, ["refinement.source=model", "refinement.unregistered=keep"])
