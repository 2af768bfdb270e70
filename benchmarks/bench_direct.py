"""The direct search alone (issue 15 part 1: :func:`refalign.transfer.register.register_direct`, the masked template
search and ECC that run where features find no model) on a case set, with each reference as it is and upscaled
``K`` times — a reference photo with more pixels than the image — as a table.

Per reference scale: the windows, how many the direct search accepts, how many of those are right (warp cases,
whose ``meta.json`` holds the true homography: the accepted model puts the mask's pixels within 2 image pixels of
where the truth does, on average), and the search's time per window, all from the same run (one process; give
``OMP_NUM_THREADS=1`` for one thread).

    python benchmarks/bench_direct.py CASES [CASES ...] [--scales 1 3] [--limit N]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np

from refalign.eval.cases import cases_with_truth
from refalign.transfer.register import project, register_direct

#: An accepted model is right when it puts the mask's pixels this close (image pixels, on average) to the truth's.
RIGHT_PX = 2.0


def measure(case, k: float) -> tuple[bool, bool | None, float]:
    """``(accepted, right, seconds)`` of the direct search on ``case`` with its reference upscaled ``k`` times
    (``right`` is ``None`` without a true homography or an accepted model)."""
    ref = case.reference if k == 1 else cv2.resize(case.reference, None, fx=k, fy=k, interpolation=cv2.INTER_CUBIC)
    start = time.perf_counter()
    reg = register_direct(case.image, case.mask, ref)
    seconds = time.perf_counter() - start
    truth = case.meta.get("homography")
    if not reg.ok or truth is None:
        return reg.ok, None, seconds
    ys, xs = np.nonzero(case.mask)
    xy = np.float32(np.stack([xs, ys], 1))
    scaled = np.array([[k, 0, (k - 1) / 2], [0, k, (k - 1) / 2], [0, 0, 1.0]]) @ np.asarray(truth)  # pixel centres
    error = np.linalg.norm(project(reg.matrix, xy) - project(scaled, xy), axis=1).mean() / k
    return True, bool(error < RIGHT_PX), seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0, 3.0], help="reference upscaling factors")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    cases = list(cases_with_truth(args.cases, args.limit))
    print("| reference scale | windows | accepted | right (warp cases) | s/window |")
    print("|---|---|---|---|---|")
    for k in args.scales:
        rows = [measure(case, k) for case in cases]
        right = [r for _, r, _ in rows if r is not None]
        print(f"| {k:g}x | {len(rows)} | {sum(a for a, _, _ in rows)} | {sum(right)} of {len(right)} | "
              f"{np.mean([s for _, _, s in rows]):.3f} |")


if __name__ == "__main__":
    main()
