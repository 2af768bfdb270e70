"""How much a local registration can give on a case set, whatever the gate (issue 15 parts 1 and 3), as tables.

For every case (``refalign make-cases`` folders with ``target.png``) the artifact's neighbourhood is registered with
the reference (:func:`refalign.transfer.register.register_hole`, the engine the refine path runs) and **every**
fitted candidate model — accepted or not — is pasted (:func:`refalign.transfer.source.transfer_source`) and scored
over the mask's box (PSNR, GMSD), beside doing nothing and OpenCV's Telea fill from the same run:

* *accepted*: what the gate let through, and how it scores;
* *hindsight*: the best candidate chosen with the truth in hand — the most any gate over these models could give;
  ``≥ +k dB`` counts the cases where it beats both doing nothing and Telea by ``k`` dB;
* *dense flow* (``--flow``): how many accepted pastes the dense-flow correction moves
  (:func:`refalign.transfer.flow.flow_correct`: a model that explains the ring only in part, a shift of a pixel or
  more), and the accepted pastes as the refine path makes them (moved
  where it does, as warped elsewhere) — the "dense flow only where it measurably helps" of part 1.

    python benchmarks/bench_registration.py CASES [CASES ...] [--limit N] [--flow]
"""

from __future__ import annotations

import argparse
import re
import statistics
from collections import defaultdict

import numpy as np

from refalign.eval.cases import cases_with_truth
from refalign.eval.metrics import box_psnr_gmsd
from refalign.fill import telea_fill
from refalign.transfer.engine import ReferenceView
from refalign.transfer.register import register_hole
from refalign.transfer.source import paste_hole, registered_source

#: Margins (dB) over the better of doing nothing and Telea counted in the hindsight table.
MARGINS = (0.0, 1.0, 3.0)


def pasted(image: np.ndarray, hole: np.ndarray, reference: np.ndarray, candidate, *, flow: bool = False):
    """``(image, moved)``: the image with ``candidate``'s transferred reference pasted into ``hole`` — with
    ``flow``, moved by the dense flow where the refine path moves it (:func:`refalign.transfer.flow.flow_correct`)
    — and whether the flow moved it (``None`` without ``flow``)."""
    source, valid, box, correction = registered_source(image, hole, reference, candidate.matrix, candidate.score,
                                                       flow=flow)
    out = image.copy()
    paste_hole(out, source, hole, box, valid)
    return out, correction.applied if correction is not None else None


def measure(case, flow: bool) -> dict:
    """One case's numbers: doing nothing, Telea, the accepted paste (and its flow refinement), the best candidate."""
    score = lambda out: box_psnr_gmsd(out, case.target, case.mask)  # noqa: E731
    reg = register_hole(case.image, case.mask, case.reference, ReferenceView.prepare(case.reference).features)
    row = {"kind": case.reference_kind, "nothing": score(case.image),
           "telea": score(telea_fill(case.image, case.mask)), "reason": reg.reason, "accepted": None, "flow": None}
    candidates = [score(pasted(case.image, case.mask, case.reference, c)[0]) for c in reg.candidates]
    row["hindsight"] = max(candidates, default=None)
    if reg.ok:
        row["accepted"] = score(pasted(case.image, case.mask, case.reference, reg.best)[0])
        if flow:
            out, row["moved"] = pasted(case.image, case.mask, case.reference, reg.best, flow=True)
            row["flow"] = score(out)
    return row


def _mean(rows: list[dict], key: str, i: int) -> str:
    vals = [r[key][i] for r in rows if r[key] is not None]
    return f"{statistics.mean(vals):.{2 if i == 0 else 3}f}" if vals else "–"


def report(rows: list[dict], flow: bool) -> None:
    by_kind = defaultdict(list)
    for r in rows:
        by_kind[r["kind"]].append(r)
    print("\n## accepted registrations (box PSNR / GMSD, means over the accepted cases)\n")
    head = ("| reference kind | cases | accepted | below doing nothing | pasted | doing nothing | Telea |"
            + (" moved by the dense flow | refine path (flow where it moves) |" if flow else ""))
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for kind, rs in sorted(by_kind.items()):
        acc = [r for r in rs if r["accepted"] is not None]
        cells = [f"{_mean(acc, k, 0)} / {_mean(acc, k, 1)}" for k in ("accepted", "nothing", "telea")]
        if flow:
            moved = sum(r["moved"] for r in acc)
            cells += [str(moved), f"{_mean(acc, 'flow', 0)} / {_mean(acc, 'flow', 1)}"]
        wrong = sum(r["accepted"][0] < r["nothing"][0] for r in acc)
        print(f"| {kind} | {len(rs)} | {len(acc)} | {wrong} | " + " | ".join(cells) + " |")
    print("\n## hindsight: the best candidate model per case, chosen with the truth (box PSNR)\n")
    print("| reference kind | cases | with a candidate | " + " | ".join(f"beats nothing and Telea by ≥ {m:g} dB"
                                                              for m in MARGINS) + " |")
    print("|" + "---|" * (3 + len(MARGINS)))
    for kind, rs in sorted(by_kind.items()):
        cand = [r for r in rs if r["hindsight"] is not None]
        counts = [sum(r["hindsight"][0] >= max(r["nothing"][0], r["telea"][0]) + m for r in cand) for m in MARGINS]
        print(f"| {kind} | {len(rs)} | {len(cand)} | " + " | ".join(str(c) for c in counts) + " |")
    reasons = defaultdict(int)
    for r in rows:
        if r["accepted"] is None:
            reasons[re.sub(r"\d+(\.\d+)?", "N", r["reason"].split(" (")[0])] += 1
    print("\n## why the others were not accepted\n")
    for why, n in sorted(reasons.items(), key=lambda kv: -kv[1]):
        print(f"- {n} × {why}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", nargs="+")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--flow", action="store_true", help="also measure the dense-flow refinement of accepted pastes")
    args = ap.parse_args()
    report([measure(case, args.flow) for case in cases_with_truth(args.cases, args.limit)], args.flow)


if __name__ == "__main__":
    main()
