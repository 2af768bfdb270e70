"""Model components: reference encoder, codecs, inpainting U-Net, presets (incl. the sd loading path)."""

from __future__ import annotations

import torch
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from transformers import Dinov2Config, Dinov2Model

from refalign.models import codecs
from refalign.models.codecs import PixelUnshuffleCodec
from refalign.models.presets import build_components
from refalign.models.reference_encoder import ReferenceEncoder
from refalign.models.unet import expand_unet_inputs


def test_pixel_unshuffle_codec_is_lossless():
    codec = PixelUnshuffleCodec(factor=4)
    x = torch.rand(2, 3, 32, 48) * 2 - 1
    z = codecs.encode(codec, x)
    assert z.shape == (2, 48, 8, 12)
    assert codecs.latent_channels(codec) == 48 and codecs.downscale_factor(codec) == 4
    assert torch.equal(codecs.decode(codec, z), x)


def test_vae_codec_functions_match_diffusers():
    vae = AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=16)
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    z = codecs.encode(vae, x)
    assert z.shape == (1, 4, 8, 8)
    assert torch.allclose(z, vae.encode(x).latent_dist.mode() * vae.config.scaling_factor)
    assert codecs.decode(vae, z).shape == x.shape
    assert codecs.downscale_factor(vae) == 2


def test_reference_encoder_token_layout():
    enc = ReferenceEncoder(
        dinov2_config={"image_size": 32, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2},
        cross_attention_dim=24,
        use_cls_token=True,
    )
    assert enc.token_grid == (8, 8) and enc.num_patch_tokens == 64 and enc.num_tokens == 65
    tokens = enc(torch.rand(3, 3, 50, 40) * 2 - 1)  # any input size is resized to the encoder's
    assert tokens.shape == (3, 65, 24)
    assert enc.unconditional(3).shape == (3, 65, 24)
    dropped = enc.drop(tokens, torch.tensor([True, False, True]))
    assert torch.equal(dropped[1], tokens[1]) and torch.equal(dropped[0], enc.unconditional_tokens)


def test_reference_encoder_patch_tokens_keep_their_place():
    """Changing one patch of the input changes (mostly) that token: patch tokens come first in row-major order."""
    torch.manual_seed(0)
    enc = ReferenceEncoder(
        dinov2_config={"image_size": 16, "patch_size": 4, "hidden_size": 16, "num_hidden_layers": 0, "num_attention_heads": 2},
        cross_attention_dim=8,
    ).eval()
    x = torch.zeros(1, 3, 16, 16)
    y = x.clone()
    y[..., 4:8, 8:12] = 1.0  # patch row 1, column 2 -> token 1 * 4 + 2 = 6
    diff = (enc(y) - enc(x)).abs().sum(-1)[0]
    assert int(diff.argmax()) == 6


def test_expand_unet_inputs_keeps_outputs():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                                cross_attention_dim=8, attention_head_dim=4, norm_num_groups=4)
    x = torch.randn(1, 4, 8, 8)
    ctx = torch.randn(1, 3, 8)
    before = unet(x, 10, encoder_hidden_states=ctx).sample
    expand_unet_inputs(unet, 4)
    assert unet.config.in_channels == 9
    after = unet(torch.cat([x, torch.randn(1, 5, 8, 8)], 1), 10, encoder_hidden_states=ctx).sample
    assert torch.allclose(before, after, atol=1e-6)


def test_tiny_preset_shapes():
    comps = build_components("tiny", seed=0)
    assert comps["resolution"] == 64
    assert comps["reference_encoder"].token_grid == (16, 16)
    assert comps["unet"].config.in_channels == 2 * 12 + 1
    assert comps["unet"].config.cross_attention_dim == comps["reference_encoder"].config.cross_attention_dim
    assert comps["reference_encoder"].config.freeze_backbone is False


def test_tiny_preset_is_seeded():
    a = build_components("tiny", seed=3)["unet"].conv_in.weight
    b = build_components("tiny", seed=3)["unet"].conv_in.weight
    assert torch.equal(a, b)


def test_sd_preset_loads_through_user_code_path(tmp_path):
    """The ``sd`` path: a Stable-Diffusion-layout folder (unet/, vae/, scheduler/) and a DINOv2 folder of tiny random
    weights, saved and loaded exactly as a user's real weights would be."""
    torch.manual_seed(0)
    sd = tmp_path / "sd"
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(8, 16),
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                         cross_attention_dim=12, attention_head_dim=4, norm_num_groups=4).save_pretrained(sd / "unet")
    AutoencoderKL(block_out_channels=(8, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                  up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8,
                  sample_size=16).save_pretrained(sd / "vae")
    DDIMScheduler(beta_schedule="scaled_linear").save_pretrained(sd / "scheduler")
    dino = tmp_path / "dinov2"
    Dinov2Model(Dinov2Config(image_size=28, patch_size=14, hidden_size=16, num_hidden_layers=1,
                             num_attention_heads=2)).save_pretrained(dino)

    comps = build_components("sd", pretrained_model=str(sd), pretrained_dinov2=str(dino))
    assert comps["unet"].config.in_channels == 9  # widened to the inpainting layout
    assert comps["reference_encoder"].token_grid == (2, 2)
    assert comps["reference_encoder"].config.freeze_backbone is True
    assert comps["resolution"] == 16
    loaded = Dinov2Model.from_pretrained(dino)
    assert torch.equal(comps["reference_encoder"].backbone.embeddings.patch_embeddings.projection.weight,
                       loaded.embeddings.patch_embeddings.projection.weight)
    assert comps["scheduler"].config.clip_sample is False
