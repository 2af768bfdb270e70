"""Model components: reference encoder, codecs, inpainting U-Net and the presets that assemble them."""
