"""How large the alignment's ``M*`` is against the artifact, and how right, as tables (issue 15 part 7: say what
happened).

For every case the pipeline's alignment runs (:meth:`RefineByAlignPipeline.align`, the reference's object mask as
the refine path gives it), and ``M*`` is measured by :func:`refalign.windows.area_ratio` — its area
over the artifact's at the reference's scale. Where the case knows the artifact's true match (``correspondence.png``
of warp cases; the mask through ``meta.json``'s ``local_homography`` on crossview cases), its IoU with ``M*`` and the
share of it ``M*`` covers are averaged per size band, beside the alignment's score: a band whose score rises while
its IoU does not is why a large ``M*`` is reported as a vague match
(:data:`~refalign.pipelines.correspondence.VAGUE_AREA_RATIO`). Windows the sub-token path registered (``path`` =
``warp``) or located (``located``: a model not accepted for a paste,
:func:`~refalign.pipelines.subtoken.located_region`) are counted apart: the region they use is the artifact carried
through that model. A last table sets the IoU of the region each path uses beside the token-level ``M*``'s on the
same windows.

    python benchmarks/bench_mstar_size.py CASES [CASES ...] [--model CKPT] [--limit N]
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import cv2
import numpy as np
from PIL import Image

from refalign import RefineByAlignPipeline
from refalign.eval.cases import cases_with_truth
from refalign.mask_ops import iou
from refalign.pipelines.correspondence import VAGUE_AREA_RATIO
from refalign.windows import area_ratio

#: Size bands (times the artifact's area) the table is split into.
BANDS = (0.0, 3.0, VAGUE_AREA_RATIO, float("inf"))


def true_match(case) -> np.ndarray | None:
    """The artifact's true match on the reference, where the case knows it."""
    path = case.path / "correspondence.png"
    if path.is_file():
        return np.asarray(Image.open(path).convert("L")) > 127
    hom = case.meta.get("local_homography")
    if hom is None:
        return None
    h, w = case.reference.shape[:2]
    return cv2.warpPerspective(case.mask.astype(np.float32), np.asarray(hom), (w, h)) >= 0.5


def measure(pipe, case) -> dict:
    out = pipe.align(case.image, case.mask, case.reference, object_mask=case.reference_mask)
    row = {"kind": case.reference_kind, "path": out.path, "ratio": area_ratio(out.mask, case.mask),
           "score": float(out.score), "iou": None, "covered": None}
    truth = true_match(case)
    if truth is not None and truth.any():
        row["iou"] = iou(out.mask, truth)
        row["covered"] = float((truth & out.mask).sum() / truth.sum())
        m_star = out.correspondence.m_star if out.correspondence is not None else None
        row["m_star_iou"] = iou(m_star, truth) if m_star is not None else None
    return row


def _band(ratio: float) -> tuple[int, str]:
    """``(index, name)`` of the size band ``ratio`` falls in."""
    i, (lo, hi) = next((i, (a, b)) for i, (a, b) in enumerate(zip(BANDS, BANDS[1:])) if a <= ratio < b)
    return i, f"{lo:g}-{hi:g}x" if np.isfinite(hi) else f"{lo:g}x and more"


def report(rows: list[dict]) -> None:
    kinds = sorted({r["kind"] for r in rows})
    print("| reference | M* from | cases | M* / artifact: median | 90th pct | max | 10x or more |")
    print("|---|---|---|---|---|---|---|")
    for kind in kinds:
        for path in sorted({r["path"] for r in rows if r["kind"] == kind}):
            ratios = np.array([r["ratio"] for r in rows if r["kind"] == kind and r["path"] == path])
            print(f"| {kind} | {path} | {len(ratios)} | {np.median(ratios):.1f} | {np.percentile(ratios, 90):.1f} | "
                  f"{ratios.max():.1f} | {int((ratios >= VAGUE_AREA_RATIO).sum())} |")
    bands = defaultdict(list)
    for r in rows:
        if r["iou"] is not None and r["path"] == "cross-attention":
            bands[(r["kind"], _band(r["ratio"]))].append(r)
    print("\n| reference | M* / artifact | cases | IoU with the true match | share of it covered | score |")
    print("|---|---|---|---|---|---|")
    for (kind, (_, band)), rs in sorted(bands.items()):
        mean = lambda key: np.mean([r[key] for r in rs])  # noqa: E731
        print(f"| {kind} | {band} | {len(rs)} | {mean('iou'):.2f} | {mean('covered'):.2f} | {mean('score'):.2f} |")
    paths = defaultdict(list)
    for r in rows:
        if r["iou"] is not None and r["m_star_iou"] is not None:
            paths[(r["kind"], r["path"])].append(r)
    print("\n| reference | path | cases | IoU of the region used | IoU of M* on the same windows |")
    print("|---|---|---|---|---|")
    for (kind, path), rs in sorted(paths.items()):
        print(f"| {kind} | {path} | {len(rs)} | {np.mean([r['iou'] for r in rs]):.2f} | "
              f"{np.mean([r['m_star_iou'] for r in rs]):.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the shipped model)")
    ap.add_argument("--limit", type=int, default=0)
    args = ap.parse_args()
    pipe = RefineByAlignPipeline.from_pretrained(args.model)  # None: the shipped model
    report([measure(pipe, case) for case in cases_with_truth(args.cases, args.limit)])


if __name__ == "__main__":
    main()
