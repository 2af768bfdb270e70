"""``summary.md`` and plots of a benchmark run.

The tables follow the layout of paper Table 1 (method rows, CLIP-T / CLIP-I / DINO-I columns) with one row per
subset — objects the model never saw and those it trained on (when known), all cases, each reference kind, each
artifact kind — and add the pixel metrics that synthetic cases allow, over the artifact (DESIGN §7): PSNR / SSIM
over the mask's box grown by 8 px (the headline), PSNR over the mask, GMSD, detail ratio, seam error; then the
older window PSNR / SSIM, mIoU, background max difference, OCR agreement and the mean run time. Records a method
skipped (it does not apply to the case) count in neither the means nor the failures. A comparison run adds, for each
pipeline method that reports where its windows' pixels came from (``sources``), the registration table
(:func:`registration_markdown`: the share of cases registered and the share *wrongly* registered — pasted, yet worse
than doing nothing — per reference and artifact kind) and every method's means over the cases it left unregistered,
per artifact kind.
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
    ("box_psnr", "PSNR box ↑", "{:.2f}"),
    ("box_ssim", "SSIM box ↑", "{:.3f}"),
    ("mask_psnr", "PSNR mask ↑", "{:.2f}"),
    ("gmsd", "GMSD ↓", "{:.3f}"),
    ("detail", "detail (1)", "{:.2f}"),
    ("seam", "Seam ↓", "{:.1f}"),
    ("psnr", "PSNR win", "{:.2f}"),
    ("ssim", "SSIM win", "{:.3f}"),
    ("iou", "mIoU", "{:.3f}"),
    ("background", "BG max", "{:.0f}"),
    ("ocr", "OCR", "{:.3f}"),
    ("ocr_edits", "OCR edits ↓", "{:.2f}"),
    ("seconds", "s/case", "{:.3f}"),
)


def succeeded(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of cases that ran: neither failed (``error``) nor skipped."""
    return [r for r in records if not r.get("error") and not r.get("skipped")]


