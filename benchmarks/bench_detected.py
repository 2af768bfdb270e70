"""``refalign refine`` without ``--mask``, as tables: the detector's mask, then the pipeline under each
``--unregistered`` policy, scored against the truth over the whole image (a detected region may be clean, so a
repair can do harm anywhere, not only over the artifact).

For every case (``refalign make-cases`` folders with ``target.png``) the artifact mask is proposed by
:func:`refalign.detect.detect_artifacts` against the case's reference, as ``refine`` does without ``--mask``; the
cases it refuses or finds nothing on are counted. The pipeline then runs on each proposed mask once per policy
(``keep``, what ``refine`` uses for a detected mask, and ``auto``, the model's default for a painted one). The
table gives, by reference kind: the detected cases, those overlapping the artifact (IoU above 0.1) and the mean
IoU; per policy the mean image PSNR against the input's, and how many images came out worse than the input.

    python benchmarks/bench_detected.py CASES [CASES ...] [--limit N] [--model DIR] [--policy keep --policy auto]
"""

from __future__ import annotations

import argparse
import statistics
from collections import Counter

import numpy as np
import torch
from tqdm.auto import tqdm

from refalign.detect import DetectionError, detect_artifacts
from refalign.eval.cases import cases_with_truth
from refalign.eval.metrics import psnr
from refalign.eval.report import grouped
from refalign.mask_ops import iou
from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline
from refalign.shipped import default_model_path

#: A detected mask "finds" the artifact when its IoU with the truth's mask is above this.
HIT_IOU = 0.1


def measure(pipe: RefineByAlignPipeline, case, policies: list[str]) -> dict:
    """One case: ``{"kind", "detect"}`` — ``"refused"``, ``"none"`` or ``"found"`` — and for a found mask its IoU
    and per policy the image PSNR against the truth (``"input"``: the image as given)."""
    row = {"kind": case.reference_kind}
    try:
        det = detect_artifacts(case.image, case.reference, reference_mask=case.reference_mask)
    except DetectionError:
        return dict(row, detect="refused")
    if not det.mask.any():
        return dict(row, detect="none")
    row.update(detect="found", iou=iou(det.mask, case.mask),
               input=psnr(case.image, case.target))
    for policy in policies:
        out = pipe(case.image, det.mask, case.reference, seed=0, unregistered=policy, object_mask=case.reference_mask)
        row[policy] = psnr(np.asarray(out.image), case.target)
    return row


def report(rows: list[dict], policies: list[str]) -> None:
    outcomes = Counter(r["detect"] for r in rows)
    print(f"\n{len(rows)} cases: detection refused {outcomes['refused']}, found nothing on {outcomes['none']}, "
          f"proposed a mask on {outcomes['found']}")
    found = [r for r in rows if r["detect"] == "found"]
    if not found:
        return
    head = [f"{p}: image PSNR / worse than input" for p in policies]
    print("\n| reference kind | detected | IoU > 0.1 | mean IoU | input, image PSNR | " + " | ".join(head) + " |")
    print("|---|---|---|---|---|" + "---|" * len(policies))
    for kind, rs in {"all": found, **grouped(found, "kind")}.items():
        cells = [f"{statistics.mean(r[p] for r in rs):.2f} / {sum(r[p] < r['input'] - 0.01 for r in rs)}"
                 for p in policies]
        print(f"| {kind} | {len(rs)} | {sum(r['iou'] > HIT_IOU for r in rs)} | "
              f"{statistics.mean(r['iou'] for r in rs):.3f} | {statistics.mean(r['input'] for r in rs):.2f} | "
              + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", help="case folders (refalign make-cases)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many cases (0: all)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--policy", action="append", default=None, choices=("keep", "auto", "synthesize", "model"),
                        help="--unregistered policies to compare (repeatable; default: keep and auto)")
    args = parser.parse_args()
    policies = args.policy or ["keep", "auto"]
    torch.set_num_threads(1)
    pipe = RefineByAlignPipeline.from_pretrained(args.model or default_model_path())
    pipe.set_progress_bar_config(disable=True)
    rows = [measure(pipe, case, policies)
            for case in tqdm(cases_with_truth(args.cases, args.limit), desc="bench_detected", unit="case")]
    report(rows, policies)


if __name__ == "__main__":
    main()
