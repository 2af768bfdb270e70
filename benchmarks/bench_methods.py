"""Run time per case of each benchmark method, warm and cold, as a ratio to OpenCV Telea's measured in the same run.

    python benchmarks/bench_methods.py CASES [--methods identity telea ns paste oracle] [--model PATH] [--steps N]
        [--limit N] [--repeat R] [--cold N]

*Warm*: cases are read once and the model loaded once; each method runs on every case ``--repeat`` times and the
median time per case is kept (method time only: no file I/O, no metrics). *Cold* (``--cold N``, on the first N
cases): one ``refalign bench CASE --method M`` process per case, wall clock — what a user pays for a single image
from the command line (interpreter start, imports, model load, the method, writing the result and its metrics).
Prints a markdown table. The refalign methods run when ``--model`` is given (``--model default``: the shipped one).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    from refalign.eval.baselines import MODEL_METHODS, PIXEL_METHODS, make_method
    from refalign.eval.cases import list_cases, read_case

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases")
    parser.add_argument("--methods", nargs="+", default=list(PIXEL_METHODS))
    parser.add_argument("--model", default=None)
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cold", type=int, default=0, help="cases timed as one CLI process each (0: none)")
    args = parser.parse_args()
    if args.model == "default":
        from refalign.cli._common import resolve_model

        args.model = resolve_model(None)

    case_dirs = list_cases(args.cases)[: args.limit]
    cases = [read_case(p) for p in case_dirs]
    methods = list(dict.fromkeys(["telea", *args.methods]))
    if args.model:
        methods += [m for m in MODEL_METHODS if m not in methods]
    pipe = None
    if args.model:
        from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline

        pipe = RefineByAlignPipeline.from_pretrained(args.model)
        pipe.set_progress_bar_config(disable=True)
    per_case: dict[str, float] = {}
    for name in methods:
        run = make_method(name, pipe, steps=args.steps)
        times = []
        for case in cases:
            if name == "oracle" and "homography" not in case.meta:
                continue  # the oracle applies to warp cases only
            samples = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                run(case)
                samples.append(time.perf_counter() - start)
            times.append(statistics.median(samples))
        per_case[name] = statistics.mean(times)
    cold = {name: cold_seconds(name, case_dirs[: args.cold], args.model, args.steps) for name in methods} \
        if args.cold > 0 else {}
    telea = per_case["telea"]
    print(f"{len(cases)} cases from {args.cases}, warm: median of {args.repeat} runs per case"
          + (f"; cold: one process per case on {min(args.cold, len(case_dirs))} cases" if cold else "") + "\n")
    print("| method | warm ms / case | × Telea | cold s / case | × Telea |")
    print("|---|---:|---:|---:|---:|")
    for name, sec in per_case.items():
        c = cold.get(name)
        cold_cells = f"{c:.2f} | {c / cold['telea']:.2f}" if c is not None else "– | –"
        print(f"| {name} | {1000 * sec:.2f} | {sec / telea:.2f} | {cold_cells} |")


def cold_seconds(method: str, case_dirs: list, model: str | None, steps: int | None) -> float:
    """Mean wall-clock seconds of one ``refalign bench`` process per case (a fresh interpreter each time)."""
    times = []
    if method == "oracle":  # warp cases only
        case_dirs = [c for c in case_dirs if c.name.endswith("-warp")] or case_dirs
    with tempfile.TemporaryDirectory() as tmp:
        for i, case in enumerate(case_dirs):
            cmd = [sys.executable, "-m", "refalign.cli", "bench", str(case), "--method", method, "--output",
                   str(Path(tmp) / f"{method}-{i}"), "--no-ocr"]
            if model:
                cmd += ["--model", model]
            if steps is not None and method.startswith("refalign"):
                cmd += ["--steps", str(steps)]
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            times.append(time.perf_counter() - start)
    return statistics.mean(times)


if __name__ == "__main__":
    main()