def mean_metrics(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every column over the successful records (``BG max`` is the maximum), plus ``n`` and ``failed``."""
    records = [r for r in records if not r.get("skipped")]
    ok = succeeded(records)
    row: dict[str, Any] = {"n": len(ok), "failed": len(records) - len(ok)}
    for key, _, _ in COLUMNS:
        vals = [float(r[key]) for r in ok if r.get(key) is not None]
        if vals:
            row[key] = max(vals) if key == "background" else float(np.mean(vals))
    return row


def _group_name(record: dict[str, Any], field: str) -> str | None:
    if field == "seen":  # a bool, or absent when the split is unknown
        return None if "seen" not in record else ("seen" if record["seen"] else "unseen")
    return str(record.get(field, "unknown"))


def grouped(records: list[dict[str, Any]], field: str) -> dict[str, list[dict[str, Any]]]:
    """Records by the value of ``field`` (``seen``: ``unseen`` first, then ``seen``; records without it left out)."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        name = _group_name(r, field)
        if name is not None:
            groups[name].append(r)
    if field == "seen":
        return {k: groups[k] for k in ("unseen", "seen") if k in groups}
    return dict(sorted(groups.items()))


def _table(rows: list[tuple[str, str, dict[str, Any]]], first: str) -> list[str]:
    rows = [r for r in rows if r[2]["n"] or r[2]["failed"]] or rows  # a subset a method skipped entirely: no row
    keys = [c for c in COLUMNS if any(c[0] in row for _, _, row in rows)]
    head = [first, "Method", *[t for _, t, _ in keys], "n", "failed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for subset, method, row in rows:
        cells = [fmt.format(row[k]) if k in row else "–" for k, _, fmt in keys]
        lines.append("| " + " | ".join([subset, method, *cells, str(row["n"]), str(row["failed"])]) + " |")
    return lines


LEGEND = ("Semantic scores are cosine similarity ×100 (paper Table 1). Pixel metrics against target.png over the "
          "artifact: PSNR/SSIM box = over the mask's bounding box grown by 8 px (headline); PSNR mask = over the mask's "
          "pixels; GMSD = gradient magnitude similarity deviation over the box (Xue et al. 2014, 0 = same edges); "
          "detail = mean |Laplacian| in the mask, output / truth (1 = the truth's texture, < 1 = blurred); Seam = "
          "mean |∇output − ∇target| on the mask boundary; PSNR/SSIM win = the older figures over the artifact's square "
          "window (twice its size, mostly background); BG max = largest change outside the dilated mask (should be "
          "0); s/case = warm run time in-process; – = not measured.")


def summary_markdown(records: list[dict[str, Any]], method: str) -> str:
    """The text of ``summary.md`` for one method's records."""
    lines = [f"# Benchmark: {method}", "", f"{len(records)} cases. {LEGEND}", ""]
    seen = grouped(records, "seen")
    if seen:
        lines += ["## Objects the model never saw / trained on", ""]
        lines += _table([(k, method, mean_metrics(v)) for k, v in seen.items()], "Objects") + [""]
    lines += ["## By reference kind", ""]
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
    skipped = [r for r in records if r.get("skipped")]
    if skipped:
        lines += ["", f"{len(skipped)} cases skipped: the method does not apply to them (e.g. "
                  f"`{skipped[0]['case']}`: {skipped[0]['skipped']})."]
    return "\n".join(lines) + "\n"


def comparison_markdown(runs: dict[str, list[dict[str, Any]]], field: str | None = None) -> str:
    """One Table-1-style table comparing several methods (``runs``: method → records), optionally per ``field``."""
    rows, order = [], {"all": 0}
    for method, records in runs.items():
        rows.append(("all", method, mean_metrics(records)))
        if field:
            for k, v in grouped(records, field).items():
                order.setdefault(k, len(order) if field == "seen" else 1)
                rows.append((k, method, mean_metrics(v)))
    if field:
        rows.sort(key=lambda r: (order[r[0]], r[0] if field != "seen" else ""))
    return "\n".join(_table(rows, field or "Subset")) + "\n"


def timing_markdown(runs: dict[str, list[dict[str, Any]]]) -> str:
    """Warm run time per case (in-process, model loaded once) of each method and its ratio to Telea's from the same
    run (when Telea ran)."""
    secs = {m: mean_metrics(r).get("seconds") for m, r in runs.items()}
    telea = secs.get("telea")
    lines = ["| Method | s/case (warm) | × Telea |", "|---|---:|---:|"]
    for m, sec in secs.items():
        if sec is not None:
            ratio = f"{sec / telea:.1f}" if telea else "–"
            lines.append(f"| {m} | {sec:.3f} | {ratio} |")
    return "\n".join(lines) + "\n"


def registered(record: dict[str, Any]) -> bool | None:
    """Whether a pipeline record registered any of its windows and used it: pasted the registered reference
    (``sources`` starting with ``"reference"``), or under ``unregistered="auto"`` weighed that paste and recoloured
    the artifact instead (``"recoloured"`` with a registration ``confidence`` above 0 — an unregistered window's is
    0; not under ``refinement.paste=false``, the record's ``paste``, where no paste was weighed); ``None`` for a
    record without ``sources`` (a baseline, or a failed case)."""
    sources = record.get("sources")
    if not sources or record.get("error") or record.get("skipped"):
        return None
    confidence = record.get("confidence") or [0.0] * len(sources)
    weighed = record.get("paste", True)
    return any(str(s).startswith("reference") or (s == "recoloured" and c > 0 and weighed)
               for s, c in zip(sources, confidence))


def _psnr_of(records: list[dict[str, Any]] | None) -> dict[str, float]:
    return {r["case"]: float(r["box_psnr"]) for r in succeeded(records or []) if r.get("box_psnr") is not None}


def registration_rows(records: list[dict[str, Any]], identity: list[dict[str, Any]] | None,
                      telea: list[dict[str, Any]] | None, field: str) -> list[dict[str, Any]]:
    """Per value of ``field`` (``"all"`` first): cases ``n``, ``registered`` and ``wrong`` (registered, yet a box PSNR
    below doing nothing's on the same case; needs ``identity``), ``doubted`` (registered cases with a doubt on a
    paste, :attr:`RefineOutput.doubts <refalign.pipelines.outputs.RefineOutput>`; ``None`` for records without them)
    and ``doubted_wrong`` (wrong ones among them), and over the registered cases the mean box PSNR of the method, of
    doing nothing and of Telea (``None`` where not measured)."""
    base, fill = _psnr_of(identity), _psnr_of(telea)
    usable = [r for r in records if registered(r) is not None and r.get("box_psnr") is not None]
    groups = {"all": usable, **grouped(usable, field)}
    rows = []
    for name, recs in groups.items():
        reg = [r for r in recs if registered(r)]
        wrong = [r for r in reg if r["case"] in base and r["box_psnr"] < base[r["case"]]]
        told = all("doubts" in r for r in reg)
        doubted = [r for r in reg if any(r.get("doubts") or [])]
        doubted_wrong = [r for r in doubted if r in wrong]

        def mean(values):
            return float(np.mean(values)) if values else None

        rows.append({"group": name, "n": len(recs), "registered": len(reg),
                     "wrong": len(wrong) if identity is not None else None,
                     "doubted": len(doubted) if told else None,
                     "doubted_wrong": len(doubted_wrong) if told and identity is not None else None,
                     "psnr": mean([r["box_psnr"] for r in reg]),
                     "identity": mean([base[r["case"]] for r in reg if r["case"] in base]),
                     "telea": mean([fill[r["case"]] for r in reg if r["case"] in fill])})
    return rows


def registration_markdown(runs: dict[str, list[dict[str, Any]]], field: str = "reference_kind") -> str:
    """The registration table of a comparison run, per value of ``field``, for each method whose records carry
    ``sources`` (:func:`registration_rows`; doing nothing and Telea from the ``identity`` and ``telea`` runs)."""
    head = ["Method", field.replace("_", " "), "cases", "registered", "wrongly registered (of cases)",
            "doubted (wrongly among them)", "PSNR box registered", "doing nothing", "Telea"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]

    def num(v, fmt="{:.2f}"):
        return "–" if v is None else fmt.format(v)

    for method, records in runs.items():
        if not any(registered(r) is not None for r in records):
            continue
        for row in registration_rows(records, runs.get("identity"), runs.get("telea"), field):
            n, k, w = row["n"], row["registered"], row["wrong"]
            share = f"{k}/{n} ({k / n:.0%})" if n else "0/0"
            wrong = "–" if w is None else f"{w}/{n} ({w / n:.0%})" if n else "0/0"
            d, dw = row["doubted"], row["doubted_wrong"]
            doubted = "–" if d is None else f"{d}" if dw is None else f"{d} ({dw})"
            lines.append("| " + " | ".join([method, row["group"], str(n), share, wrong, doubted, num(row["psnr"]),
                                             num(row["identity"]), num(row["telea"])]) + " |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def unregistered_runs(runs: dict[str, list[dict[str, Any]]], method: str) -> dict[str, list[dict[str, Any]]]:
    """Every method's records restricted to the cases ``method`` left unregistered (:func:`registered` False)."""
    names = {r["case"] for r in runs[method] if registered(r) is False}
    return {m: [r for r in recs if r.get("case") in names] for m, recs in runs.items()}


def comparison_summary(runs: dict[str, list[dict[str, Any]]]) -> str:
    """The text of a comparison run's ``summary.md``: objects never seen / seen first, then all cases, each
    reference kind, each artifact kind, and the run times (``runs``: method → records of the same cases)."""
    n = max((len(r) for r in runs.values()), default=0)
    lines = [f"# Benchmark: {', '.join(runs)}", "", f"{n} cases, every method on the same cases in one run. {LEGEND}", ""]
    if any(grouped(r, "seen") for r in runs.values()):
        lines += ["## Objects the model never saw / trained on", "", comparison_markdown(runs, "seen")]
        unseen = {m: [r for r in recs if r.get("seen") is False] for m, recs in runs.items()}
        if any(unseen.values()):
            lines += ["## Objects the model never saw, by reference kind", "",
                      comparison_markdown(unseen, "reference_kind")]
    lines += ["## By reference kind", "", comparison_markdown(runs, "reference_kind"),
              "## By artifact kind", "", comparison_markdown(runs, "artifact_kind")]
    by_ref = registration_markdown(runs, "reference_kind")
    if by_ref:
        lines += ["## Registered windows", "",
                  "Cases where the pipeline pasted the registered reference's own pixels (in any window) — or "
                  "weighed that paste and recoloured the artifact instead (`auto`) — and those wrongly registered: "
                  "below doing nothing (box PSNR). The PSNR columns are means over the registered cases.", "",
                  by_ref, registration_markdown(runs, "artifact_kind")]
        for method in [m for m, recs in runs.items() if any(registered(r) is not None for r in recs)]:
            rest = unregistered_runs(runs, method)
            if any(rest.values()):
                lines += [f"## Cases {method} left unregistered, by artifact kind", "",
                          comparison_markdown(rest, "artifact_kind")]
    lines += ["## Run time", "", timing_markdown(runs)]
    return "\n".join(lines)


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend, or ``None`` (logged once per call) when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.info("plots skipped: matplotlib is not installed (pip install 'refalign[eval]')")
        return None
    return plt


def figure_png(fig, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes (the figure is closed)."""
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


def write_plots(output: Path, records: list[dict[str, Any]]) -> list[Path]:
    """``per_kind.png`` (mean box PSNR per artifact kind, one bar per reference kind) and ``miou_hist.png``
    (histogram of correspondence IoU) when there is something to plot."""
    plt = pyplot()
    if plt is None:
        return []
    written = []
    ok = [r for r in records if not r.get("error")]
    metric = next((k for k in ("clip_i", "box_psnr", "psnr") if any(r.get(k) is not None for r in ok)), None)
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
        ax.set_ylabel({"clip_i": "CLIP-I", "box_psnr": "PSNR over the artifact's box (dB)",
                       "psnr": "window PSNR (dB)"}[metric])
        ax.legend(title="reference")
        fig.tight_layout()
        written.append(_save(fig, output / "per_kind.png"))
    ious = [float(r["iou"]) for r in ok if r.get("iou") is not None]
    if ious:
        fig, ax = plt.subplots(figsize=(4.5, 3.2))
        ax.hist(ious, bins=np.linspace(0, 1, 21))
        ax.set_xlabel("correspondence IoU")
        ax.set_ylabel("cases")
        ax.set_title(f"mIoU = {np.mean(ious):.3f} (n = {len(ious)})")
        fig.tight_layout()
        written.append(_save(fig, output / "miou_hist.png"))
    return written


def _save(fig, path: Path) -> Path:
    write_bytes_atomic(path, figure_png(fig))
    return path


def write_report(output: Path, records: list[dict[str, Any]], method: str) -> Path:
    """Write ``summary.md`` and the plots into ``output``; returns the summary's path."""
    output = Path(output)
    path = output / "summary.md"
    write_bytes_atomic(path, summary_markdown(records, method).encode())
    write_plots(output, records)
    logger.info("wrote %s", path)
    return path
