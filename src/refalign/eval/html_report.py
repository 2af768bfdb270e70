"""The visual benchmark report: one self-contained HTML page (images inlined as data URIs, no scripts, no links out).

For every case, one row of crops around the artifact: the input with the mask outlined, the reference with the
correspondence used outlined (the method's predicted one, else the ground truth, else the crossview case's
estimated local homography), each method's result with its numbers, and the truth. Rows are sorted by the main
method's gain over the best baseline (box PSNR, dB), so its wins come first and its losses last; the summary tables
and plots sit on top. The main method is the first model method of the run (else the last method); the baselines are
``identity``, ``telea`` and ``ns`` when they ran, else the input itself.
"""

from __future__ import annotations

import base64
import html
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from refalign.errors import InputError
from refalign.eval import metrics
from refalign.eval.cases import Case, read_case
from refalign.eval.report import figure_png, pyplot
from refalign.files import load_image, load_object_mask, write_bytes_atomic
from refalign.windows import crop, mask_bbox, resize_image, square_window

logger = logging.getLogger(__name__)

BASELINES = ("identity", "telea", "ns")
#: Side of each crop in the page, in pixels; crops show the artifact's box enlarged ``CONTEXT`` times (its
#: surroundings, for judging seams), so a row of input, reference, five methods and the truth fits a 1400 px page.
THUMB = 140
CONTEXT = 1.8
OUTLINE = (255, 40, 200)  # magenta: visible on most objects


@dataclass
class MethodRun:
    """One method's bench output folder and its records (case name → record)."""

    folder: Path
    records: dict[str, dict[str, Any]]


def main_method(methods: list[str]) -> str:
    """The method the report ranks cases by: the first one that is not a baseline or the oracle, else the last."""
    from refalign.eval.baselines import PIXEL_METHODS

    return next((m for m in methods if m not in PIXEL_METHODS), methods[-1])


def _data_uri(image: np.ndarray, fmt: str = ".jpg") -> str:
    ok, buf = cv2.imencode(fmt, cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88])
    if not ok:
        raise RuntimeError("could not encode an image for the report")
    mime = "image/jpeg" if fmt == ".jpg" else "image/png"
    return f"data:{mime};base64,{base64.b64encode(buf.tobytes()).decode()}"


def outlined(image: np.ndarray, mask: np.ndarray, thickness: int = 2) -> np.ndarray:
    """``image`` with the contour of ``mask`` drawn on it."""
    out = np.ascontiguousarray(image.copy())
    contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(out, contours, -1, OUTLINE, thickness)
    return out


def _thumb(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    win = square_window(mask_bbox(region), region.shape[:2], context=CONTEXT, min_size=48)
    return resize_image(crop(image, win), THUMB)


def _reference_region(case: Case, predicted: np.ndarray | None) -> tuple[np.ndarray | None, str]:
    if predicted is not None and predicted.any():
        return predicted, "predicted"
    return case.matching_region()


def _figure(uri: str, caption: str, cls: str = "") -> str:
    return (f'<figure class="{cls}"><img src="{uri}" width="{THUMB}" height="{THUMB}" alt="{html.escape(caption)}">'
            f"<figcaption>{caption}</figcaption></figure>")


def _numbers(rec: dict[str, Any] | None) -> str:
    if rec is None:
        return "not run"
    if rec.get("skipped"):
        return "n/a"
    if rec.get("error"):
        return "failed"
    parts = [f"{rec['box_psnr']:.2f} dB" if "box_psnr" in rec else "",
             f"GMSD {rec['gmsd']:.3f}" if "gmsd" in rec else "",
             f"detail {rec['detail']:.2f}" if "detail" in rec else ""]
    return " · ".join(p for p in parts if p)


def _gain(name: str, runs: dict[str, MethodRun], main: str, input_psnr: float | None) -> float | None:
    rec = runs[main].records.get(name, {})
    if "box_psnr" not in rec:
        return None
    base = [runs[m].records.get(name, {}).get("box_psnr") for m in BASELINES if m in runs and m != main]
    base = [b for b in base if b is not None] or ([input_psnr] if input_psnr is not None else [])
    return None if not base else float(rec["box_psnr"]) - max(base)


def case_row(case: Case, runs: dict[str, MethodRun], main: str, gain: float | None) -> str:
    """The HTML of one case: header line and the row of crops."""
    figs = [_figure(_data_uri(_thumb(outlined(case.image, case.mask), case.mask)), "input, mask outlined")]
    pred_path = runs[main].folder / case.name / "correspondence_pred.png"
    try:
        pred = load_object_mask(pred_path, case.reference.shape[:2]) if pred_path.is_file() else None
    except InputError:  # an empty prediction
        pred = None
    region, source = _reference_region(case, pred)
    if region is not None:
        figs.append(_figure(_data_uri(_thumb(outlined(case.reference, region), region)), f"reference, {source}"))
    else:
        figs.append(_figure(_data_uri(resize_image(case.reference, THUMB)), "reference (no correspondence)"))
    for method, run in runs.items():
        refined = run.folder / case.name / "refined.png"
        rec = run.records.get(case.name)
        if refined.is_file() and rec is not None and not rec.get("error"):
            img = _thumb(load_image(refined), case.mask)
        else:
            img = np.full((THUMB, THUMB, 3), 235, np.uint8)
        cls = "main" if method == main else ""
        figs.append(_figure(_data_uri(img), f"<b>{html.escape(method)}</b><br>{_numbers(rec)}", cls))
    if case.target is not None:
        figs.append(_figure(_data_uri(_thumb(case.target, case.mask)), "truth"))
    rec = runs[main].records.get(case.name, {})
    seen = {True: "seen in training", False: "never seen"}.get(rec.get("seen"), "")
    verdict = "" if gain is None else (f'<span class="{"win" if gain > 0 else "loss"}">{gain:+.2f} dB</span> '
                                       f"{html.escape(main)} vs best baseline")
    info = " · ".join(x for x in (case.reference_kind, case.artifact_kind, str(case.meta.get("object", "")), seen) if x)
    return (f'<section class="case"><h3>{html.escape(case.name)}</h3><p>{verdict} — {html.escape(info)}</p>'
            f'<div class="row">{"".join(figs)}</div></section>')


def markdown_tables_html(markdown: str) -> str:
    """The ``summary.md`` text as HTML: headings, paragraphs and pipe tables (nothing else is used there)."""
    out, table = [], []

    def flush():
        if table:
            head, *body = [[html.escape(c.strip()).replace("**", "") for c in r.strip().strip("|").split("|")]
                           for r in table if not set(r.replace("|", "").strip()) <= set("-: ")]
            out.append("<table><tr>" + "".join(f"<th>{c}</th>" for c in head) + "</tr>"
                       + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in body) + "</table>")
            table.clear()

    for line in markdown.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = min(4, len(line) - len(line.lstrip("#")) + 1)
            out.append(f"<h{level}>{html.escape(line.lstrip('#').strip())}</h{level}>")
        elif line.strip():
            out.append(f"<p>{html.escape(line)}</p>")
    flush()
    return "\n".join(out)


