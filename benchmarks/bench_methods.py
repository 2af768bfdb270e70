"""Run time per case of each benchmark method, as a ratio to OpenCV Telea inpainting measured in the same run.

    python benchmarks/bench_methods.py CASES [--methods identity telea ns paste] [--model PATH] [--steps N]
        [--limit N] [--repeat R]

Cases are read once; each method runs on every case ``--repeat`` times and the median time per case is kept
(method time only: no file I/O, no metrics). Prints a markdown table. The refalign methods run when ``--model``
is given.
"""

from __future__ import annotations

import argparse
import statistics
import time


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
    args = parser.parse_args()

    cases = [read_case(p) for p in list_cases(args.cases)[: args.limit]]
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
            samples = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                run(case)
                samples.append(time.perf_counter() - start)
            times.append(statistics.median(samples))
        per_case[name] = statistics.mean(times)
    telea = per_case["telea"]
    print(f"{len(cases)} cases from {args.cases}, median of {args.repeat} runs per case\n")
    print("| method | ms / case | × Telea |")
    print("|---|---:|---:|")
    for name, sec in per_case.items():
        print(f"| {name} | {1000 * sec:.2f} | {sec / telea:.2f} |")


if __name__ == "__main__":
    main()
