"""``summary.md`` and plots of a benchmark run.

The tables follow the layout of paper Table 1 (method rows, CLIP-T / CLIP-I / DINO-I columns) with one row per
subset — all cases, each reference kind, each artifact kind — and add the pixel metrics that synthetic cases allow
(mIoU, window PSNR / SSIM, seam error, background max difference, OCR agreement) and the mean run time.
Plots need matplotlib (the ``eval`` extra); without it they are skipped with one logged line.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from refalign.files import write_bytes_atomic

logger = logging.getLogger(__name__)

#: (record key, column title, number format)
COLUMNS = (
    ("clip_t", "CLIP-T", "{:.2f}"),
    ("clip_i", "CLIP-I", "{:.2f}"),
    ("dino", "DINO-I", "{:.2f}"),
    ("iou", "mIoU", "{:.3f}"),
    ("psnr", "PSNR", "{:.2f}"),
    ("ssim", "SSIM", "{:.4f}"),
    ("seam", "Seam", "{:.2f}"),
    ("background", "BG max", "{:.0f}"),
    ("ocr", "OCR", "{:.3f}"),
    ("seconds", "s/case", "{:.3f}"),
)


def mean_metrics(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every column over the successful records (``BG max`` is the maximum), plus ``n`` and ``failed``."""
    records = list(records)
    ok = [r for r in records if not r.get("error")]
    row: dict[str, Any] = {"n": len(ok), "failed": len(records) - len(ok)}
    for key, _, _ in COLUMNS:
        vals = [float(r[key]) for r in ok if r.get(key) is not None]
        if vals:
            row[key] = max(vals) if key == "background" else float(np.mean(vals))
    return row


def grouped(records: list[dict[str, Any]], field: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        groups[str(r.get(field, "unknown"))].append(r)
    return dict(sorted(groups.items()))


def _table(rows: list[tuple[str, str, dict[str, Any]]], first: str) -> list[str]:
    keys = [c for c in COLUMNS if any(c[0] in row for _, _, row in rows)]
    head = [first, "Method", *[t for _, t, _ in keys], "n", "failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for subset, method, row in rows:
        cells = [fmt.format(row[k]) if k in row else "–" for k, _, fmt in keys]
        lines.append("| " + " | ".join([subset, method, *cells, str(row["n"]), str(row["failed"])]) + " |")
    return lines


def summary_markdown(records: list[dict[str, Any]], method: str) -> str:
    """The text of ``summary.md`` for one method's records."""
    lines = [f"# Benchmark: {method}", "", f"{len(records)} cases. Semantic scores are cosine similarity ×100 (paper "
             "Table 1); PSNR/SSIM in the artifact's square window against target.png; Seam = mean |∇output − ∇target| "
             "on the mask boundary; BG max = largest change outside the dilated mask (should be 0); – = not measured.",
             "", "## By reference kind", ""]
    rows = [("all", method, mean_metrics(records))]
    rows += [(k, method, mean_metrics(v)) for k, v in grouped(records, "reference_kind").items()]
    lines += _table(rows, "Reference")
    lines += ["", "## By artifact kind", ""]
    rows = [("all", method, mean_metrics(records))]
    rows += [(k, method, mean_metrics(v)) for k, v in grouped(records, "artifact_kind").items()]
    lines += _table(rows, "Artifact")
    failed = [r for r in records if r.get("error")]
    if failed:
        lines += ["", "## Failed cases", ""] + [f"- `{r['case']}`: {r['error']}" for r in failed]
    return "\n".join(lines) + "\n"


def comparison_markdown(runs: dict[str, list[dict[str, Any]]], field: str | None = None) -> str:
    """One Table-1-style table comparing several methods (``runs``: method → records), optionally per ``field``."""
    rows = []
    for method, records in runs.items():
        rows.append(("all", method, mean_metrics(records)))
        if field:
            rows += [(k, method, mean_metrics(v)) for k, v in grouped(records, field).items()]
    if field:
        rows.sort(key=lambda r: (r[0] != "all", r[0]))
    return "\n".join(_table(rows, field or "Subset")) + "\n"


def write_plots(output: Path, records: list[dict[str, Any]]) -> list[Path]:
    """``per_kind.png`` (mean window PSNR per artifact kind, one bar per reference kind) and ``miou_hist.png``
    (histogram of correspondence IoU) when there is something to plot."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("plots skipped: matplotlib is not installed (pip install 'refalign[eval]')")
        return []
    written = []
    ok = [r for r in records if not r.get("error")]
    metric = next((k for k in ("clip_i", "psnr") if any(r.get(k) is not None for r in ok)), None)
    if metric:
        kinds = sorted({r.get("artifact_kind", "unknown") for r in ok})
        refs = sorted({r.get("reference_kind", "unknown") for r in ok})
        fig, ax = plt.subplots(figsize=(1.2 + 1.3 * len(kinds), 3.5))
        width = 0.8 / max(1, len(refs))
        for j, ref in enumerate(refs):
            vals = [mean_metrics([r for r in ok if r.get("artifact_kind") == k and r.get("reference_kind") == ref]).get(metric, np.nan)
                    for k in kinds]
            ax.bar(np.arange(len(kinds)) + j * width, vals, width, label=ref)
        ax.set_xticks(np.arange(len(kinds)) + width * (len(refs) - 1) / 2, kinds, rotation=20)
        ax.set_ylabel({"clip_i": "CLIP-I", "psnr": "window PSNR (dB)"}[metric])
        ax.legend(title="reference")
        fig.tight_layout()
        written.append(_save(fig, output / "per_kind.png"))
        plt.close(fig)
    ious = [float(r["iou"]) for r in ok if r.get("iou") is not None]
    if ious:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.hist(ious, bins=np.linspace(0, 1, 21))
        ax.set_xlabel("correspondence IoU")
        ax.set_ylabel("cases")
        ax.set_title(f"mIoU = {np.mean(ious):.3f} (n = {len(ious)})")
        fig.tight_layout()
        written.append(_save(fig, output / "miou_hist.png"))
        plt.close(fig)
    return written


def _save(fig, path: Path) -> Path:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes_atomic(path, buf.getvalue())
    return path


def write_report(output: Path, records: list[dict[str, Any]], method: str) -> Path:
    """Write ``summary.md`` and the plots into ``output``; returns the summary's path."""
    output = Path(output)
    path = output / "summary.md"
    write_bytes_atomic(path, summary_markdown(records, method).encode())
    write_plots(output, records)
    logger.info("wrote %s", path)
    return path
