"""Start-up benchmark: how long a user waits for ``refalign`` on a cold process, and where the time goes.

Each row is a fresh Python process (median of ``--repeat`` runs; the OS file cache is warm after the first):

* ``refalign --version`` and an error for a bad input (a missing image): both must answer before torch, diffusers
  or transformers are imported (issue 17 target: < 0.5 s);
* a cold ``refalign refine`` of a 512x512 case (the procedural example) end to end (target: <= 4 s), and the same
  work in-process split into import / load / compute;
* the libraries alone (import torch, diffusers' UNet and pipeline, transformers' DINOv2), the floor of any cold run;
* OpenCV Telea on the same case, CLI-free (import cv2 + numpy + PIL, read, inpaint, write), its import / compute.

    python benchmarks/bench_startup.py --repeat 5 [--compare OLD_CHECKOUT/src]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REFINE_BREAKDOWN = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
from refalign.files import load_image, load_mask, save_image
from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline
t1 = time.perf_counter()
pipe = RefineByAlignPipeline.from_pretrained()
pipe.set_progress_bar_config(disable=True)
t2 = time.perf_counter()
case = sys.argv[1]
image = load_image(f"{case}/image.png")
mask = load_mask(f"{case}/mask.png", image.shape[:2])
out = pipe(image, mask, load_image(f"{case}/reference.png"), seed=0)
save_image(out.image, f"{case}/breakdown.png")
t3 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": t2 - t1, "compute": t3 - t2}))
"""

LIBRARIES_ONLY = r"""
import json, time
t0 = time.perf_counter()
import torch
from diffusers import DiffusionPipeline, UNet2DConditionModel
from transformers import Dinov2Model
print(json.dumps({"import": time.perf_counter() - t0, "load": 0.0, "compute": 0.0}))
"""

TELEA_BREAKDOWN = r"""
import json, sys, time
t0 = time.perf_counter()
import cv2
import numpy as np
from PIL import Image
t1 = time.perf_counter()
case = sys.argv[1]
image = np.asarray(Image.open(f"{case}/image.png").convert("RGB"))
mask = (np.asarray(Image.open(f"{case}/mask.png").convert("L")) > 127).astype(np.uint8)
out = cv2.inpaint(image, mask, 3, cv2.INPAINT_TELEA)
Image.fromarray(out).save(f"{case}/telea.png")
t2 = time.perf_counter()
print(json.dumps({"import": t1 - t0, "load": 0.0, "compute": t2 - t1}))
"""


def wall(cmd: list[str], expect: int = 0, env: dict | None = None) -> float:
    """Wall-clock seconds of one process, checking its exit code."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - start
    if proc.returncode != expect:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr.strip()[-300:]}")
    return seconds


def breakdown(script: str, case: Path) -> dict:
    """Run ``script`` in a fresh process; return its import / load / compute seconds and the process's wall time."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", script, str(case)], capture_output=True, text=True, check=True)
    parts = json.loads(proc.stdout.strip().splitlines()[-1])
    parts["total"] = time.perf_counter() - start
    return parts


def make_case(folder: Path) -> Path:
    from refalign.examples import make_example
    from refalign.files import save_image

    ex = make_example(size=512)
    for name, arr in (("image", ex.image), ("mask", ex.mask), ("reference", ex.reference)):
        save_image(arr, folder / f"{name}.png")
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--compare", type=Path, default=None,
                        help="Another refalign source folder (e.g. an older checkout's src/) to time the CLI rows of")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "refalign.cli"]
    with tempfile.TemporaryDirectory() as tmp:
        case = make_case(Path(tmp))
        refine = ["refine", str(case / "image.png"), "--mask", str(case / "mask.png"), "-r",
                  str(case / "reference.png"), "-o", str(case / "out.png"), "--overwrite"]
        bad = ["refine", str(case / "missing.png"), "--mask", str(case / "mask.png"), "-r", str(case / "reference.png")]
        runs = {
            "refalign --version": lambda env: wall([*cli, "--version"], env=env),
            "refalign refine, bad input (exit 2)": lambda env: wall([*cli, *bad], expect=2, env=env),
            "refalign refine 512x512, cold CLI": lambda env: wall([*cli, *refine], env=env),
        }
        splits = {"refalign (in-process split)": REFINE_BREAKDOWN,
                  "torch + diffusers + transformers alone": LIBRARIES_ONLY,
                  "OpenCV Telea, CLI-free": TELEA_BREAKDOWN}
        envs = {"": None}
        if args.compare is not None:
            envs[f" [{args.compare}]"] = {**os.environ, "PYTHONPATH": str(args.compare.resolve())}
        rows: dict[str, list] = {}
        for _ in range(args.repeat):  # interleaved, so that a change in the machine's load hits every row alike
            for name, run in runs.items():
                for tag, env in envs.items():
                    rows.setdefault(name + tag, []).append(run(env))
            for name, script in splits.items():
                rows.setdefault(name, []).append(breakdown(script, case))
    med = statistics.median
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} at the end, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    print(f"| run (median of {args.repeat}, fresh process) | import s | load s | compute s | total s |")
    print("|---|---|---|---|---|")
    for name, values in rows.items():
        if isinstance(values[0], dict):
            cols = [med(r[k] for r in values) for k in ("import", "load", "compute", "total")]
            print(f"| {name} | {cols[0]:.2f} | {cols[1]:.2f} | {cols[2]:.2f} | {cols[3]:.2f} |")
        else:
            print(f"| {name} | | | | {med(values):.2f} |")


if __name__ == "__main__":
    main()
