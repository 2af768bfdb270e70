"""Several references against one (issue 15 part 7: "with several references, each window uses the one with the
best correspondence"), as tables.

A user repairing a product photo often has several other photos of the object (a product page shows four to six).
For every other-photo case of ``refalign make-cases`` folders (``meta.json`` names its ``source_photo`` and
``reference_photo``; ``target.png`` gives the truth), every other photo of the same object — not the source photo,
not a near-duplicate of it (:func:`~refalign.eval.make_cases.is_near_duplicate`), not a pair the folder's
``make-cases.json`` avoids — becomes a reference, resized as the case's reference was and given its object mask as
``make-cases`` makes it. The case is refined by the shipped pipeline with each reference alone and with all of
them (``--reference`` repeated), and scored over the mask's box (PSNR, GMSD) beside doing nothing and OpenCV's Telea.

The first table compares: the case's own reference (what ``refalign bench`` runs), all references together, and
the best single reference chosen with the truth (what a perfect choice would reach). Pasted (``registered`` in the
rows) = a window got the registered reference's pixels; wrong = pasted and worse than doing nothing. The second table
lists the cases where more than one reference pastes alone: each one's score and doubts, and the one the pipeline
chose among them.

    python benchmarks/bench_references.py CASES [CASES ...] [--model src/refalign/default_model] [--limit N]
        [--set refinement.KEY=VALUE ...] [--json OUT.jsonl]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
from pathlib import Path

import numpy as np
import torch

from refalign.eval.cases import cases_with_truth
from refalign.eval.make_cases import (
    Photo, discover_photos, fit_size, is_near_duplicate, object_mask_for, valid_partners,
)
from refalign.eval.metrics import box_psnr_gmsd
from refalign.files import load_image
from refalign.fill import telea_fill
from refalign.pipelines.config import apply_overrides
from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline

OTHER_PHOTO_KINDS = ("crossview", "multiview")


def avoided_pairs(folder: Path) -> frozenset[tuple[str, str, str]]:
    """The ``(object, stem, stem)`` pairs the folder's ``make-cases.json`` never used together."""
    path = folder / "make-cases.json"
    pairs = json.loads(path.read_text()).get("config", {}).get("avoid_pairs", []) if path.is_file() else []
    return frozenset(tuple(p) for p in pairs)


def other_references(case, avoid: frozenset, seed: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The case's references as ``(stem, photo, object mask)``: its own first (its case files, as ``bench`` reads
    them), then every other usable photo of the object, resized to the case's size with ``make-cases``' mask."""
    source = Path(case.meta["source_photo"])
    given = Path(case.meta["reference_photo"])
    obj = case.meta["object"]
    size = max(case.image.shape[:2])
    refs = [(given.stem, case.reference, case.reference_mask)]
    for other in valid_partners(Photo(source, obj), discover_photos(source.parent.parent), avoid):
        if other.path == given:
            continue
        photo = fit_size(load_image(other.path), size)
        if not is_near_duplicate(photo, case.target):
            refs.append((other.stem, photo, object_mask_for(other, photo, seed)[0]))
    return refs


def refine(pipe, case, refs: list, seed: int) -> dict:
    """One refine call with ``refs`` (one or several), scored; its window's reference, source and doubts."""
    several = len(refs) > 1
    out = pipe(case.image, case.mask, [r[1] for r in refs] if several else refs[0][1],
               object_mask=[r[2] for r in refs] if several else refs[0][2],
               generator=torch.Generator("cpu").manual_seed(seed))
    sources = list(out.sources)
    return {"score": box_psnr_gmsd(np.asarray(out.image), case.target, case.mask),
            "registered": any(s.startswith("reference") for s in sources),
            "reference": refs[out.reference_indices[0]][0] if out.reference_indices else refs[0][0],
            "sources": sources, "confidence": [round(float(c), 3) for c in out.confidence],
            "doubts": [list(d) for d in out.doubts]}


