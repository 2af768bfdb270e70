"""The benchmark runner behind ``refalign bench``: one method over a folder of cases.

For every case it writes ``<output>/<case>/refined.png`` (and ``correspondence_pred.png`` when the method predicts
a correspondence) and appends one JSON line to ``<output>/results.jsonl``: the case, its reference and artifact
kinds, the method's run time and the metrics of :mod:`refalign.eval.metrics` (and :mod:`refalign.eval.semantic`
when weights are given), or an ``error`` field — a failing case never aborts the run. A rerun skips cases that
already have a result without error; the last line of a case wins. A method that does not apply to a case (the
``oracle`` without ground-truth geometry) records it as ``skipped``, not failed. With ``seen_model`` each record says
whether the case's object trained that model (``seen``, :mod:`refalign.eval.seen`). Cases are split over processes
with ``accelerate.PartialState().split_between_processes``; the main process writes ``summary.md`` and the plots.

:func:`run_comparison` runs several methods over the same cases (each into ``<output>/<method>/``) and writes one
comparison ``summary.md`` and, on request, the visual ``report.html`` (:mod:`refalign.eval.html_report`).
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from refalign.errors import InputError, OutputError, RefalignError
from refalign.eval import metrics
from refalign.eval.baselines import METHODS, MODEL_METHODS, MethodOutput, NotApplicable, make_method
from refalign.eval.cases import Case, list_cases, read_case
from refalign.files import save_image

logger = logging.getLogger(__name__)

RESULTS = "results.jsonl"
REFINED = "refined.png"
CORRESPONDENCE_PRED = "correspondence_pred.png"
#: PSNR of an exact reconstruction is infinite; results store this cap instead (JSON has no infinity).
PSNR_CAP = 100.0


@dataclass
class BenchConfig:
    """Options of :func:`run_bench` (the flags of ``refalign bench``)."""

    #: a folder of case folders, or several (case names must be unique across them)
    cases: Path | list[Path]
    method: str
    output: Path
    model: str | None = None
    steps: int | None = None
    seed: int = 0
    clip: str | None = None
    dino: str | None = None
    blip: str | None = None
    device: str | None = None
    background_dilation: int = 8
    ocr: bool = True
    #: ``section.key=value`` settings of the checkpoint's refalign.json to change for this run (ablations)
    overrides: list[str] = field(default_factory=list)
    #: checkpoint whose recorded training sources split the cases into seen and unseen objects (None: no split)
    seen_model: str | None = None


def load_results(path: Path) -> dict[str, dict[str, Any]]:
    """The last record of each case in a ``results.jsonl`` (unreadable lines are skipped with a warning)."""
    records: dict[str, dict[str, Any]] = {}
    if not path.is_file():
        return records
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            records[rec["case"]] = rec
        except (json.JSONDecodeError, KeyError, TypeError):
            logger.warning("%s line %d: not a result record; ignored", path, i)
    return records


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one JSON line with a single ``write`` on an ``O_APPEND`` descriptor, so processes never interleave."""
    data = (json.dumps(record, sort_keys=True) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def reference_region(case: Case, out: MethodOutput) -> tuple[np.ndarray, str]:
    """The reference region the refined region is compared with (paper §4.1): the ground-truth correspondence,
    else the predicted one, else the reference object (its mask's box), else the whole reference."""
    if case.correspondence is not None and case.correspondence.any():
        return metrics.bbox_crop(case.reference, case.correspondence), "ground truth"
    if out.correspondence is not None and out.correspondence.any():
        return metrics.bbox_crop(case.reference, out.correspondence), "predicted"
    if case.reference_mask is not None and case.reference_mask.any():
        return metrics.bbox_crop(case.reference, case.reference_mask, margin=0.0), "reference object"
    return case.reference, "whole reference"


def pixel_metrics(output: np.ndarray, target: np.ndarray, mask: np.ndarray) -> dict[str, Any]:
    """The pixel metrics over the artifact (:mod:`refalign.eval.metrics`): ``box_psnr``/``box_ssim`` (the mask's box
    grown by 8 px, the headline), ``mask_psnr``, ``gmsd`` (over the box), ``detail`` (ratio; absent when the truth
    is flat there), ``seam``, and the older window figures ``psnr``/``ssim`` (kept so earlier tables compare)."""
    bp, bs = metrics.box_psnr_ssim(output, target, mask)
    wp, ws = metrics.window_psnr_ssim(output, target, mask)
    m: dict[str, Any] = {"box_psnr": min(bp, PSNR_CAP), "box_ssim": bs,
                         "mask_psnr": min(metrics.mask_psnr(output, target, mask), PSNR_CAP),
                         "gmsd": metrics.box_gmsd(output, target, mask), "seam": metrics.seam_error(output, target, mask),
                         "psnr": min(wp, PSNR_CAP), "ssim": ws}
    detail = metrics.detail_ratio(output, target, mask)
    if detail is not None:
        m["detail"] = detail
    return m


def case_metrics(case: Case, out: MethodOutput, *, scorer=None, ocr: bool = False, dilation: int = 8) -> dict[str, Any]:
    """Every metric that applies to one case and a method's output."""
    refined = out.image
    # a method that repaints a wider band than ``dilation`` (the pipeline: its paste radius) says so in ``info``
    dilation = max(dilation, int(out.info.get("paste_radius", 0)) + 1)
    m: dict[str, Any] = {"background": metrics.background_max_diff(refined, case.image, case.mask, dilation=dilation)}
    if case.target is not None:
        m.update(pixel_metrics(refined, case.target, case.mask))
    if case.correspondence is not None and out.correspondence is not None:
        m["iou"] = metrics.iou(out.correspondence, case.correspondence)
    if ocr and case.target is not None:
        from refalign.eval.ocr import MIN_TEXT_CHARS, TEXT_CONFIDENCE, read_text
        from refalign.windows import crop

        win = metrics.artifact_window(case.mask)  # the expected text: meta "text", or confident words of the target
        truth = case.meta.get("text") or read_text(
            crop(case.target, win), min_confidence=TEXT_CONFIDENCE, min_word=MIN_TEXT_CHARS)
        # a text case: the target reads as text there and the artifact changed what the input reads
        if len(metrics.normalise_text(truth)) >= MIN_TEXT_CHARS and \
                metrics.ocr_agreement(read_text(crop(case.image, win)), truth) < 1.0:
            read = read_text(crop(refined, win))
            m.update(ocr=metrics.ocr_agreement(read, truth), ocr_truth=truth, ocr_read=read,
                     ocr_edits=metrics.edit_distance(metrics.normalise_text(read), metrics.normalise_text(truth)))
    if scorer is not None and scorer.enabled:
        ref_region, source = reference_region(case, out)
        m.update(scorer.score(metrics.bbox_crop(refined, case.mask), ref_region), reference_region=source)
    return m


def _load_pipeline(cfg: BenchConfig, device):
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline

    pipe = RefineByAlignPipeline.from_pretrained(cfg.model)
    if cfg.overrides:
        from refalign.pipelines.config import apply_overrides

        pipe.refalign_config = apply_overrides(pipe.refalign_config, cfg.overrides)
    pipe.to(cfg.device or device)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _check_output(cfg: BenchConfig) -> None:
    out = Path(cfg.output)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --output")
    methods = {r.get("method") for r in load_results(out / RESULTS).values()} - {cfg.method}
    if methods:
        raise OutputError(f"{out}: holds results of method {sorted(methods)[0]!r}; give each method its own --output")


def run_bench(cfg: BenchConfig, *, pipeline=None) -> Path:
    """Run ``cfg.method`` over the cases; returns the output folder. ``pipeline`` overrides loading ``cfg.model``."""
    from accelerate import PartialState

    if cfg.method not in METHODS:
        raise InputError(f"--method {cfg.method}: unknown method; choose from {', '.join(METHODS)}")
    if cfg.method in MODEL_METHODS and pipeline is None and not cfg.model:
        raise InputError(f"--method {cfg.method} needs a model; pass --model PATH to a checkpoint")
    case_dirs = list_all_cases(cfg.cases)
    _check_output(cfg)
    output = Path(cfg.output)
    state = PartialState()
    if state.is_main_process:
        output.mkdir(parents=True, exist_ok=True)
    state.wait_for_everyone()

    done = {name for name, r in load_results(output / RESULTS).items()
            if r.get("skipped") or (not r.get("error") and (output / name / REFINED).is_file())}
    todo = [p for p in case_dirs if p.name not in done]
    if done:
        logger.info("%d of %d cases already have results in %s; skipping them", len(case_dirs) - len(todo),
                    len(case_dirs), output)
    if todo:
        if pipeline is None and (cfg.method in MODEL_METHODS or (cfg.method == "paste" and cfg.model)):
            pipeline = _load_pipeline(cfg, state.device)
        method = make_method(cfg.method, pipeline, steps=cfg.steps, seed=cfg.seed)
        scorer = _make_scorer(cfg, state.device)
        from refalign.eval.ocr import ocr_engine

        ocr = cfg.ocr and ocr_engine() is not None
        if cfg.ocr and not ocr:
            logger.info("OCR agreement skipped: no OCR engine (pip install 'refalign[ocr]' for RapidOCR, or tesseract)")
        seen = _seen_objects(cfg, todo)
        with state.split_between_processes(todo) as mine:
            for path in tqdm(mine, desc=f"bench {cfg.method}", unit="case", disable=not state.is_local_main_process):
                append_record(output / RESULTS, _run_case(path, method, cfg, scorer, ocr, seen))
    state.wait_for_everyone()
    if state.is_main_process:
        from refalign.eval.report import write_report

        records = load_results(output / RESULTS)
        names = {p.name for p in case_dirs}
        write_report(output, [r for n, r in records.items() if n in names], cfg.method)
    return output


def list_all_cases(roots: Path | list[Path]) -> list[Path]:
    """The case folders of one or several benchmark folders (:func:`list_cases` each), names unique."""
    roots = [roots] if isinstance(roots, (str, Path)) else list(roots)
    paths = [p for root in roots for p in list_cases(root)]
    names: dict[str, Path] = {}
    for p in paths:
        if p.name in names:
            raise InputError(f"{p}: a case of this name is also in {names[p.name].parent}; give case folders with "
                             "unique names (e.g. made with different --reference-kinds)")
        names[p.name] = p
    return paths


def _seen_objects(cfg: BenchConfig, case_dirs: list[Path]):
    if not cfg.seen_model:
        return None
    from refalign.eval.cases import META
    from refalign.eval.seen import model_training_objects

    metas = []
    for p in case_dirs:
        try:
            metas.append(json.loads((p / META).read_text()))
        except (OSError, ValueError):
            continue
    return model_training_objects(cfg.seen_model, metas)


def _make_scorer(cfg: BenchConfig, device):
    if not (cfg.clip or cfg.dino or cfg.blip):
        logger.info("CLIP-I, CLIP-T and DINO skipped: no weights given (--clip, --dino, --blip: folder or hub id)")
        return None
    from refalign.eval.semantic import SemanticConfig, SemanticScorer

    return SemanticScorer(SemanticConfig(clip=cfg.clip, dino=cfg.dino, blip=cfg.blip, device=str(cfg.device or device)))


def _run_case(path: Path, method, cfg: BenchConfig, scorer, ocr: bool, seen=None) -> dict[str, Any]:
    from refalign.eval.seen import case_photo_folder

    record: dict[str, Any] = {"case": path.name, "method": cfg.method}
    if cfg.overrides:
        record["settings"] = list(cfg.overrides)
    try:
        case = read_case(path)
        record.update(reference_kind=case.reference_kind, artifact_kind=case.artifact_kind)
        folder_object = case_photo_folder(case.meta)
        if folder_object:
            record["object"] = folder_object[1]
        if seen is not None:
            record["seen"] = bool(folder_object and seen.seen(*folder_object))
        start = time.perf_counter()
        out = method(case)
        record["seconds"] = time.perf_counter() - start
        if out.image.shape != case.image.shape:
            raise RuntimeError(f"method returned an image of shape {out.image.shape}, expected {case.image.shape}")
        folder = Path(cfg.output) / path.name
        folder.mkdir(parents=True, exist_ok=True)
        save_image(out.image, folder / REFINED)
        if out.correspondence is not None:
            save_image(out.correspondence, folder / CORRESPONDENCE_PRED)
        if out.correspondence_source:
            record["correspondence_source"] = out.correspondence_source
        record.update(out.info)
        record.update(case_metrics(case, out, scorer=scorer, ocr=ocr, dilation=cfg.background_dilation))
    except NotApplicable as exc:  # not a failure: the method has nothing to say about this case
        record["skipped"] = str(exc)
    except (RefalignError, Exception) as exc:  # recorded, never aborts the run
        record["error"] = f"{type(exc).__name__}: {exc}"
        logger.warning("%s: %s", path.name, record["error"])
        logger.debug("%s", traceback.format_exc())
    return record


def run_comparison(cfg: BenchConfig, methods: list[str], *, report: bool = False, pipeline=None) -> Path:
    """Run several methods over the same cases, each into ``<cfg.output>/<method>/`` (reruns skip finished cases as
    :func:`run_bench` does), then write the comparison ``summary.md`` and, with ``report``, ``report.html``."""
    from dataclasses import replace

    from refalign.eval.report import comparison_summary

    methods = list(dict.fromkeys(methods))
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise InputError(f"--method {bad[0]}: unknown method; choose from {', '.join(METHODS)}")
    case_dirs = list_all_cases(cfg.cases)
    output = Path(cfg.output)
    if (output / RESULTS).is_file():
        raise OutputError(f"{output}: holds the results of a single-method run; choose another --output")
    for m in methods:
        run_bench(replace(cfg, method=m, output=output / m), pipeline=pipeline if m in MODEL_METHODS else None)
    names = {p.name for p in case_dirs}
    runs = {m: {n: r for n, r in load_results(output / m / RESULTS).items() if n in names} for m in methods}
    summary = comparison_summary({m: list(r.values()) for m, r in runs.items()})
    from refalign.files import write_bytes_atomic

    write_bytes_atomic(output / "summary.md", summary.encode())
    if report:
        write_report_page(output, case_dirs, {m: (output / m, runs[m]) for m in methods}, summary)
    return output


def write_report_page(output: Path, case_dirs: list[Path], runs: dict[str, tuple[Path, dict[str, dict[str, Any]]]],
                      summary: str) -> Path:
    """``<output>/report.html`` over bench outputs (``runs``: method → (its output folder, its records))."""
    from refalign.eval.html_report import MethodRun, write_html_report

    return write_html_report(Path(output) / "report.html", case_dirs,
                             {m: MethodRun(folder, recs) for m, (folder, recs) in runs.items()}, summary)
