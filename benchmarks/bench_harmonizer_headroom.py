"""How much a harmonizer (issue 15 part 5: the refiner as a correction over the transferred or synthesised pixels)
could gain at most, per source, as a table — the bar a model must clear before it can earn its place.

For every window of a ``refalign bench`` run (its ``results.jsonl`` and ``CASE/refined.png``, e.g. ``--method
refalign``) over cases with a ``target.png``, the window's pixels as shipped (the *source*) are scored over the mask's
box (PSNR, GMSD) beside two ideal corrections, each the truth's own correction seen through a filter and added
inside the mask only:

* **at a model's resolution R** — ``truth − source`` over the zoom-in window (planned as the pipeline plans it,
  :func:`refalign.pipelines.zoom.plan_windows`, with the window geometry of ``--model``, by default the shipped
  model's) resized to R×R by area and back by bilinear interpolation: all a refiner working at R px could add to
  the window, had it the truth;
* **smooth, at σ px** — ``truth − source`` low-passed inside the mask by normalised convolution
  (:func:`~refalign.transfer.colour.offset_field`): a lighting or colour correction with no detail.

``--harmonized RUN`` adds the same windows from a run with ``--set refinement.harmonize=true`` (the model's actual
correction). Rows are the windows' sources (``reference``: registered pastes, ``synthesis``, ``recoloured``, ``kept``;
warp-reference cases apart).

    python benchmarks/bench_harmonizer_headroom.py RUN CASES [CASES ...] [--harmonized RUN2] [--model CHECKPOINT]
        [--resolutions 64 128] [--sigmas 4 16]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

from refalign.errors import RefalignError
from refalign.eval.cases import list_cases, read_case
from refalign.eval.metrics import box_psnr_gmsd
from refalign.files import load_image
from refalign.pipelines.config import RefalignConfig
from refalign.pipelines.zoom import plan_windows
from refalign.shipped import default_model_path
from refalign.transfer.colour import offset_field


def at_resolution(source: np.ndarray, truth: np.ndarray, hole: np.ndarray, box: tuple[int, int, int, int],
                  resolution: int) -> np.ndarray:
    """``source`` plus ``truth − source`` over ``box`` (``(top, left, bottom, right)``) resized to
    ``resolution``² (area) and back (bilinear), inside ``hole`` only; float32."""
    t, l, b, r = box
    out = source.astype(np.float32)
    err = truth[t:b, l:r].astype(np.float32) - out[t:b, l:r]
    seen = cv2.resize(cv2.resize(err, (resolution, resolution), interpolation=cv2.INTER_AREA), (r - l, b - t),
                      interpolation=cv2.INTER_LINEAR)
    out[t:b, l:r][hole[t:b, l:r]] += seen[hole[t:b, l:r]]
    return out


def smooth_correction(source: np.ndarray, truth: np.ndarray, hole: np.ndarray, sigma: float) -> np.ndarray:
    """``source`` plus the truth's correction low-passed inside ``hole`` at ``sigma`` by normalised convolution
    (:func:`~refalign.transfer.colour.offset_field`: pixels outside the hole never leak in)."""
    out = source.astype(np.float32)
    out[hole] += offset_field(truth.astype(np.float32) - out, hole, sigma)[hole]
    return out


def _score(pixels: np.ndarray, truth: np.ndarray, hole: np.ndarray) -> tuple[float, float]:
    return box_psnr_gmsd(np.clip(np.round(pixels), 0, 255).astype(np.uint8), truth, hole)


def _records(run: Path) -> dict[str, dict]:
    path = run / "results.jsonl"
    if not path.is_file():
        print(f"{path}: missing; give the folder a `refalign bench ... --method refalign` run wrote", file=sys.stderr)
        sys.exit(2)
    return {r["case"]: r for r in map(json.loads, path.read_text().splitlines()) if "sources" in r}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run", type=Path, help="a `refalign bench --method refalign` output folder (or its method folder)")
    ap.add_argument("cases", type=Path, nargs="+")
    ap.add_argument("--harmonized", type=Path, help="the same cases run with --set refinement.harmonize=true")
    ap.add_argument("--model", type=Path, default=None,
                    help="the checkpoint the runs used, for its window geometry (default: the shipped model)")
    ap.add_argument("--resolutions", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--sigmas", type=float, nargs="+", default=[4.0, 16.0])
    args = ap.parse_args()
    runs = [r / "refalign" if (r / "refalign" / "results.jsonl").is_file() else r
            for r in [args.run] + ([args.harmonized] if args.harmonized else [])]
    records = [_records(r) for r in runs]
    cfg = RefalignConfig.load((args.model or default_model_path()) / "refalign.json").refinement
    columns = ["source"] + (["harmonized"] if args.harmonized else []) + [f"ideal at {n} px" for n in args.resolutions]
    columns += [f"smooth σ {s:g}" for s in args.sigmas]
    rows: dict[str, list[list[tuple[float, float]]]] = defaultdict(list)
    paths = [p for root in args.cases for p in list_cases(root)
             if all(p.name in rec for rec in records)]  # the cases every run scored (a broken one has no scores)
    for path in paths:
        try:
            case = read_case(path)
        except RefalignError as exc:
            print(f"skipped {path.name}: {exc}", file=sys.stderr)
            continue
        if case.target is None:
            continue
        outputs = [load_image(run / case.name / "refined.png") for run in runs]
        src, truth, (h, w) = outputs[0], case.target, case.mask.shape
        plans = plan_windows(case.mask, context=cfg.context, min_size=cfg.min_window, merge_growth=cfg.merge_growth)
        for plan, source in zip(plans, records[0][case.name]["sources"]):
            hole, win = plan.full_mask((h, w)), plan.window
            box = (max(win.top, 0), max(win.left, 0), min(win.bottom, h), min(win.right, w))
            scores = [_score(o, truth, hole) for o in outputs]
            scores += [_score(at_resolution(src, truth, hole, box, n), truth, hole) for n in args.resolutions]
            scores += [_score(smooth_correction(src, truth, hole, s), truth, hole) for s in args.sigmas]
            group = "warp: " + source if case.reference_kind == "warp" else source
            rows[group].append(scores)
    print("Box PSNR / GMSD per window (mean), the source as shipped against ideal corrections of it.\n")
    print("| windows | n | " + " | ".join(columns) + " |")
    print("|---|---|" + "---|" * len(columns))
    for group in sorted(rows):
        mean = np.mean(np.array(rows[group]), axis=0)
        print(f"| {group} | {len(rows[group])} | " + " | ".join(f"{p:.2f} / {g:.3f}" for p, g in mean) + " |")


if __name__ == "__main__":
    main()
