"""Latency and peak memory of ``refalign refine`` against image size and sampling steps, with OpenCV's Telea
inpainting timed on the same inputs in the same run.

Each configuration runs in its own worker process, so its peak resident memory (``ru_maxrss``) is its own. The
model is the ``tiny`` preset with random weights (the same architecture and cost as a trained ``tiny``
checkpoint); pass ``--model PATH`` to time a saved checkpoint instead. The image is a textured picture of the given
side with one small artifact (about 0.1 % of a 1024² image), so zoom-in keeps the model's work fixed: latency and
memory should stay flat as the image grows.

    python benchmarks/bench_refine.py                       # sizes 512…4096 at 20 steps, steps 10…50 at 1024
    python benchmarks/bench_refine.py --sizes 512 4096 --steps-list 25 --repeats 5 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from _memory import PeakRSS  # benchmarks/ is the script's folder, first on sys.path


def _scene(size: int, artifact: int, seed: int = 0):
    """A textured ``size²`` image (built without full-size temporaries), a round artifact at its centre, and a
    512² reference cut from it."""
    import numpy as np

    rng = np.random.default_rng(seed)
    x = np.arange(size, dtype=np.float32)
    base = np.clip(np.sin(x / 7.0)[None, :] * 50 + np.cos(x / 11.0)[:, None] * 50 + 128, 0, 255).astype(np.uint8)
    image = np.empty((size, size, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = base, 255 - base, 90
    del base
    reps = -(-size // 64)
    image += np.tile(rng.integers(0, 12, (64, 64, 3), dtype=np.uint8), (reps, reps, 1))[:size, :size]
    mask = np.zeros((size, size), bool)
    c = size // 2
    yy_a, xx_a = np.mgrid[0:artifact, 0:artifact]
    mask[c : c + artifact, c : c + artifact] = ((yy_a - artifact / 2) ** 2 + (xx_a - artifact / 2) ** 2) < (artifact / 2) ** 2
    half = min(256, size // 2)
    reference = np.ascontiguousarray(image[c - half : c + half, c - half : c + half])
    return image, mask, reference


def _load(model: str | None):
    from refalign.pipelines.config import RefalignConfig
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline

    if model:
        pipe = RefineByAlignPipeline.from_pretrained(model)
    else:
        from refalign.models.presets import build_components

        comps = build_components("tiny", seed=0)
        res = comps.pop("resolution")
        pipe = RefineByAlignPipeline(**comps, refalign_config=RefalignConfig(preset="tiny", resolution=res))
        from refalign.models.unet import cross_attention_layer_names

        # the paper's layer 9 of 16 does not exist in the tiny U-Net; read the middle one (same cost)
        pipe.refalign_config.alignment.layer = len(cross_attention_layer_names(pipe.unet)) // 2
    pipe.set_progress_bar_config(disable=True)
    return pipe


def worker(cfg: dict) -> dict:
    """Time one configuration (runs in a fresh process)."""
    import cv2
    import numpy as np
    import torch

    from refalign.fill import telea_fill

    torch.set_num_threads(cfg["threads"])
    cv2.setNumThreads(cfg["threads"])
    pipe = _load(cfg["model"])
    image, mask, reference = _scene(cfg["size"], cfg["artifact"])
    kwargs = dict(num_inference_steps=cfg["steps"], seed=0, no_align=cfg["no_align"])
    pipe(image, mask, reference, **{**kwargs, "num_inference_steps": 2})  # warm-up
    times = []
    with PeakRSS() as rss:
        for _ in range(cfg["repeats"]):
            t0 = time.perf_counter()
            out = pipe(image, mask, reference, **kwargs)
            times.append(time.perf_counter() - t0)
    telea = []
    for _ in range(cfg["repeats"]):
        t0 = time.perf_counter()
        telea_fill(image, mask)
        telea.append(time.perf_counter() - t0)
    return {
        "seconds": statistics.median(times),
        "regions": len(out.windows),
        "window": out.windows[0].size,
        "telea": statistics.median(telea),
        "call_mb": (rss.peak - rss.start) / 2**20,
    }


def run_worker(cfg: dict) -> dict:
    """Run :func:`worker` in a child process; add its peak resident memory."""
    proc = subprocess.Popen([sys.executable, __file__, "--worker", json.dumps(cfg)], stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed for {cfg}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_mb"] = usage.ru_maxrss / 1024.0  # Linux: kilobytes
    return result


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[512, 1024, 2048, 4096])
    p.add_argument("--steps", type=int, default=20, help="steps for the image-size sweep")
    p.add_argument("--steps-list", type=int, nargs="+", default=[10, 25, 50], help="steps for the steps sweep")
    p.add_argument("--steps-size", type=int, default=1024, help="image side for the steps sweep")
    p.add_argument("--artifact", type=int, default=32, help="artifact diameter in pixels")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch/OpenCV threads per worker")
    p.add_argument("--no-align", action="store_true", help="time the refinement stage only")
    p.add_argument("--model", default=None, help="checkpoint folder (default: tiny preset, random weights)")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return

    base = dict(artifact=args.artifact, repeats=args.repeats, threads=args.threads, model=args.model,
                no_align=args.no_align)
    rows = [("size", s, args.steps) for s in args.sizes] + [("steps", args.steps_size, n) for n in args.steps_list]
    stage = "refinement only" if args.no_align else "alignment + refinement"
    model = args.model or "tiny preset (random weights)"
    print(f"refalign refine — {model}, {stage}, {args.threads} thread(s), median of {args.repeats}")
    print("call MB: memory the refine call adds on top of the loaded model and inputs; peak MB: whole worker process")
    header = f"{'sweep':<6} {'image':>10} {'steps':>5} {'regions':>7} {'window':>6} {'s/region':>9} {'call MB':>8} " \
             f"{'peak MB':>8} {'Telea s':>8} {'ratio':>8}"
    print(header)
    print("-" * len(header))
    for sweep, size, steps in rows:
        r = run_worker({**base, "size": size, "steps": steps})
        ratio = r["seconds"] / r["telea"] if r["telea"] > 0 else float("inf")
        print(f"{sweep:<6} {f'{size}x{size}':>10} {steps:>5} {r['regions']:>7} {r['window']:>6} "
              f"{r['seconds'] / r['regions']:>9.3f} {r['call_mb']:>8.0f} {r['peak_mb']:>8.0f} {r['telea']:>8.4f} {ratio:>7.0f}x", flush=True)


if __name__ == "__main__":
    main()