def measure(pipe, case, avoid: frozenset, seed: int) -> dict | None:
    """One case's row (``None`` when it has no other photo beyond its own reference)."""
    refs = other_references(case, avoid, seed)
    if len(refs) < 2:
        return None
    singles = {r[0]: refine(pipe, case, [r], seed) for r in refs}
    return {"case": case.path.name, "kind": case.reference_kind, "references": len(refs),
            "nothing": box_psnr_gmsd(case.image, case.target, case.mask),
            "telea": box_psnr_gmsd(telea_fill(case.image, case.mask), case.target, case.mask),
            "given": singles[refs[0][0]], "all": refine(pipe, case, refs, seed), "singles": singles}


def _mean(scores: list[tuple[float, float]]) -> str:
    if not scores:
        return "–"
    return f"{statistics.mean(s[0] for s in scores):.2f} / {statistics.mean(s[1] for s in scores):.3f}"


def _doubted(run: dict) -> str:
    doubts = sorted({d for window in run["doubts"] for d in window})
    return f" ({', '.join(doubts)})" if doubts else ""


def report(rows: list[dict]) -> None:
    if not rows:
        print("\nno other-photo case (meta.json with source_photo) has another photo of its object: nothing to compare")
        return
    best = [max(r["singles"].values(), key=lambda s: s["score"][0]) for r in rows]
    runs = {"case's own reference": [r["given"] for r in rows], "all references": [r["all"] for r in rows],
            "best single (chosen with the truth)": best}
    n = len(rows)
    print(f"\n## {n} cases, {sum(r['references'] for r in rows) / n:.1f} references each on average "
          "(box PSNR / GMSD)\n")
    print("| run | pasted | wrong (worse than doing nothing) | doubted (wrong among them) | all cases | "
          "pasted cases | doing nothing there | Telea there |")
    print("|---|---|---|---|---|---|---|---|")
    for name, outs in runs.items():
        reg = [i for i, o in enumerate(outs) if o["registered"]]
        wrong = [i for i in reg if outs[i]["score"][0] < rows[i]["nothing"][0]]
        doubted = [i for i in reg if any(outs[i]["doubts"])]
        print(f"| {name} | {len(reg)} of {n} | {len(wrong)} | {len(doubted)} ({len(set(doubted) & set(wrong))}) | "
              f"{_mean([o['score'] for o in outs])} | {_mean([outs[i]['score'] for i in reg])} | "
              f"{_mean([rows[i]['nothing'] for i in reg])} | {_mean([rows[i]['telea'] for i in reg])} |")
    print(f"| doing nothing | | | | {_mean([r['nothing'] for r in rows])} | | | |")
    print(f"| Telea | | | | {_mean([r['telea'] for r in rows])} | | | |")

    several = [r for r in rows if sum(s["registered"] for s in r["singles"].values()) > 1]
    if not several:
        print("\nno case pastes from more than one of its references alone: the choice among pastes never arose")
        return
    print(f"\n## the choice, on the {len(several)} cases where more than one reference pastes alone\n")
    print("| case | pasted alone (box PSNR, doubts) | chosen | doing nothing |")
    print("|---|---|---|---|")
    for r in several:
        alone = ", ".join(f"{k} {s['score'][0]:.2f}{_doubted(s)}" for k, s in r["singles"].items() if s["registered"])
        print(f"| {r['case']} | {alone} | {r['all']['reference']} {r['all']['score'][0]:.2f} | "
              f"{r['nothing'][0]:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", type=Path)
    parser.add_argument("--model", default="src/refalign/default_model")
    parser.add_argument("--limit", type=int, default=None, help="at most N cases per folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--json", type=Path, default=None, help="write each case's row here (JSON lines)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    pipe = RefineByAlignPipeline.from_pretrained(args.model)
    if args.overrides:
        pipe.refalign_config = apply_overrides(pipe.refalign_config, args.overrides)
    rows = []
    for folder in args.cases:
        avoid = avoided_pairs(folder)
        cases = [c for c in cases_with_truth([folder]) if c.reference_kind in OTHER_PHOTO_KINDS
                 and "source_photo" in c.meta][: args.limit]
        for case in cases:
            row = measure(pipe, case, avoid, args.seed)
            if row is not None:
                rows.append(row)
                if args.json is not None:
                    with args.json.open("a") as f:
                        f.write(json.dumps(row) + "\n")
    report(rows)


if __name__ == "__main__":
    main()
