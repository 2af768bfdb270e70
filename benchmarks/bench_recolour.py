"""Recolouring unregistered artifacts from their surroundings (issue 15 part 6), as tables.

For every case (``refalign make-cases`` folders with ``target.png``) whose artifact's neighbourhood does not register
with the reference (:func:`refalign.transfer.register.register_hole`, as the refine path runs it), the colour step
across the mask's edge is measured (:func:`refalign.transfer.damage.edge_colours`) and, where the refine path's
``unregistered="auto"`` recolours the region (by the ring's test, or on the reference's word where the ring cannot
confirm the map), the recoloured region is scored over the mask's box (PSNR, GMSD)
beside doing nothing and OpenCV's Telea fill from the same run, by artifact kind. The second table gives each
kind's steps (before and after the colour map, as multiples of the natural step), so the thresholds' margins show.

``--clean-photos DIR`` adds the check that matters most to a user who masks a logo or patch along its own border: on
the photos under ``DIR`` (``*/*.jpg``, resized to 512 px), every region of a k-means colour segmentation between
300 and 12000 px becomes a mask over *clean* content; a recolouring there changes pixels that were right, so the
table counts them and gives how far the worst ones moved (PSNR of the recoloured region against the photo). Masks the
ring refuses though its map removes the step are asked of the reference as the refine path does
(:func:`refalign.transfer.damage.reference_colours`), with every other photo of the object as the reference in turn.

    python benchmarks/bench_recolour.py CASES [CASES ...] [--limit N] [--clean-photos ../shared/data/dreambooth-dev]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import cv2
import numpy as np

from refalign.eval.cases import cases_with_truth
from refalign.eval.metrics import box_psnr_gmsd, psnr
from refalign.eval.report import grouped
from refalign.files import load_image
from refalign.fill import telea_fill
from refalign.transfer.damage import (
    MAX_RECOLOURED_STEP, MAX_ROUND_TRIP, MIN_EXPLAINED, MIN_STEP, MIN_STEP_REMOVED, ROUND_TRIP_SHARE, edge_colours,
    interior_blur, interior_detail, looks_mild, recolour_region, reference_colours, strokes_follow,
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
           "explained": edge.explained, "fired": edge.recolours or by_reference(case, edge),
           "nothing": score(case.image), "telea": score(telea_fill(case.image, case.mask))}
    row["by_reference"] = row["fired"] and not edge.recolours
    if row["fired"]:
        row["recoloured"] = score(recoloured(case.image, case.mask, edge))
    return row


def by_reference(case, edge) -> bool:
    """Whether ``auto`` recolours the case's region on the reference's word where the ring refuses a map that removes
    the step (:func:`refalign.transfer.damage.reference_colours`), as the refine path decides it: not where the
    region breaks from its surroundings and keeps its own strokes in a synthesis's colours."""
    if not edge.removes_step():
        return False
    image, mask = case.image, case.mask
    if strokes_follow(edge, interior_blur(image, mask), interior_detail(image, mask), looks_mild(image, mask)):
        return False
    return reference_colours(image, mask, edge.colour, case.reference).confirms


def recoloured(image: np.ndarray, mask: np.ndarray, edge) -> np.ndarray:
    """``image`` with the region ``mask`` recoloured as the refine path pastes it (``edge``: its
    :func:`~refalign.transfer.damage.edge_colours`)."""
    out = image.copy()
    pixels, box = recolour_region(image, mask, edge.colour)
    paste_hole(out, pixels, mask, box)
    return out


def _mean(rows: list[dict], key: str) -> str:
    if not rows:
        return "–"
    return f"{statistics.mean(r[key][0] for r in rows):.2f} / {statistics.mean(r[key][1] for r in rows):.3f}"


