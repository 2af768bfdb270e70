"""Grid search of where to read the correspondence (paper §3.3 and §A.1, Fig. 4/5/7).

For every schedule step ``t`` and every cross-attention layer ``l`` the mIoU ``Γ[t, l]`` of ``M*`` against the
annotated ``correspondence.png`` of a set of case folders (DESIGN §4). Cost: per case ONE U-Net pass per step that
reads all layers at once (``T`` passes, not ``T × L``), plus one reference-encoder pass.

Outputs (:func:`write_search_outputs`): ``gamma.csv`` (rows = steps, columns = layers), ``gamma.png`` (heatmap like
paper Fig. 7), ``best.json`` (best step/layer and its mIoU, plus per-case IoUs at the best setting).
:func:`store_alignment_defaults` writes the best setting into a checkpoint's ``refalign.json`` (only on request).
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from tqdm.auto import tqdm

from refalign.errors import InputError
from refalign.eval.cases import list_cases, read_case
from refalign.files import save_image, write_bytes_atomic
from refalign.mask_ops import iou
from refalign.models.unet import cross_attention_layer_names
from refalign.pipelines.alignment import capture_maps, correspondence_mask, prepare_alignment
from refalign.pipelines.config import FILE_NAME, RefalignConfig

logger = logging.getLogger(__name__)


@dataclass
class SearchResult:
    """``gamma[t, l]``: mIoU over ``case_names`` at schedule step ``t`` and layer ``l``; ``per_case[c, t, l]``: IoUs."""

    gamma: np.ndarray
    per_case: np.ndarray
    case_names: list[str]
    num_inference_steps: int
    timesteps: list[int]
    layer_names: list[str]
    skipped: list[str] = field(default_factory=list)

    @property
    def best(self) -> tuple[int, int, float]:
        """``(step, layer, mIoU)`` of the best cell; ties go to the earliest step, then the lowest layer."""
        flat = int(np.argmax(self.gamma))  # argmax returns the first maximum in row-major (step, layer) order
        step, layer = np.unravel_index(flat, self.gamma.shape)
        return int(step), int(layer), float(self.gamma[step, layer])

    def to_json(self) -> dict:
        step, layer, score = self.best
        first_layer = int(np.argmax(self.gamma[0]))
        return {
            "step": step,
            "layer": layer,
            "score": score,
            "timestep": self.timesteps[step],
            "num_inference_steps": self.num_inference_steps,
            "layer_name": self.layer_names[layer],
            "best_layer_at_step_0": {"layer": first_layer, "score": float(self.gamma[0, first_layer])},
            "num_cases": len(self.case_names),
            "cases": {n: float(self.per_case[i, step, layer]) for i, n in enumerate(self.case_names)},
            "skipped": self.skipped,
        }


def search_alignment(
    pipe,
    cases_dir,
    *,
    num_inference_steps: int | None = None,
    output_dir=None,
    seed: int | None = None,
    progress: bool = True,
) -> SearchResult:
    """Γ over every (step, layer) on the case folders of ``cases_dir`` (see module docs).

    Args:
        pipe: a :class:`~refalign.pipelines.RefineByAlignPipeline`.
        cases_dir: a folder of case folders (or one case folder).
        num_inference_steps: schedule length ``T`` (default ``refalign_config.alignment.num_inference_steps``).
        output_dir: if given, :func:`write_search_outputs` writes there.
        seed: seed of each case's noise (default ``refalign_config.alignment.seed``); the same noise for all steps.
        progress: show a tqdm bar.

    Cases without ``correspondence.png`` are skipped with a logged note; none usable is an :class:`InputError`.
    """
    cfg = pipe.refalign_config.alignment
    steps = int(num_inference_steps or cfg.num_inference_steps)
    if steps < 1:
        raise InputError(f"--steps {steps}: the schedule needs at least one step")
    seed = int(cfg.seed if seed is None else seed)
    layer_names = cross_attention_layer_names(pipe.unet)
    cases, skipped = [], []
    for path in list_cases(cases_dir):
        case = read_case(path)
        if case.correspondence is None:
            logger.info("%s: no correspondence.png; skipped", path)
            skipped.append(case.name)
        else:
            cases.append(case)
    if not cases:
        raise InputError(f"{cases_dir}: no case has a correspondence.png (the ground truth the search scores against)")

    per_case = np.zeros((len(cases), steps, len(layer_names)), np.float64)
    timesteps = [0] * steps
    bar = tqdm(total=len(cases) * steps, desc="align-search", unit="pass", disable=not progress)
    for c, case in enumerate(cases):
        prepared = prepare_alignment(
            pipe, case.image, case.mask, case.reference, case.reference_mask, torch.Generator("cpu").manual_seed(seed)
        )
        for step in range(steps):
            maps, timesteps[step] = capture_maps(pipe, prepared, step, None, steps)
            for layer, raw in maps.items():
                _, m_star = correspondence_mask(raw, prepared, noise_z=cfg.noise_z, threshold=cfg.threshold)
                per_case[c, step, layer] = iou(m_star, case.correspondence)
            bar.update(1)
    bar.close()
    result = SearchResult(
        gamma=per_case.mean(axis=0),
        per_case=per_case,
        case_names=[c.name for c in cases],
        num_inference_steps=steps,
        timesteps=timesteps,
        layer_names=layer_names,
        skipped=skipped,
    )
    step, layer, score = result.best
    logger.info(
        "best: step %d (t=%d), layer %d, mIoU %.4f over %d case(s)", step, timesteps[step], layer, score, len(cases)
    )
    if output_dir is not None:
        write_search_outputs(result, output_dir)
    return result


def write_search_outputs(result: SearchResult, output_dir) -> dict[str, Path]:
    """Write ``gamma.csv``, ``gamma.png`` and ``best.json`` into ``output_dir`` (created if missing)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    n_steps, n_layers = result.gamma.shape
    lines = ["step,timestep," + ",".join(f"l{i}" for i in range(n_layers))]
    for s in range(n_steps):
        lines.append(f"{s},{result.timesteps[s]}," + ",".join(f"{v:.6f}" for v in result.gamma[s]))
    paths = {"csv": out / "gamma.csv", "png": out / "gamma.png", "json": out / "best.json"}
    write_bytes_atomic(paths["csv"], ("\n".join(lines) + "\n").encode())
    write_heatmap(result.gamma, paths["png"], best=result.best[:2])
    write_bytes_atomic(paths["json"], (json.dumps(result.to_json(), indent=2) + "\n").encode())
    return paths


