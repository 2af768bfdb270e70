"""The located warp averaged into the synthesis, as tables (issue 15 part 4; docs/results.md, session 18).

A window that does not register may still be *located* (:func:`~refalign.pipelines.subtoken.located_region`): its
best model puts the artifact near its true match, but is not accepted for a paste. Where ``auto`` synthesises such a
window, the shipped pipeline averages the synthesis with the reference warped through that model (colour-fitted as a
paste is, without the flow; :func:`~refalign.transfer.source.mix_sources`) when the model explains at least
:data:`~refalign.pipelines.subtoken.LOCATED_MIX_CORRELATION` of the ring's gradients.

For every case the pipeline runs once with ``paste=False`` (no paste and no mean: the synthesis alone) and its
located, synthesised windows are taken apart: the synthesis, the located paste alone, their mean at several weights,
and the paste's coarse band only, each scored over the artifact (box PSNR / GMSD, :mod:`refalign.eval.metrics`) and
tabled by the model's ring correlation. The time of the shipped call (``paste=True``) against ``paste=False`` on the
mixed cases, alternating, gives the mean's cost.

    python benchmarks/bench_located_mix.py CASES [CASES ...] [--model CKPT] [--limit N] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

import cv2
import numpy as np
import torch

from refalign import RefineByAlignPipeline
from refalign.eval.cases import cases_with_truth
from refalign.eval.runner import pixel_metrics
from refalign.pipelines.subtoken import LOCATED_MIX_CORRELATION, LOCATED_MIX_WEIGHT
from refalign.transfer.source import mix_sources, paste_hole, registered_source

#: Weights of the located paste tried in the mean, and the bands (Gaussian σ, pixels) of its coarse-band variant.
WEIGHTS = (0.3, 0.5, 0.7)
BANDS = (2.0, 4.0)
#: Ring-correlation bands the table is split into.
CORRELATIONS = (0.15, 0.25, LOCATED_MIX_CORRELATION, 1.0)


def _call(pipe, case, paste: bool):
    return pipe(case.image, case.mask, case.reference, object_mask=case.reference_mask, paste=paste,
                generator=torch.Generator("cpu").manual_seed(0))


def _score(output: np.ndarray, case) -> tuple[float, float]:
    m = pixel_metrics(output, case.target, case.mask)
    return m["box_psnr"], m["gmsd"]


def measure(pipe, case) -> dict | None:
    """The located, synthesised window of a one-window case taken apart (``None`` for any other case)."""
    out = _call(pipe, case, paste=False)
    if len(out.sources) != 1 or not out.sources[0].startswith("synthesis") or not out.alignment:
        return None
    corr = out.alignment[0].correspondence
    if corr is None or corr.path != "located" or corr.fit is None:
        return None
    best = corr.fit.best
    located, valid, (t, l, b, r), _ = registered_source(case.image, case.mask, case.reference, best.matrix,
                                                        best.score, flow=False)
    synthesis = np.asarray(out.image)
    ours = synthesis[t:b, l:r].astype(np.float32)

    def variant(pixels: np.ndarray) -> tuple[float, float]:
        image = synthesis.copy()
        paste_hole(image, pixels, case.mask, (t, l, b, r), valid)
        return _score(image, case)

    row = {"correlation": best.score.gradient_correlation, "synthesis": _score(synthesis, case),
           "paste": variant(located)}
    for w in WEIGHTS:
        row[f"mean {w:g}"] = variant(mix_sources(ours, located, valid, w))
    for sigma in BANDS:
        low = cv2.GaussianBlur(located, (0, 0), sigma) - cv2.GaussianBlur(ours, (0, 0), sigma)
        row[f"band >{sigma:g}px, {LOCATED_MIX_WEIGHT:g}"] = variant(ours + LOCATED_MIX_WEIGHT * low)
    return row


def timing(pipe, cases: list, repeats: int) -> tuple[float, float]:
    """Seconds per case of the shipped call and of ``paste=False``, alternating their order each repeat."""
    total = {True: 0.0, False: 0.0}
    for i in range(repeats):
        for paste in (True, False) if i % 2 == 0 else (False, True):
            for case in cases:
                start = time.perf_counter()
                _call(pipe, case, paste)
                total[paste] += time.perf_counter() - start
    n = max(1, repeats * len(cases))
    return total[True] / n, total[False] / n


def report(rows: list[dict]) -> None:
    keys = [k for k in rows[0] if k != "correlation"]
    bands = defaultdict(list)
    for r in rows:
        lo = max(c for c in CORRELATIONS if c <= r["correlation"]) if r["correlation"] >= CORRELATIONS[0] else 0.0
        bands[lo].append(r)
    print("| ring correlation | windows | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    groups = [(f"{lo:g} and more" if lo == CORRELATIONS[-2] else f"{lo:g}-", rs) for lo, rs in sorted(bands.items())]
    groups.append(("all", rows))
    for name, rs in groups:
        cells = [f"{np.mean([r[k][0] for r in rs]):.2f} / {np.mean([r[k][1] for r in rs]):.3f}" for k in keys]
        print(f"| {name} | {len(rs)} | " + " | ".join(cells) + " |")
    mixed = [r for r in rows if r["correlation"] >= LOCATED_MIX_CORRELATION]
    key = f"mean {LOCATED_MIX_WEIGHT:g}"
    gains = np.array([r[key][0] - r["synthesis"][0] for r in mixed])
    if len(gains):
        print(f"\nshipped ({key} from {LOCATED_MIX_CORRELATION:g}): {len(mixed)} windows, {int((gains > 0).sum())} gain, "
              f"{int((gains < -1).sum())} lose more than 1 dB (worst {gains.min():+.2f})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--model", default=None, help="checkpoint folder (default: the shipped model)")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=3, help="alternating timing runs over the mixed cases (0: none)")
    args = ap.parse_args()
    pipe = RefineByAlignPipeline.from_pretrained(args.model)  # None: the shipped model
    pipe.set_progress_bar_config(disable=True)
    rows, mixed = [], []
    for case in cases_with_truth(args.cases, args.limit):
        row = measure(pipe, case)
        if row is not None:
            rows.append(row)
            if row["correlation"] >= LOCATED_MIX_CORRELATION:
                mixed.append(case)
    if not rows:
        print("no located, synthesised window in these cases")
        return
    report(rows)
    if args.repeats > 0 and mixed:
        on, off = timing(pipe, mixed, args.repeats)
        print(f"\ntime per mixed case: {on:.2f} s shipped, {off:.2f} s without the mean (paste=False): {on / off:.2f}x")


if __name__ == "__main__":
    main()