def report(rows: list[dict]) -> None:
    if not rows:
        print("\nevery case registers: no window for the recolouring")
        return
    by_kind = {"all": rows, **grouped(rows, "kind")}
    print("\n## recoloured windows (box PSNR / GMSD, means over the recoloured windows)\n")
    print("| artifact kind | unregistered | recoloured | of them on the reference's word | doing nothing | Telea | "
          "recoloured |")
    print("|---|---|---|---|---|---|---|")
    for kind, rs in sorted(by_kind.items()):
        fired = [r for r in rs if r["fired"]]
        print(f"| {kind} | {len(rs)} | {len(fired)} | {sum(r['by_reference'] for r in fired)} | "
              f"{_mean(fired, 'nothing')} | {_mean(fired, 'telea')} | {_mean(fired, 'recoloured')} |")
    print(f"\n## colour steps by kind, in natural steps (recoloured when the step is ≥ {MIN_STEP}, the map leaves "
          f"≤ {MAX_RECOLOURED_STEP}, removes ≥ {MIN_STEP_REMOVED}, its round trip is ≤ {MAX_ROUND_TRIP} or "
          f"{ROUND_TRIP_SHARE} of the step and it explains ≥ {MIN_EXPLAINED} of the outside colours' spread): "
          "median (range)\n")
    print("| artifact kind | step | left after the map | removed | round trip | explained |")
    print("|---|---|---|---|---|---|")
    for kind, rs in sorted(by_kind.items()):
        cols = [np.array([r["step"] for r in rs]), np.array([r["left"] for r in rs]),
                np.array([r["step"] - r["left"] for r in rs]), np.array([r["trip"] for r in rs]),
                np.array([r["explained"] for r in rs])]
        print(f"| {kind} | " + " | ".join(f"{np.median(c):.2f} ({c.min():.2f}–{c.max():.2f})" for c in cols) + " |")


def segment_masks(image: np.ndarray, k: int = 6, area: tuple[int, int] = (300, 12000)) -> list[np.ndarray]:
    """Masks along colour regions' own borders: the connected regions of a ``k``-means colour segmentation (OpenCV,
    on the image smoothed at σ = 2, seeded) whose area is within ``area``, closed by a 5×5 square."""
    h, w = image.shape[:2]
    samples = cv2.GaussianBlur(image, (0, 0), 2).reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(0)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 1.0)
    _, labels, _ = cv2.kmeans(samples, k, None, criteria, 2, cv2.KMEANS_PP_CENTERS)
    labels = labels.reshape(h, w)
    masks = []
    for c in range(k):
        n, regions, stats, _ = cv2.connectedComponentsWithStats((labels == c).astype(np.uint8), connectivity=8)
        for i in range(1, n):
            if area[0] <= stats[i, cv2.CC_STAT_AREA] <= area[1]:
                mask = cv2.morphologyEx((regions == i).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((5, 5), np.uint8))
                if mask.any() and not mask.all():
                    masks.append(mask > 0)
    return masks


def clean_check(folder: str) -> None:
    """The recolourings :func:`segment_masks` draw on the clean photos under ``folder`` (module docstring): by the
    ring's test, and by the reference's word where the ring refuses a map that removes the step (each other photo of
    the same object as the reference)."""
    moved, confirmed = [], []
    photos = sorted(Path(folder).glob("*/*.jpg"))
    size = lambda path: cv2.resize(load_image(path), (512, 512), interpolation=cv2.INTER_AREA)  # noqa: E731
    count = asked = pairs = 0
    for obj in sorted({p.parent for p in photos}):
        images = {path: size(path) for path in photos if path.parent == obj}
        for path, image in images.items():
            others = [other for other_path, other in images.items() if other_path != path]
            for mask in segment_masks(image):
                count += 1
                edge = edge_colours(image, mask)
                name = f"{path.parent.name}/{path.name}"
                if edge.recolours:
                    moved.append((psnr(recoloured(image, mask, edge)[mask], image[mask]), name))
                elif edge.removes_step():
                    asked += 1
                    for other in others:
                        pairs += 1
                        if reference_colours(image, mask, edge.colour, other).confirms:
                            confirmed.append((psnr(recoloured(image, mask, edge)[mask], image[mask]), name))
    print("\n## clean photos, masks along colour regions' own borders (nothing to repair)\n")
    print("| photos | masks | recoloured | worst: PSNR of the recoloured region against the photo "
          "| refused by the ring, the map removing the step | (mask, reference) pairs "
          "| recoloured on the reference's word | worst |")
    print("|---|---|---|---|---|---|---|---|")
    worst = lambda hits: ", ".join(f"{p:.1f} dB ({name})" for p, name in sorted(hits)[:3]) or "–"  # noqa: E731
    print(f"| {len(photos)} | {count} | {len(moved)} | {worst(moved)} | {asked} | {pairs} | {len(confirmed)} | "
          f"{worst(confirmed)} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--clean-photos", help="also count recolourings of clean photos under masks along colour regions")
    args = ap.parse_args()
    rows = [measure(case) for case in cases_with_truth(args.cases, args.limit)]
    report([r for r in rows if r is not None])
    if args.clean_photos:
        clean_check(args.clean_photos)


if __name__ == "__main__":
    main()
