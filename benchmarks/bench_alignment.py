"""Alignment-stage cost: latency and peak memory of reading cross-attention, ours vs a naive capture.

* **none**  — a plain U-Net pass (fused SDPA everywhere): the floor.
* **ours**  — :func:`refalign.attention.capture_cross_attention`: the read layers compute probabilities one block of
  query rows at a time and fold them into eq. 5 at once; nothing but ``(B, N)`` per layer is kept.
* **naive** — the usual "attention store" (prompt-to-prompt style): every read layer materialises and KEEPS its full
  ``(B·heads, d·d, N)`` probabilities; eq. 5 is computed from them after the pass.

Each is measured reading one layer (the default alignment, paper ``l = 9``, clamped to the model) and reading all
layers (one pass of the step × layer search). One subprocess per (model, layers read) runs the three modes
interleaved for ``--repeats`` rounds; latency is each mode's best pass (the machine may be shared; interleaving
spreads the load evenly). Peak memory is the peak resident set size (sampled every millisecond from
``/proc/self/statm``) during a pass minus the RSS just before it, so weights and imports are excluded; glibc is told
to mmap every block over 64 KiB, so freed memory leaves the RSS and passes in one process do not hide each other's
peaks. "kept" is the bytes of captured maps held after the pass (exact).

Models: ``tiny`` — the tiny preset's U-Net at 64 px (latent 32×32, 256 reference tokens); ``sd`` — a random
``UNet2DConditionModel`` with Stable Diffusion 1.5's inpainting config at 512 px (latent 64×64, 9 input channels,
cross-attention width 768, 257 tokens = 256 patches + CLS). ``--quick`` shrinks the SD-sized U-Net to one resnet and
one transformer block per level (``layers_per_block=1``, 7 cross-attention layers instead of 16) but keeps the
64×64 latent, the channel widths and the 257×768 tokens, so the per-layer attention shapes are SD's.

    python benchmarks/bench_alignment.py [--quick] [--repeats 2] [--models tiny,sd]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _memory import PeakRSS  # benchmarks/ is the script's folder, first on sys.path

SD15_UNET = {
    "sample_size": 64,
    "in_channels": 9,
    "out_channels": 4,
    "block_out_channels": (320, 640, 1280, 1280),
    "down_block_types": ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
    "norm_num_groups": 32,
}


# ----------------------------------------------------------------------------------------------- worker side
class NaiveStoreProcessor:
    """Keeps every full probability map (the baseline)."""

    def __init__(self, maps: list):
        self.maps = maps

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None, **kwargs):
        import torch

        q = attn.head_to_batch_dim(attn.to_q(hidden_states))
        k = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
        v = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
        probs = attn.get_attention_scores(q, k, None)
        self.maps.append((attn.heads, probs))
        out = attn.batch_to_head_dim(torch.bmm(probs, v))
        return attn.to_out[1](attn.to_out[0](out)) / attn.rescale_output_factor


def build(model: str, quick: bool):
    import torch

    torch.manual_seed(0)
    if model == "tiny":
        from refalign.models.presets import build_components

        unet = build_components("tiny", seed=0)["unet"]
        tokens, width = 256, unet.config.cross_attention_dim
    else:
        from diffusers import UNet2DConditionModel

        cfg = dict(SD15_UNET)
        if quick:
            cfg["layers_per_block"] = 1
        unet = UNet2DConditionModel(**cfg)
        tokens, width = 257, 768
    unet.eval()
    size = unet.config.sample_size
    x = torch.randn(1, unet.config.in_channels, size, size)
    enc = torch.randn(1, tokens, width)
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 2 - size // 8 : size // 2 + size // 8, size // 2 - size // 8 : size // 2 + size // 8] = 1
    return unet, x, enc, mask


def run_pass(unet, x, enc, mask, mode: str, layers):
    """One U-Net pass in ``mode``; returns the bytes of captured data kept after it."""

    from refalign.attention import CrossAttentionStore, capture_cross_attention, resize_query_mask
    from refalign.attention.aggregate import query_grid_shape
    from refalign.models.unet import cross_attention_layer_names

    if mode == "none":
        unet(x, 500, encoder_hidden_states=enc)
        return 0
    if mode == "ours":
        store = CrossAttentionStore(mask, layers=layers)
        with capture_cross_attention(unet, store):
            store.set_step(0)
            unet(x, 500, encoder_hidden_states=enc)
        return sum(m.numel() * m.element_size() for m in store.maps.values())
    maps: list = []
    names = cross_attention_layer_names(unet)
    chosen = range(len(names)) if layers is None else layers
    modules = [unet.get_submodule(names[i]) for i in chosen]
    originals = [m.processor for m in modules]
    try:
        for m in modules:
            m.set_processor(NaiveStoreProcessor(maps))
        unet(x, 500, encoder_hidden_states=enc)
    finally:
        for m, p in zip(modules, originals):
            m.set_processor(p)
    kept = sum(p.numel() * p.element_size() for _, p in maps)
    for heads, p in maps:  # eq. 5 afterwards, from the stored maps
        q = p.shape[1]
        w = resize_query_mask(mask, query_grid_shape(q, tuple(mask.shape[-2:])))
        (p.view(-1, heads, q, p.shape[-1]).mean(1) * w[..., None]).sum(1)
    return kept


MODES = ("none", "ours", "naive")


def worker(spec: dict) -> dict:
    """All modes in one process, interleaved round by round (so load on a shared machine hits them alike)."""
    import torch

    torch.set_grad_enabled(False)
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    from refalign.models.unet import cross_attention_layer_names

    unet, x, enc, mask = build(spec["model"], spec["quick"])
    n_layers = len(cross_attention_layer_names(unet))
    layers = None if spec["layers"] == "all" else [min(9, n_layers - 1)]
    run_pass(unet, x, enc, mask, "none", None)  # warm-up (kernels, allocator)
    out = {m: {"latency_s": float("inf"), "peak_mb": 0.0, "kept_mb": 0.0} for m in MODES}
    for _ in range(spec["repeats"]):
        for mode in MODES:
            meter = PeakRSS()
            base = meter.rss()
            with meter:
                t0 = time.perf_counter()
                kept = run_pass(unet, x, enc, mask, mode, layers)
                elapsed = time.perf_counter() - t0
            r = out[mode]
            r["latency_s"] = min(r["latency_s"], elapsed)
            r["peak_mb"] = max(r["peak_mb"], (meter.peak - base) / 2**20)
            r["kept_mb"] = kept / 2**20
    for r in out.values():
        r.update(layers_read=n_layers if layers is None else 1, n_layers=n_layers)
    return out


# ----------------------------------------------------------------------------------------------- driver side
def run_config(spec: dict) -> dict:
    # large blocks always mmapped, so freed memory leaves the RSS and the sampled peak tracks live memory
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="131072")
    proc = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                          env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed for {spec}:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="tiny,sd", help="comma-separated: tiny, sd")
    ap.add_argument("--quick", action="store_true", help="SD-sized U-Net with one block per level (see module docs)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads per worker (0 = torch's default)")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return
    rows = []
    for model in args.models.split(","):
        for layers in ("one", "all"):
            spec = {"model": model, "quick": args.quick, "layers": layers, "repeats": args.repeats,
                    "threads": args.threads}
            rows.append((model + ("-quick" if args.quick and model == "sd" else ""), layers, run_config(spec)))
    head = (f"{'model':<9} {'read':<10} {'mode':<6} {'latency s':>10} {'peak MB':>9} {'kept MB':>9} "
            f"{'naive/ours latency':>19} {'naive/ours peak':>16}")
    print(head)
    print("-" * len(head))
    for model, layers, res in rows:
        n = res["ours"]["n_layers"]
        read = f"{res['ours']['layers_read']} of {n}"
        for mode in MODES:
            r = res[mode]
            ratio_t = ratio_m = ""
            if mode == "naive":
                ratio_t = f"{r['latency_s'] / max(res['ours']['latency_s'], 1e-9):.2f}x"
                ratio_m = f"{r['peak_mb'] / max(res['ours']['peak_mb'], 1e-3):.2f}x"
            print(f"{model:<9} {read:<10} {mode:<6} {r['latency_s']:>10.3f} {r['peak_mb']:>9.1f} {r['kept_mb']:>9.3f} "
                  f"{ratio_t:>19} {ratio_m:>16}")


if __name__ == "__main__":
    main()