def _plots(runs: dict[str, MethodRun], main: str, gains: dict[str, float | None]) -> list[str]:
    plt = pyplot()
    if plt is None:
        return []
    uris = []
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    methods = list(runs)
    for j, group in enumerate(("unseen", "seen", None)):
        vals = []
        for m in methods:
            ok = [r for r in runs[m].records.values() if "box_psnr" in r
                  and (group is None or r.get("seen") == (group == "seen"))]
            vals.append(np.mean([r["box_psnr"] for r in ok]) if ok else np.nan)
        if not np.all(np.isnan(vals)):
            ax.bar(np.arange(len(methods)) + j * 0.27, vals, 0.27, label=group or "all")
    ax.set_xticks(np.arange(len(methods)) + 0.27, methods, rotation=15)
    ax.set_ylabel("PSNR over the artifact's box (dB)")
    ax.legend()
    fig.tight_layout()
    uris.append("data:image/png;base64," + base64.b64encode(figure_png(fig, 100)).decode())
    vals = sorted(g for g in gains.values() if g is not None)
    if vals:
        fig, ax = plt.subplots(figsize=(6.0, 3.0))
        ax.bar(np.arange(len(vals)), vals, color=["#2a7" if v > 0 else "#c33" for v in vals])
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xlabel("cases, sorted")
        ax.set_ylabel(f"{main} − best baseline (dB)")
        fig.tight_layout()
        uris.append("data:image/png;base64," + base64.b64encode(figure_png(fig, 100)).decode())
    return uris


STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0 1.2em}
td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px;text-align:right}th{background:#f3f3f3}
.row{display:flex;flex-wrap:wrap;gap:6px}figure{margin:0;width:%dpx;font-size:12px}figure.main img{outline:3px solid #36c}
figcaption{min-height:2.6em}.win{color:#1a7f37;font-weight:bold}.loss{color:#c62828;font-weight:bold}
section.case{border-top:1px solid #ddd;padding-top:.4em}h3{margin:.2em 0;font-size:15px}""" % THUMB


def write_html_report(path: Path, case_dirs: list[Path], runs: dict[str, MethodRun], summary: str) -> Path:
    """Write the report page to ``path`` (atomically) and return it."""
    main = main_method(list(runs))
    rows, gains = [], {}
    for p in case_dirs:
        try:
            case = read_case(p)
        except Exception as exc:  # a broken case is listed, not fatal (the bench records it as failed)
            rows.append((float("-inf"), f'<section class="case"><h3>{html.escape(p.name)}</h3><p>unreadable: '
                                        f"{html.escape(str(exc))}</p></section>"))
            continue
        input_psnr = metrics.box_psnr_ssim(case.image, case.target, case.mask)[0] if case.target is not None else None
        gains[p.name] = gain = _gain(p.name, runs, main, input_psnr)
        rows.append((gain if gain is not None else float("-inf"), case_row(case, runs, main, gain)))
    rows.sort(key=lambda r: -r[0])
    wins = sum(g > 0 for g in gains.values() if g is not None)
    losses = sum(g <= 0 for g in gains.values() if g is not None)
    plots = "".join(f'<img src="{u}" alt="plot">' for u in _plots(runs, main, gains))
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>refalign benchmark</title>"
            f"<style>{STYLE}</style></head><body><h1>refalign benchmark report</h1>"
            f"<p><b>{html.escape(main)}</b> beats the best baseline ({', '.join(b for b in BASELINES if b in runs) or 'input'}) "
            f"on {wins} cases and does not on {losses} (PSNR over the artifact's box). Cases below: wins first.</p>"
            f"<div>{plots}</div>{markdown_tables_html(summary)}<h2>Cases</h2>{''.join(r for _, r in rows)}</body></html>")
    write_bytes_atomic(path, page.encode())
    logger.info("wrote %s", path)
    return path
