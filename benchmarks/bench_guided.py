"""The damaged pixels as the synthesis's guide (issue 15 part 6), as tables: ``unregistered="auto"`` against its
session-9 form, which kept a window continuous with its surroundings and synthesised the others over a Telea fill.

For every case (``refalign make-cases`` folders with ``target.png``) whose window the shipped pipeline leaves
unregistered and does not recolour, the window is refined both ways, alternately and in one process (one thread):
``auto`` as shipped, and the session-9 choice — ``unregistered="keep"`` where
:func:`~refalign.transfer.damage.looks_mild` holds, ``"synthesize"`` elsewhere. The first table scores both over the
mask's box (PSNR / GMSD / detail ratio) beside doing nothing and OpenCV's Telea fill, by artifact kind; the second
counts how ``auto`` decided (kept; synthesised guided because blurred; synthesised guided or plain after the edge
steps); the last line gives the time ratio, the faster of two runs of each.

    python benchmarks/bench_guided.py CASES [CASES ...] [--limit N] [--model DIR] [--set SECTION.KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

import torch
from tqdm.auto import tqdm

from refalign.eval.cases import cases_with_truth
from refalign.eval.metrics import box_psnr_gmsd, detail_ratio
from refalign.eval.report import grouped
from refalign.fill import telea_fill
from refalign.pipelines.config import apply_overrides
from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline
from refalign.shipped import default_model_path
from refalign.transfer.damage import looks_mild

RUNS = 2


def decision(report: str, source: str) -> str:
    """How ``auto`` decided a window, read from its report line."""
    if source == "kept":
        return "kept"
    if "but blurred" in report:
        return "guided (blurred)"
    if "its own pixels guide the synthesis" in report:
        return "guided (edge step)"
    return "plain synthesis" if source == "synthesis" else source


def measure(pipe: RefineByAlignPipeline, case) -> dict | None:
    """One case's numbers, or ``None`` when the shipped pipeline registers or recolours its window."""
    run = lambda mode: pipe(case.image, case.mask, case.reference, seed=0, unregistered=mode,  # noqa: E731
                            object_mask=case.reference_mask)
    first = run("auto")
    if first.sources[0] not in ("kept", "synthesis"):
        return None
    old_mode = "keep" if looks_mild(case.image, case.mask) else "synthesize"
    seconds = {"auto": [], "session 9": []}
    outputs = {}
    for _ in range(RUNS):
        for name, mode in (("auto", "auto"), ("session 9", old_mode)):
            start = time.perf_counter()
            outputs[name] = run(mode).image
            seconds[name].append(time.perf_counter() - start)
    outputs["doing nothing"], outputs["Telea"] = case.image, telea_fill(case.image, case.mask)
    row = {"kind": case.artifact_kind, "decision": decision(first.reports[0], first.sources[0]),
           "seconds": {k: min(v) for k, v in seconds.items()}}
    for name, out in outputs.items():
        row[name] = (*box_psnr_gmsd(out, case.target, case.mask), detail_ratio(out, case.target, case.mask) or 0.0)
    return row


def _mean(rows: list[dict], key: str) -> str:
    return " / ".join(f"{statistics.mean(r[key][i] for r in rows):.{p}f}" for i, p in ((0, 2), (1, 3), (2, 2)))


def report(rows: list[dict]) -> None:
    if not rows:
        print("\nno window is left unregistered and not recoloured")
        return
    by_kind = {"all": rows, **grouped(rows, "kind")}
    names = ("auto", "session 9", "doing nothing", "Telea")
    print("\n## unregistered windows, box PSNR / GMSD / detail ratio (means)\n")
    print("| artifact kind | n | " + " | ".join(names) + " |")
    print("|---|---|" + "---|" * len(names))
    for kind, rs in by_kind.items():
        print(f"| {kind} | {len(rs)} | " + " | ".join(_mean(rs, n) for n in names) + " |")
    decisions = sorted({r["decision"] for r in rows})
    print("\n## how auto decided (windows)\n")
    print("| artifact kind | " + " | ".join(decisions) + " |")
    print("|---|" + "---|" * len(decisions))
    for kind, rs in by_kind.items():
        count = Counter(r["decision"] for r in rs)
        print(f"| {kind} | " + " | ".join(str(count[d]) for d in decisions) + " |")
    new, old = (sum(r["seconds"][k] for r in rows) for k in ("auto", "session 9"))
    print(f"\ntime, whole window (faster of {RUNS} runs each, alternating): auto {new:.1f} s, session 9's choice "
          f"{old:.1f} s — {new / old:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", nargs="+", help="case folders (refalign make-cases)")
    parser.add_argument("--limit", type=int, default=0, help="at most this many cases (0: all)")
    parser.add_argument("--model", default=None, help="model folder (default: the shipped model)")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="a refalign.json setting for both ways (repeatable)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    pipe = RefineByAlignPipeline.from_pretrained(args.model or default_model_path())
    pipe.refalign_config = apply_overrides(pipe.refalign_config, args.set)
    pipe.set_progress_bar_config(disable=True)
    rows = [row for case in tqdm(cases_with_truth(args.cases, args.limit), desc="bench_guided", unit="case")
            if (row := measure(pipe, case)) is not None]
    report(rows)


if __name__ == "__main__":
    main()
