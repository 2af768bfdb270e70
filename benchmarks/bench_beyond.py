"""Beyond-the-paper features measured on a case folder set (``refalign make-cases``), printed as tables.

* ``detect``   — IoU of ``refalign detect``'s proposed mask against ``mask.png``, per reference kind.
* ``subtoken`` — correspondence IoU against ``correspondence.png`` (warp cases) of the paper's token-level ``M*``
  and of sub-token alignment (feature matching in M*'s neighbourhood, falling back to M*), and how often each path
  was taken. Needs ``--model``.

    python benchmarks/bench_beyond.py CASES [--model CKPT] [--limit N] [--only detect|subtoken]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

from refalign.mask_ops import iou


def bench_detect(cases) -> None:
    from refalign.detect import DetectionError, detect_artifacts

    rows = defaultdict(list)
    fails = defaultdict(int)
    seconds = []
    for case in cases:
        t0 = time.perf_counter()
        try:
            det = detect_artifacts(case.image, case.reference, reference_mask=case.reference_mask)
            rows[case.reference_kind].append(iou(det.mask, case.mask))
        except DetectionError:
            fails[case.reference_kind] += 1
            rows[case.reference_kind].append(0.0)
        seconds.append(time.perf_counter() - t0)
    print("\n## artifact detection (IoU with mask.png; a case that cannot be registered counts 0)\n")
    print("| reference kind | cases | mean IoU | median IoU | IoU > 0.5 | not registered |")
    print("|---|---|---|---|---|---|")
    for kind, vals in sorted(rows.items()):
        print(f"| {kind} | {len(vals)} | {statistics.mean(vals):.3f} | {statistics.median(vals):.3f} | "
              f"{sum(v > 0.5 for v in vals)} | {fails[kind]} |")
    print(f"\nmedian {statistics.median(seconds):.2f} s per case")


def bench_subtoken(cases, model: str) -> None:
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline

    pipe = RefineByAlignPipeline.from_pretrained(model)
    pipe.set_progress_bar_config(disable=True)
    plain, sub, paths = [], [], defaultdict(int)
    for case in cases:
        if case.correspondence is None:
            continue
        a = pipe.align(case.image, case.mask, case.reference, object_mask=case.reference_mask, subtoken=False)
        b = pipe.align(case.image, case.mask, case.reference, object_mask=case.reference_mask, subtoken=True)
        plain.append(iou(a.mask, case.correspondence))
        sub.append(iou(b.mask, case.correspondence))
        paths[b.path] += 1
    if not plain:
        print("no case has correspondence.png; nothing to measure")
        return
    print("\n## sub-token alignment (correspondence IoU on cases with correspondence.png)\n")
    print("| alignment | cases | mIoU | median IoU |")
    print("|---|---|---|---|")
    print(f"| cross-attention M* (paper) | {len(plain)} | {statistics.mean(plain):.3f} | {statistics.median(plain):.3f} |")
    print(f"| sub-token (ours) | {len(sub)} | {statistics.mean(sub):.3f} | {statistics.median(sub):.3f} |")
    print(f"\npaths taken: {dict(paths)}")


def main() -> None:
    from refalign.eval.cases import list_cases, read_case

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases")
    ap.add_argument("--model")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--only", choices=("detect", "subtoken"))
    args = ap.parse_args()
    paths = list_cases(args.cases)
    cases = [read_case(p) for p in (paths[: args.limit] if args.limit else paths)]
    if args.only in (None, "detect"):
        bench_detect(cases)
    if args.only in (None, "subtoken"):
        if args.model:
            bench_subtoken(cases, args.model)
        else:
            print("\n(sub-token: pass --model CKPT)")


if __name__ == "__main__":
    main()
