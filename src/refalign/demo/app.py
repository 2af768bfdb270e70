"""The gradio web demo: paint the artifact, see where the model looked in the reference, get the refined image.

:func:`build_demo` makes the :class:`gradio.Blocks` for a loaded pipeline (nothing is launched or loaded at
import); :func:`launch` serves it (``refalign demo`` is a thin wrapper). The work of one request is
:func:`run_refinement`, a plain function the tests call directly; the click handler of the page only turns its
:class:`~refalign.errors.RefalignError` into a ``gr.Error`` message shown in the page, never a traceback.

Inputs come from two ``gr.ImageEditor`` canvases (value: ``{"background", "layers", "composite"}`` arrays in
RGBA). The artifact mask is every pixel any brush stroke touched on the image (alpha > 0 in a layer). Strokes on
the reference are the user's own choice of region (``reference_mask``: alignment is skipped and the refinement
copies from that region); a transparent reference PNG gives its alpha as the object mask (``object_mask``, which
limits the alignment to the object), as on the command line (DESIGN §5).
"""

from __future__ import annotations

import contextlib
import html
import logging
import os
import shutil
import signal
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
from PIL import Image, UnidentifiedImageError

from refalign.demo.visuals import before_after, combine_soft_maps, demo_overlay
from refalign.errors import InputError, RefalignError
from refalign.files import DEFAULT_MAX_PIXELS, MIN_SIDE, as_rgb, check_mask, save_image

logger = logging.getLogger(__name__)

MAX_STEPS = 200
MAX_GUIDANCE = 20.0
#: Name prefix of a server's private folder (then its process id): uploads and downloads, removed on exit.
SERVING_PREFIX = "refalign-serving-"
#: Per-request output folders older than this are removed when a new request comes in.
KEEP_OUTPUTS_SECONDS = 3600

INTRO = """\
# refalign — Refine-by-Align
Repair a small artifact of a generated image from a reference photo of the real object
([Refine-by-Align](https://song630.github.io/Refine-by-Align-Project-Page/), ICLR 2025).
**1.** Upload the image and paint over the artifact with the brush.
**2.** Upload a reference photo of the object. Optionally paint the part to copy from yourself (alignment is then
skipped); a transparent PNG limits the search to the object.
**3.** Press *Refine*: the model finds the matching region of the reference (shown as a heat map, with the rest
of the reference dimmed) and repaints only the painted pixels from it.
"""


@dataclass
class DemoResult:
    """Everything one request shows: the correspondence on the reference, the refined image, the before/after
    panel, the files to download, and a one-line summary."""

    overlay: np.ndarray
    refined: np.ndarray
    comparison: np.ndarray
    files: list[str]
    status: str
    mask: np.ndarray | None = field(repr=False, default=None)


# --------------------------------------------------------------------------------------------------- inputs


def _painted(layers: Any) -> np.ndarray | None:
    """Union of the brush strokes of the editor's layers (alpha > 0), or ``None`` without any layer."""
    masks = []
    for layer in layers or []:
        arr = np.asarray(layer)
        if arr.ndim == 3 and arr.shape[2] == 4:
            masks.append(arr[..., 3] > 0)
        elif arr.ndim in (2, 3):  # a layer without alpha: anything not black is paint
            masks.append((arr if arr.ndim == 2 else arr.max(axis=2)) > 0)
    if not masks:
        return None
    shapes = {m.shape for m in masks}
    if len(shapes) > 1:
        raise InputError(f"the painted layers have different sizes {sorted(shapes)}; clear the canvas and paint again")
    return np.logical_or.reduce(masks)