def write_heatmap(gamma: np.ndarray, path, *, best: tuple[int, int] | None = None) -> None:
    """Γ as a heatmap PNG (layers across, steps down; paper Fig. 7). Uses matplotlib when installed, otherwise
    draws the cells with OpenCV (no axes text beyond a colour scale)."""
    try:  # matplotlib is optional (not a dependency): imported only here, where it is used
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        _heatmap_cv2(gamma, path, best)
        return
    n_steps, n_layers = gamma.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.45 * n_layers, 1.2 + 0.12 * max(n_steps, 8)), dpi=100)
    im = ax.imshow(gamma, aspect="auto", cmap="viridis", vmin=0.0, vmax=max(1e-6, float(gamma.max())))
    ax.set_xlabel("layer l")
    ax.set_ylabel("step t (schedule index)")
    ax.set_xticks(range(n_layers))
    if best is not None:
        ax.scatter([best[1]], [best[0]], marker="*", s=120, c="red")
    fig.colorbar(im, ax=ax, label="mIoU")
    ax.set_title("alignment mIoU Γ(t, l)")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    write_bytes_atomic(path, buf.getvalue())


def _heatmap_cv2(gamma: np.ndarray, path, best: tuple[int, int] | None, cell: int = 24) -> None:
    g = gamma / max(1e-6, float(gamma.max()))
    img = cv2.applyColorMap(np.round(g * 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)[..., ::-1]
    img = np.repeat(np.repeat(img, cell, axis=0), cell, axis=1)
    if best is not None:
        s, layer = best
        cv2.rectangle(img, (layer * cell, s * cell), ((layer + 1) * cell - 1, (s + 1) * cell - 1), (255, 0, 0), 2)
    ramp = np.linspace(255, 0, img.shape[0]).astype(np.uint8)[:, None]
    scale = np.repeat(cv2.applyColorMap(ramp, cv2.COLORMAP_VIRIDIS)[..., ::-1], cell // 2, axis=1)
    img = np.concatenate([img, np.full((img.shape[0], cell // 2, 3), 255, np.uint8), scale], axis=1)
    save_image(np.ascontiguousarray(img), path)


def store_alignment_defaults(checkpoint_dir, result: SearchResult) -> Path:
    """Write the best (step, layer, mIoU) and the schedule length into ``checkpoint_dir/refalign.json``."""
    path = Path(checkpoint_dir) / FILE_NAME
    config = RefalignConfig.load(path)
    step, layer, score = result.best
    config.alignment.step = step
    config.alignment.layer = layer
    config.alignment.score = score
    config.alignment.num_inference_steps = result.num_inference_steps
    config.save(path)
    logger.info("%s: alignment defaults set to step %d, layer %d (mIoU %.4f)", path, step, layer, score)
    return path
