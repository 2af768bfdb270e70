"""Recolouring unregistered artifacts from their surroundings (issue 15 part 6), as tables.

For every case (``refalign make-cases`` folders with ``target.png``) whose artifact's neighbourhood does not register
with the reference (:func:`refalign.transfer.register.register_hole`, as the refine path runs it), the colour step
across the mask's edge is measured (:func:`refalign.transfer.damage.edge_colours`) and, where the refine path's
``unregistered="auto"`` recolours the region, the recoloured region is scored over the mask's box (PSNR, GMSD)
beside doing nothing and OpenCV's Telea fill from the same run, by artifact kind. The last table gives each kind's
steps (before and after the colour map, as multiples of the natural step), so the thresholds' margins show.

    python benchmarks/bench_recolour.py CASES [CASES ...] [--limit N]
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict

import numpy as np

from refalign.eval.cases import cases_with_truth
from refalign.eval.metrics import box_psnr_gmsd
from refalign.fill import telea_fill
from refalign.transfer.damage import (
    MAX_RECOLOURED_STEP, MAX_ROUND_TRIP, MIN_EXPLAINED, MIN_STEP_REMOVED, edge_colours, recolour_region,
)
from refalign.transfer.engine import ReferenceView
from refalign.transfer.register import register_hole
from refalign.transfer.source import paste_hole


def measure(case) -> dict | None:
    """One unregistered case's numbers (``None`` when the registration accepts a model)."""
    reg = register_hole(case.image, case.mask, case.reference, ReferenceView.prepare(case.reference).features)
    if reg.ok:
        return None
    score = lambda out: box_psnr_gmsd(out, case.target, case.mask)  # noqa: E731
    edge = edge_colours(case.image, case.mask)
    row = {"kind": case.artifact_kind, "step": edge.step, "left": edge.recoloured_step, "trip": edge.round_trip,
           "explained": edge.explained,
           "fired": edge.recolours,
           "nothing": score(case.image), "telea": score(telea_fill(case.image, case.mask))}
    if edge.recolours:
        out = case.image.copy()
        pixels, box = recolour_region(case.image, case.mask, edge.colour)
        paste_hole(out, pixels, case.mask, box)
        row["recoloured"] = score(out)
    return row


def _mean(rows: list[dict], key: str) -> str:
    if not rows:
        return "–"
    return (f"{statistics.mean(r[key][0] for r in rows):.2f} / {statistics.mean(r[key][1] for r in rows):.3f}")


def report(rows: list[dict]) -> None:
    by_kind = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    by_kind["all"] = rows
    print("\n## recoloured windows (box PSNR / GMSD, means over the recoloured windows)\n")
    print("| artifact kind | unregistered | recoloured | doing nothing | Telea | recoloured |")
    print("|---|---|---|---|---|---|")
    for kind, rs in sorted(by_kind.items()):
        fired = [r for r in rs if r["fired"]]
        print(f"| {kind} | {len(rs)} | {len(fired)} | {_mean(fired, 'nothing')} | {_mean(fired, 'telea')} | "
              f"{_mean(fired, 'recoloured')} |")
    print(f"\n## colour steps by kind, in natural steps (recoloured when the map leaves ≤ {MAX_RECOLOURED_STEP}, "
          f"removes ≥ {MIN_STEP_REMOVED}, its round trip is ≤ {MAX_ROUND_TRIP} and it explains ≥ {MIN_EXPLAINED} "
          "of the outside colours' spread): median (range)\n")
    print("| artifact kind | step | left after the map | removed | round trip | explained |")
    print("|---|---|---|---|---|---|")
    for kind, rs in sorted(by_kind.items()):
        cols = [np.array([r["step"] for r in rs]), np.array([r["left"] for r in rs]),
                np.array([r["step"] - r["left"] for r in rs]), np.array([r["trip"] for r in rs]),
                np.array([r["explained"] for r in rs])]
        print(f"| {kind} | " + " | ".join(f"{np.median(c):.2f} ({c.min():.2f}–{c.max():.2f})" for c in cols) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    rows = [measure(case) for case in cases_with_truth(args.cases, args.limit)]
    report([r for r in rows if r is not None])


if __name__ == "__main__":
    main()