def _background(value: Mapping | None, what: str, hint: str) -> tuple[np.ndarray, np.ndarray | None]:
    """RGB of the editor's background and, when it is transparent somewhere, its alpha as a mask."""
    if not value or value.get("background") is None:
        raise InputError(f"no {what}: {hint}")
    bg = np.asarray(value["background"])
    if bg.ndim == 2:
        bg = np.repeat(bg[..., None], 3, axis=2)
    alpha = None
    if bg.ndim == 3 and bg.shape[2] == 4:
        a = bg[..., 3]
        if (a < 255).any():
            alpha = a >= 128
    rgb = as_rgb(bg)
    h, w = rgb.shape[:2]
    if min(h, w) < MIN_SIDE:
        raise InputError(f"{what}: {w}x{h} is too small; upload an image at least {MIN_SIDE} px a side")
    if h * w > DEFAULT_MAX_PIXELS:
        raise InputError(f"{what}: {w}x{h} is over the limit of {DEFAULT_MAX_PIXELS:,} pixels; downscale it")
    return rgb, alpha


def read_image_editor(value: Mapping | None) -> tuple[np.ndarray, np.ndarray]:
    """The image with the artifact and the painted artifact mask, checked (InputError with a readable message)."""
    image, _ = _background(value, "image", "upload the image with the artifact in the left canvas")
    painted = _painted(value.get("layers"))
    if painted is None or not painted.any():
        raise InputError("no artifact painted: paint over the artifact on the image with the brush")
    mask = check_mask(painted, image.shape[:2], name="painted artifact mask", image_name="the image")
    return image, mask


def read_reference_editor(value: Mapping | None) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """``(reference, region, object_mask)``: the user's painted region (or ``None``) and the alpha of a
    transparent reference (or ``None``)."""
    reference, alpha = _background(value, "reference", "upload a reference photo of the object in the right canvas")
    painted = _painted(value.get("layers"))
    if painted is not None and painted.any():
        if painted.shape != reference.shape[:2]:
            raise InputError(
                f"painted reference region is {painted.shape[1]}x{painted.shape[0]} but the reference is "
                f"{reference.shape[1]}x{reference.shape[0]}; clear the canvas and paint again"
            )
        return reference, painted, alpha
    return reference, None, alpha


def _check_controls(steps: Any, guidance: Any, seed: Any) -> tuple[int, float, int]:
    try:
        steps_i = int(steps)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        raise InputError(f"steps: {steps!r} is not a whole number; choose 1 to {MAX_STEPS}") from None
    if not 1 <= steps_i <= MAX_STEPS or steps_i != float(steps):
        raise InputError(f"steps: {steps} is out of range; choose a whole number from 1 to {MAX_STEPS}")
    try:
        guidance_f = float(guidance)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        raise InputError(f"guidance: {guidance!r} is not a number; choose 0 to {MAX_GUIDANCE:g}") from None
    if not 0.0 <= guidance_f <= MAX_GUIDANCE:
        raise InputError(f"guidance: {guidance_f:g} is out of range; choose 0 to {MAX_GUIDANCE:g}")
    try:
        seed_i = int(seed)
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf)
        raise InputError(f"seed: {seed!r} is not a whole number; give 0 or more") from None
    if seed_i < 0 or seed_i != float(seed) or seed_i >= 2**63:
        raise InputError(f"seed: {seed} is not a whole number from 0 to 2^63-1")
    return steps_i, guidance_f, seed_i


def upload_problem(exc: BaseException, what: str) -> str:
    """One line saying what is wrong with an uploaded file — never gradio's internal text, which names the
    server's temporary paths."""
    if isinstance(exc, Image.DecompressionBombError) or "decompression bomb" in str(exc).lower():
        return f"the {what} upload is too large to decode; downscale it below {DEFAULT_MAX_PIXELS:,} pixels"
    if isinstance(exc, UnidentifiedImageError):
        return f"the {what} upload is empty or not an image; upload a PNG or JPEG"
    if isinstance(exc, (OSError, SyntaxError, ValueError, EOFError)):
        return f"the {what} upload is truncated or corrupt; export it again and upload it"
    return f"the {what} upload could not be read ({type(exc).__name__}); upload a PNG or JPEG"


