"""Refining a folder of case folders (DESIGN §4), optionally split across processes by ``accelerate launch``.

A case folder holds ``image.png``, ``mask.png``, ``reference.png`` and optionally ``reference_mask.png`` (the
object's mask on the reference, handed to the alignment stage). The run writes ``correspondence_pred.png`` (the
reference region the refinement used; not written with ``no_align``) and then ``refined.png``. A case counts as
finished when ``refined.png`` exists and decodes to the end: it is written last and atomically, so an interrupted
run resumes where it stopped, a leftover ``correspondence_pred.png`` of an unfinished case is simply rewritten, and
the temporary files of a write killed midway are removed when the process comes to the case (finished or not).

Under ``accelerate launch --num_processes N`` every process lists the same cases, takes its contiguous share
(:meth:`accelerate.PartialState.split_between_processes`) and skips its own finished cases, so no coordination
between processes is needed. A case that fails is logged, recorded in ``refine_error.txt`` in its folder and in
the returned report, and the run goes on.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from accelerate import PartialState
from tqdm.auto import tqdm

from refalign.errors import InputError, RefalignError
from refalign.eval.cases import IMAGE, MASK, REFERENCE, REFERENCE_MASK
from refalign.files import (
    DEFAULT_MAX_PIXELS, is_complete_image, load_refine_inputs, remove_stale_temps, save_image, write_bytes_atomic,
)

logger = logging.getLogger(__name__)

#: What a batch run writes into a case folder (the inputs' names are :mod:`refalign.eval.cases`').
REFINED, CORRESPONDENCE, ERROR = "refined.png", "correspondence_pred.png", "refine_error.txt"


@dataclass
class BatchReport:
    """What one process did: cases refined, skipped as finished, and failed (with the error line)."""

    done: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)


def find_cases(root: str | Path) -> list[Path]:
    """The case folders under ``root`` (sub-folders holding ``image.png``), sorted by name."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder of cases; check --cases")
    cases = sorted(p for p in root.iterdir() if p.is_dir() and (p / IMAGE).is_file())
    if not cases:
        raise InputError(f"{root}: holds no case folders (sub-folders with {IMAGE}, {MASK}, {REFERENCE})")
    return cases


def is_finished(case: Path) -> bool:
    """A case is finished when its ``refined.png`` decodes to the end (an empty or truncated one, e.g. copied
    in half, is refined again)."""
    refined = case / REFINED
    if not refined.is_file():
        return False
    if not is_complete_image(refined):
        logger.warning("%s: %s is empty or truncated; refining the case again", case.name, REFINED)
        return False
    return True


def refine_case(pipe, case: Path, *, max_pixels: int = DEFAULT_MAX_PIXELS, **call_kwargs) -> None:
    """Refine one case folder and write its outputs (overwriting them: the caller decides what to skip)."""
    ref_mask = case / REFERENCE_MASK
    inputs = load_refine_inputs(
        case / IMAGE, case / MASK, case / REFERENCE, ref_mask if ref_mask.is_file() else None, max_pixels=max_pixels
    )
    out = pipe(inputs.image, inputs.mask, inputs.reference, object_mask=inputs.reference_mask, **call_kwargs)
    if out.correspondence is not None:
        save_image(out.correspondence, case / CORRESPONDENCE)
    save_image(out.image, case / REFINED)


def refine_cases(
    pipe,
    root: str | Path,
    *,
    overwrite: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    state=None,
    **call_kwargs,
) -> BatchReport:
    """Refine this process's share of the cases under ``root``.

    Args:
        pipe: a :class:`~refalign.pipelines.pipeline_refine_by_align.RefineByAlignPipeline`.
        root: folder of case folders.
        overwrite: refine finished cases again.
        max_pixels: largest image accepted.
        state: an ``accelerate.PartialState`` (default: the current one).
        call_kwargs: passed to ``pipe(...)`` (``num_inference_steps``, ``guidance_scale``, ``seed``, ``no_align``…).
    """
    state = state or PartialState()
    cases = find_cases(root)
    report = BatchReport()
    with state.split_between_processes(cases) as mine:
        bar = tqdm(mine, desc="cases", unit="case", disable=not state.is_local_main_process, leave=False)
        for case in bar:
            for name in (REFINED, CORRESPONDENCE, ERROR):  # left by a run killed mid-write; this case is ours
                remove_stale_temps(case / name)
            if not overwrite and is_finished(case):
                report.skipped.append(case)
                continue
            try:
                refine_case(pipe, case, max_pixels=max_pixels, **call_kwargs)
            except RefalignError as exc:
                _record_failure(report, case, str(exc))
            except Exception as exc:  # one broken case must not stop a long batch; keep the traceback in the log
                logger.debug("case %s failed", case, exc_info=True)
                _record_failure(report, case, f"{type(exc).__name__}: {exc}")
            else:
                report.done.append(case)
                (case / ERROR).unlink(missing_ok=True)
    logger.info(
        "process %d/%d: %d refined, %d already finished, %d failed",
        state.process_index + 1, state.num_processes, len(report.done), len(report.skipped), len(report.failed),
    )
    return report


def _record_failure(report: BatchReport, case: Path, message: str) -> None:
    logger.error("%s: %s", case.name, message)
    report.failed.append((case, message))
    try:
        write_bytes_atomic(case / ERROR, (message + "\n").encode())
    except OSError:
        logger.warning("%s: could not write %s", case, ERROR)
