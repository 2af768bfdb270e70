"""Training throughput of the ``tiny`` preset on this machine: samples/s and the share of step time spent waiting
for data, measured by the real training loop (its ``metrics.jsonl``), with and without the auxiliary alignment
loss (which swaps in the capture processor on the 16×16 layers).

    python benchmarks/bench_training.py [--steps 30] [--batch-size 8] [--num-workers 0] [--dreambooth PATH]
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(steps: int, batch: int, workers: int, align_weight: float, sources: str) -> dict:
    from refalign.training.config import load_config
    from refalign.training.trainer import train

    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(
            ROOT / "configs" / "tiny.yaml",
            [
                f"output_dir={tmp}", f"max_steps={steps}", f"batch_size={batch}", f"data.num_workers={workers}",
                f"align_loss_weight={align_weight}", f"data.sources={sources}", "log_every=5", "validate_every=100000",
                "checkpoint_every=100000", "data.val_holdout=0", "progress=false",
            ],
        )
        train(cfg)
        rows = [json.loads(x) for x in (Path(tmp) / "metrics.jsonl").read_text().splitlines()]
    rows = [r for r in rows if "samples_per_s" in r][1:]  # the first window includes warm-up
    return {
        "samples_per_s": statistics.median(r["samples_per_s"] for r in rows),
        "data_wait_share": statistics.median(r["data_wait_share"] for r in rows),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--dreambooth", default=None, help="also read this multi-view folder (e.g. ../shared/data/dreambooth-dev)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    sources = "[{kind: procedural, count: 50}" + (f", {{kind: multiview, path: {args.dreambooth}}}" if args.dreambooth else "") + "]"
    import torch

    print(f"tiny preset, batch {args.batch_size}, {args.steps} steps, {args.num_workers} loader workers, "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'alignment loss':<16}{'samples/s':>12}{'data wait':>12}")
    for w in (0.0, 0.1):
        r = run(args.steps, args.batch_size, args.num_workers, w, sources)
        print(f"{('on (0.1)' if w else 'off'):<16}{r['samples_per_s']:>12.2f}{r['data_wait_share']:>11.1%}")


if __name__ == "__main__":
    main()