def guard_uploads(editor, what: str) -> None:
    """Make a bad upload to ``editor`` (a ``gr.ImageEditor``) a one-line message in the page and one line in the
    log, instead of gradio's text (with temporary paths) and a traceback: its ``preprocess`` is wrapped."""
    import gradio as gr

    preprocess = editor.preprocess

    def checked(payload):
        try:
            return preprocess(payload)
        except Exception as exc:  # whatever PIL raised on the file: the message says what, the log one line
            message = upload_problem(exc, what)
            logger.warning("rejected an upload: %s (%s)", message, type(exc).__name__)
            raise gr.Error(html.escape(message), title="Cannot read the upload", print_exception=False) from None

    editor.preprocess = checked


@contextlib.contextmanager
def serving_folder() -> Iterator[Path]:
    """A private temporary folder for one server — gradio's uploads (``GRADIO_TEMP_DIR``) and the downloads —
    removed on every exit: a normal return, Ctrl-C, and SIGTERM/SIGHUP (turned into ``KeyboardInterrupt``, which
    gradio's server loop answers by shutting down). Users' images do not outlive the server."""
    _remove_orphans(Path(tempfile.gettempdir()))
    root = Path(tempfile.mkdtemp(prefix=f"{SERVING_PREFIX}{os.getpid()}-"))
    saved = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(root / "uploads")
    handlers = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            if hasattr(signal, name):
                handlers[name] = signal.signal(getattr(signal, name), _interrupt)
    try:
        yield root
    finally:
        for name, handler in handlers.items():
            signal.signal(getattr(signal, name), handler)
        if saved is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = saved
        shutil.rmtree(root, ignore_errors=True)


