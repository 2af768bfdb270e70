"""Check the bench's headline metric against an independent implementation (numpy + Pillow only, no refalign code).

    python benchmarks/check_box_psnr.py CASES BENCH_OUTPUT [--method telea] [--tolerance 0.1]

For every case of ``CASES`` that ``BENCH_OUTPUT`` (a ``refalign bench`` output folder, or a comparison run's method
sub-folder) holds a result for, it recomputes the PSNR over the mask's bounding box grown by 8 px from the PNG files
alone: ``target.png``, ``mask.png`` (> 127 = artifact) and the method's ``refined.png``; then prints both means and
the largest per-case difference, and exits 1 when the means differ by more than ``--tolerance`` dB.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
from PIL import Image

MARGIN = 8
CAP = 100.0  # the bench stores an exact reconstruction as 100 dB


def box_psnr(refined: np.ndarray, target: np.ndarray, mask: np.ndarray) -> float:
    rows, cols = np.where(mask.any(axis=1))[0], np.where(mask.any(axis=0))[0]
    top, bottom = max(0, rows[0] - MARGIN), min(mask.shape[0], rows[-1] + 1 + MARGIN)
    left, right = max(0, cols[0] - MARGIN), min(mask.shape[1], cols[-1] + 1 + MARGIN)
    a = refined[top:bottom, left:right].astype(np.float64)
    b = target[top:bottom, left:right].astype(np.float64)
    mse = ((a - b) ** 2).mean()
    return CAP if mse == 0 else min(CAP, 10 * math.log10(255.0**2 / mse))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", type=Path)
    parser.add_argument("bench_output", type=Path)
    parser.add_argument("--method", default="telea", help="sub-folder of a comparison run (ignored when absent)")
    parser.add_argument("--tolerance", type=float, default=0.1)
    args = parser.parse_args()
    out = args.bench_output / args.method if (args.bench_output / args.method).is_dir() else args.bench_output
    records = {}
    for line in (out / "results.jsonl").read_text().splitlines():
        if line.strip():
            rec = json.loads(line)
            records[rec["case"]] = rec
    ours, theirs = [], []
    for name, rec in sorted(records.items()):
        case = args.cases / name
        if "box_psnr" not in rec or not (case / "target.png").is_file():
            continue
        target = np.asarray(Image.open(case / "target.png").convert("RGB"))
        mask = np.asarray(Image.open(case / "mask.png").convert("L")) > 127
        refined = np.asarray(Image.open(out / name / "refined.png").convert("RGB"))
        ours.append(box_psnr(refined, target, mask))
        theirs.append(float(rec["box_psnr"]))
    if not ours:
        print("no case with a box_psnr result and a target.png found")
        return 1
    diff = np.abs(np.array(ours) - np.array(theirs))
    print(f"{len(ours)} cases of {out}")
    print("| implementation | mean PSNR over the box (dB) |")
    print("|---|---:|")
    print(f"| refalign bench | {np.mean(theirs):.3f} |")
    print(f"| independent (numpy) | {np.mean(ours):.3f} |")
    print(f"\nmean difference {abs(np.mean(ours) - np.mean(theirs)):.4f} dB, largest per case {diff.max():.4f} dB")
    return 0 if abs(np.mean(ours) - np.mean(theirs)) <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