def _remove_orphans(tmp: Path) -> None:
    """Remove the serving folders of demo servers that were killed outright (SIGKILL runs no cleanup): each folder
    is named after its server's process id, and a folder whose process is gone is an orphan."""
    for folder in tmp.glob(f"{SERVING_PREFIX}*-*"):
        pid = folder.name[len(SERVING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            logger.info("removed %s, left by a demo server that was killed", folder)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


# --------------------------------------------------------------------------------------------------- one request


def _new_output_dir(root: Path) -> Path:
    """A fresh folder for one request's downloads; folders of requests older than an hour are removed."""
    root.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in root.iterdir():
        try:
            if old.is_dir() and now - old.stat().st_mtime > KEEP_OUTPUTS_SECONDS:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return Path(tempfile.mkdtemp(prefix="request-", dir=root))


def run_refinement(
    pipe,
    image_value: Mapping | None,
    reference_value: Mapping | None,
    steps: Any,
    guidance: Any,
    seed: Any,
    no_align: bool = False,
    paste: bool = True,
    guided: bool = False,
    *,
    output_root: str | Path | None = None,
) -> DemoResult:
    """One request of the demo: validate the canvases, run both stages, and make the pictures and downloads.
    ``paste=False`` refuses the registered reference's pixels (the pipeline's ``paste``; the page's checkbox for a
    paste that looks wrong); ``guided`` gives the regions that do not register ``unregistered="guided"`` (the page's
    checkbox for a feature painted around that ``auto`` rebuilt as its surroundings), else the checkpoint's choice.

    Raises :class:`~refalign.errors.RefalignError` (with a message meant for the page) for bad inputs.
    """
    import torch

    image, mask = read_image_editor(image_value)
    reference, reference_mask, object_mask = read_reference_editor(reference_value)
    steps_i, guidance_f, seed_i = _check_controls(steps, guidance, seed)

    t0 = time.perf_counter()
    out = pipe(
        image,
        mask,
        reference,
        reference_mask=reference_mask,
        object_mask=object_mask,
        no_align=bool(no_align),
        paste=bool(paste),
        unregistered="guided" if guided else None,
        num_inference_steps=steps_i,
        guidance_scale=guidance_f,
        generator=torch.Generator().manual_seed(seed_i),
    )
    seconds = time.perf_counter() - t0
    refined = as_rgb(out.image)
    if refined.shape != image.shape:
        raise RuntimeError(f"the pipeline returned an image of shape {refined.shape} for an input of {image.shape}")

    # the region the refinement was conditioned on: M* of the alignment, the painted region, or (None) all of it
    region = out.correspondence
    soft = combine_soft_maps(a.soft_on_reference() for a in (out.alignment or []))
    overlay = demo_overlay(reference, soft, region)
    comparison = before_after(image, refined, mask)

    folder = _new_output_dir(Path(output_root) if output_root else Path(tempfile.gettempdir()) / "refalign-demo")
    files = [folder / "refined.png", folder / "mask.png"]
    save_image(refined, files[0])
    save_image(mask, files[1])
    if region is not None:
        files.append(folder / "correspondence.png")
        save_image(np.asarray(region, dtype=bool), files[2])

    n_windows = len(out.windows or [])
    if out.alignment and region is None:
        where = "alignment found no matching region, so the whole reference was used"
    elif out.alignment:
        where = f"the correspondence found covers {100.0 * np.asarray(region).mean():.1f}% of the reference"
    elif reference_mask is not None:
        where = "alignment skipped: your painted region of the reference was used"
    else:
        where = "alignment skipped: the whole reference was used"
    status = (
        f"Refined {int(mask.sum())} painted pixels in {n_windows} window{'s' if n_windows != 1 else ''} "
        f"in {seconds:.1f} s ({steps_i} steps, guidance {guidance_f:g}, seed {seed_i}); {where}."
    )
    reports = list(getattr(out, "reports", None) or [])  # per window: the source of its pixels and why
    if reports:
        status += "\n" + "\n".join(f"- {line}" for line in reports)
    logger.info(status)
    return DemoResult(overlay=overlay, refined=refined, comparison=comparison, files=[str(f) for f in files], status=status, mask=mask)


# --------------------------------------------------------------------------------------------------- page


def build_demo(pipe, *, output_root: str | Path | None = None):
    """The demo page for a loaded ``RefineByAlignPipeline`` (or anything with the same ``__call__``).

    Nothing is served until :func:`launch` (or ``.launch()``) is called. ``output_root`` is where the downloads
    of each request are written (default: a temporary folder removed when the Blocks object is collected).
    """
    import gradio as gr

    cfg = getattr(pipe, "refalign_config", None)
    refinement = getattr(cfg, "refinement", None)
    default_steps = int(getattr(refinement, "num_inference_steps", 50))
    default_guidance = float(getattr(refinement, "guidance_scale", 2.5))
    default_paste = bool(getattr(refinement, "paste", True))
    # the unregistered choice acts only where the checkpoint takes the hole's pixels from the reference
    transfers = getattr(refinement, "source", "model") == "reference"

    if output_root is None:
        root = Path(tempfile.mkdtemp(prefix="refalign-demo-"))
        owned = True
    else:
        root, owned = Path(output_root), False

    def on_run(image_value, reference_value, steps, guidance, seed, no_align, paste, guided):
        try:
            r = run_refinement(pipe, image_value, reference_value, steps, guidance, seed, no_align, paste, guided,
                               output_root=root)
        except RefalignError as exc:
            raise gr.Error(html.escape(str(exc)), title="Cannot refine", print_exception=False) from None
        except Exception as exc:  # a bug: keep the traceback in the server log, show one line in the page
            logger.exception("demo request failed")
            raise gr.Error(
                html.escape(f"refinement failed ({type(exc).__name__}: {exc}); see the server log"), print_exception=False
            ) from None
        return r.overlay, r.refined, r.comparison, r.files, r.status

    editor = dict(
        type="numpy",
        image_mode="RGBA",
        format="png",  # lossless: pixels outside the mask must come back unchanged
        sources=("upload", "clipboard"),
        layers=False,
        transforms=(),
        height=420,
    )
    with gr.Blocks(title="refalign demo", analytics_enabled=False, delete_cache=(3600, KEEP_OUTPUTS_SECONDS)) as demo:
        gr.Markdown(INTRO)
        with gr.Row(equal_height=True):
            image_in = gr.ImageEditor(
                label="Image with the artifact: paint over it",
                brush=gr.Brush(colors=["#ff00ff"], color_mode="fixed"),
                elem_id="refalign-image",
                **editor,
            )
            reference_in = gr.ImageEditor(
                label="Reference photo (optional: paint the region to copy from)",
                brush=gr.Brush(colors=["#00c8ff"], color_mode="fixed"),
                elem_id="refalign-reference",
                **editor,
            )
        with gr.Row():
            steps = gr.Slider(1, MAX_STEPS, value=default_steps, step=1, label="Sampling steps", elem_id="refalign-steps")
            guidance = gr.Slider(0.0, MAX_GUIDANCE, value=default_guidance, step=0.1, label="Guidance scale")
            seed = gr.Number(value=0, precision=0, minimum=0, label="Seed")
            no_align = gr.Checkbox(
                value=False,
                label="Skip alignment",
                info="Condition on the whole reference (paint a region on it to use that region instead)",
            )
            paste = gr.Checkbox(
                value=default_paste,
                label="Paste the reference's pixels",
                info="Where a region registers with the reference; untick it when a paste looks wrong (the "
                "status says what speaks against each paste)",
                elem_id="refalign-paste",
            )
            guided = gr.Checkbox(
                value=False,
                label="Keep a painted feature's layout",
                info="For a mask painted around a smeared eye, nose or logo that does not register: rebuild it "
                "around its own pixels, not from its surroundings (the status's --unregistered guided)",
                visible=transfers,
                elem_id="refalign-guided",
            )
        guard_uploads(image_in, "image")
        guard_uploads(reference_in, "reference")
        run = gr.Button("Refine", variant="primary", elem_id="refalign-run")
        status = gr.Markdown(elem_id="refalign-status")
        with gr.Row(equal_height=True):
            overlay_out = gr.Image(
                label="Where the model looked: correspondence on the reference",
                type="numpy",
                format="png",
                interactive=False,
                elem_id="refalign-overlay",
            )
            refined_out = gr.Image(
                label="Refined image", type="numpy", format="png", interactive=False, elem_id="refalign-refined"
            )
        with gr.Row():
            comparison_out = gr.Image(
                label="Before / after (artifact outlined)",
                type="numpy",
                format="png",
                interactive=False,
                elem_id="refalign-comparison",
                scale=2,
            )
            files_out = gr.File(label="Downloads: refined.png, mask.png, correspondence.png", elem_id="refalign-files", scale=1)
        run.click(
            on_run,
            inputs=[image_in, reference_in, steps, guidance, seed, no_align, paste, guided],
            outputs=[overlay_out, refined_out, comparison_out, files_out, status],
            api_name="refine",
            concurrency_limit=1,  # one model, one request at a time; the others wait in the queue
        )
    demo.queue(default_concurrency_limit=1)
    if owned:
        weakref.finalize(demo, shutil.rmtree, root, True)
    return demo


def launch(demo, *, host: str = "127.0.0.1", port: int = 7860, prevent_thread_lock: bool = False, quiet: bool = False):
    """Serve the page on ``host:port`` with system fonts only (the page fetches nothing from other hosts). A stop
    (Ctrl-C, or SIGTERM/SIGHUP inside :func:`serving_folder`) while gradio is still starting the server closes it as
    gradio's own loop does once it serves, and returns ``None``: gradio answers ``KeyboardInterrupt`` only in that
    loop, and a stop during its start-up checks (on a busy machine, seconds) ended the process with a traceback."""
    import gradio as gr

    theme = gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"]
    )
    try:
        return demo.launch(
            server_name=host,
            server_port=port,
            share=False,
            inbrowser=False,
            prevent_thread_lock=prevent_thread_lock,
            quiet=quiet,
            show_error=True,
            max_file_size="100mb",
            footer_links=[],
            theme=theme,
            ssr_mode=False,
        )
    except KeyboardInterrupt:
        demo.close()
        logger.info("demo stopped while starting")
        return None
