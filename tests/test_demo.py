"""Fast tests of the web demo: the pictures (visuals), one request through the handler, readable errors, the CLI.

The browser end-to-end test is tests/test_demo_browser.py (slow)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_scene
from refalign.demo import visuals
from refalign.errors import InputError

gr = pytest.importorskip("gradio")

from refalign.demo.app import build_demo, read_image_editor, read_reference_editor, run_refinement  # noqa: E402


# --------------------------------------------------------------------------------------------------- helpers


def editor(background: np.ndarray, painted: np.ndarray | None = None, alpha: np.ndarray | None = None) -> dict:
    """An ImageEditor value as gradio passes it with type="numpy", image_mode="RGBA"."""
    h, w = background.shape[:2]
    bg = np.dstack([background, np.full((h, w), 255, np.uint8) if alpha is None else alpha.astype(np.uint8) * 255])
    layers = []
    if painted is not None:
        layer = np.zeros((h, w, 4), np.uint8)
        layer[painted] = (255, 0, 255, 255)
        layers.append(layer)
    return {"background": bg, "layers": layers, "composite": bg}


class FakePipe:
    """Stands in for RefineByAlignPipeline.__call__ (fast, and lets the test see the arguments): inverts the masked
    pixels and reports a box of the reference as the correspondence."""

    def __init__(self):
        self.calls = []
        self.refalign_config = SimpleNamespace(refinement=SimpleNamespace(num_inference_steps=7, guidance_scale=3.0,
                                                                          source="reference"))

    def __call__(self, image, mask, reference, reference_mask=None, *, object_mask=None, no_align=False, **kwargs):
        from refalign.pipelines.alignment import AlignmentOutput
        from refalign.pipelines.outputs import RefineOutput
        from refalign.windows import Window

        self.calls.append(
            dict(mask=mask, reference_mask=reference_mask, object_mask=object_mask, no_align=no_align, **kwargs)
        )
        out = image.copy()
        out[mask] = 255 - out[mask]
        if no_align or reference_mask is not None:
            return RefineOutput(out, reference_mask, None, [Window(0, 0, 32)])
        region = np.zeros(reference.shape[:2], bool)
        region[10:30, 20:50] = True
        soft = np.zeros((8, 8), np.float32)
        soft[2:4, 3:6] = 1.0
        a = AlignmentOutput(soft, soft, region, soft > 0, 0, 0, 1.0, reference_box=(0, 0, max(reference.shape[:2])))
        return RefineOutput(out, region, [a], [Window(0, 0, 32)], reports=["window at (0, 0) size 32: a report"])


@pytest.fixture
def inputs():
    s = synthetic_scene(64)
    return s, editor(s["image"], s["mask"]), editor(s["reference"])


# --------------------------------------------------------------------------------------------------- visuals


def test_overlay_dims_outside_region_tints_heat_and_outlines():
    ref = np.full((40, 60, 3), 200, np.uint8)
    region = np.zeros((40, 60), bool)
    region[10:30, 20:40] = True
    soft = np.zeros((40, 60), np.float32)
    soft[15:25, 25:35] = 1.0
    out = visuals.demo_overlay(ref, soft, region)
    assert out.shape == ref.shape and out.dtype == np.uint8
    assert (out[0, 0] < 100).all()  # dimmed outside the region
    assert (out[12, 22] == 200).all()  # inside the region, no heat: untouched
    assert out[20, 30, 0] > out[20, 30, 2]  # heat tint where the soft map is hot (JET's hot end is red)
    assert tuple(out[10, 30]) == visuals.CONTOUR_COLOR  # the region's outline
    # alignment skipped: nothing dimmed, the whole reference outlined
    whole = visuals.demo_overlay(ref, None, None)
    assert (whole[20, 30] == 200).all() and tuple(whole[0, 30]) == visuals.CONTOUR_COLOR


def test_soft_map_helpers():
    a, b = np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32)
    a[0, 0], b[3, 3] = 1.0, 0.5
    m = visuals.combine_soft_maps([a, b])
    assert m[0, 0] == 1.0 and m[3, 3] == 0.5
    assert visuals.combine_soft_maps([]) is None
    with pytest.raises(ValueError):
        visuals.combine_soft_maps([a, np.zeros((2, 2))])
    assert (visuals.draw_contour(np.zeros((5, 5, 3), np.uint8), np.zeros((5, 5), bool)) == 0).all()


def test_before_after_panel():
    a = np.zeros((20, 30, 3), np.uint8)
    b = np.full((20, 30, 3), 100, np.uint8)
    mask = np.zeros((20, 30), bool)
    mask[5:10, 5:10] = True
    p = visuals.before_after(a, b, mask, gap=4)
    assert p.shape == (20, 64, 3)
    assert (p[:, 30:34] == 255).all()
    assert (p[15, 20] == 0).all() and (p[15, 34 + 20] == 100).all()
    assert tuple(p[5, 7]) == visuals.CONTOUR_COLOR and tuple(p[5, 34 + 7]) == visuals.CONTOUR_COLOR
    with pytest.raises(ValueError):
        visuals.before_after(a, b[:10])


# --------------------------------------------------------------------------------------------------- inputs


def test_read_editors(inputs):
    s, img_value, ref_value = inputs
    image, mask = read_image_editor(img_value)
    assert (image == s["image"]).all() and (mask == s["mask"]).all()
    reference, region, obj = read_reference_editor(ref_value)
    assert (reference == s["reference"]).all() and region is None and obj is None
    # strokes on the reference are the user's region; a transparent reference gives its alpha as the object mask
    painted = np.zeros(s["mask"].shape, bool)
    painted[:10, :10] = True
    assert (read_reference_editor(editor(s["reference"], painted))[1] == painted).all()
    _, region, obj = read_reference_editor(editor(s["reference"], alpha=s["object_mask"]))
    assert region is None and (obj == s["object_mask"]).all()


@pytest.mark.parametrize(
    "case, message",
    [
        ("no image", "no image: upload the image"),
        ("no reference", "no reference: upload a reference"),
        ("no layer", "no artifact painted"),
        ("empty layer", "no artifact painted"),
        ("full mask", "covers the whole image"),
        ("steps", "steps: 0 is out of range"),
        ("guidance", "guidance: -1 is out of range"),
        ("seed", "seed: -3 is not a whole number"),
        ("tiny image", "too small"),
    ],
)
def test_bad_inputs_give_readable_errors(inputs, case, message):
    s, img_value, ref_value = inputs
    args = dict(image_value=img_value, reference_value=ref_value, steps=2, guidance=1.0, seed=0)
    h, w = s["mask"].shape
    if case == "no image":
        args["image_value"] = None
    elif case == "no reference":
        args["reference_value"] = {"background": None, "layers": [], "composite": None}
    elif case == "no layer":
        args["image_value"] = editor(s["image"])
    elif case == "empty layer":
        args["image_value"] = editor(s["image"], np.zeros((h, w), bool))
    elif case == "full mask":
        args["image_value"] = editor(s["image"], np.ones((h, w), bool))
    elif case == "tiny image":
        args["image_value"] = editor(s["image"][:4, :4], s["mask"][:4, :4])
    else:
        args[case] = {"steps": 0, "guidance": -1, "seed": -3}[case]
    pipe = FakePipe()
    with pytest.raises(InputError, match=message):
        run_refinement(pipe, **args)
    assert pipe.calls == []  # validated before the model runs


# --------------------------------------------------------------------------------------------------- requests


def test_run_refinement_outputs_and_downloads(inputs, tmp_path):
    s, img_value, ref_value = inputs
    pipe = FakePipe()
    r = run_refinement(pipe, img_value, ref_value, 3, 1.5, 42, output_root=tmp_path)
    call = pipe.calls[0]
    assert call["num_inference_steps"] == 3 and call["guidance_scale"] == 1.5 and call["no_align"] is False
    assert call["reference_mask"] is None and call["object_mask"] is None and (call["mask"] == s["mask"]).all()
    assert call["generator"].initial_seed() == 42
    assert r.refined.shape == s["image"].shape
    assert (r.refined[~s["mask"]] == s["image"][~s["mask"]]).all()
    assert r.overlay.shape == s["reference"].shape and r.comparison.shape[1] > 2 * s["image"].shape[1]
    names = [p.rsplit("/", 1)[-1] for p in r.files]
    assert names == ["refined.png", "mask.png", "correspondence.png"]
    assert (np.asarray(Image.open(r.files[0])) == r.refined).all()
    assert ((np.asarray(Image.open(r.files[1])) > 127) == s["mask"]).all()
    assert "correspondence found covers 14.6%" in r.status and "seed 42" in r.status
    assert r.status.endswith("\n- window at (0, 0) size 32: a report")  # one line per window: source and why


def test_painted_reference_region_and_no_align(inputs, tmp_path):
    s, img_value, ref_value = inputs
    region = np.zeros(s["mask"].shape, bool)
    region[5:20, 5:20] = True
    pipe = FakePipe()
    r = run_refinement(pipe, img_value, editor(s["reference"], region), 2, 1.0, 0, output_root=tmp_path)
    assert (pipe.calls[0]["reference_mask"] == region).all()
    assert tuple(r.overlay[5, 10]) == visuals.CONTOUR_COLOR and "your painted region" in r.status
    r = run_refinement(pipe, img_value, ref_value, 2, 1.0, 0, True, output_root=tmp_path)
    assert pipe.calls[1]["no_align"] is True and "whole reference" in r.status
    assert len(r.files) == 2  # no correspondence to download


def _click_fn(demo):
    fns = [f for f in demo.fns.values() if f.api_name == "refine"]
    assert len(fns) == 1
    return fns[0].fn


def test_build_demo_page_and_handler_errors(inputs, tmp_path):
    s, img_value, ref_value = inputs
    pipe = FakePipe()
    demo = build_demo(pipe, output_root=tmp_path)
    assert isinstance(demo, gr.Blocks) and demo.enable_queue
    ids = {getattr(b, "elem_id", None) for b in demo.blocks.values()}
    assert {"refalign-image", "refalign-reference", "refalign-run", "refalign-overlay", "refalign-refined", "refalign-files"} <= ids
    steps = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "refalign-steps")
    assert steps.value == 7  # defaults come from the checkpoint's refalign.json
    fn = _click_fn(demo)
    overlay, refined, comparison, files, status = fn(img_value, ref_value, 2, 1.0, 0, False, True, False)
    assert refined.shape == s["image"].shape and len(files) == 3 and "Refined" in status
    paste = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "refalign-paste")
    assert paste.value is True and pipe.calls[-1]["paste"] is True
    fn(img_value, ref_value, 2, 1.0, 0, False, False, False)  # unticked: the registered reference's pixels are refused
    assert pipe.calls[-1]["paste"] is False
    guided = next(b for b in demo.blocks.values() if getattr(b, "elem_id", None) == "refalign-guided")
    assert guided.value is False and guided.visible and pipe.calls[-1]["unregistered"] is None  # the checkpoint's
    fn(img_value, ref_value, 2, 1.0, 0, False, True, True)  # ticked: unregistered regions keep their layout
    assert pipe.calls[-1]["unregistered"] == "guided"
    pipe.refalign_config.refinement.source = "model"  # the paper's path: no unregistered choice to make
    hidden = next(b for b in build_demo(pipe, output_root=tmp_path).blocks.values()
                  if getattr(b, "elem_id", None) == "refalign-guided")
    assert not hidden.visible
    pipe.refalign_config.refinement.source = "reference"
    with pytest.raises(gr.Error, match="no artifact painted"):
        fn(editor(s["image"]), ref_value, 2, 1.0, 0, False, True, False)

    def broken(*a, **k):
        raise RuntimeError("boom <b>")

    demo2 = build_demo(broken, output_root=tmp_path)
    with pytest.raises(gr.Error, match="RuntimeError: boom &lt;b&gt;"):
        _click_fn(demo2)(img_value, ref_value, 2, 1.0, 0, False, True, False)


def allowed_changes(pipe, mask: np.ndarray) -> np.ndarray:
    """Pixels the pipeline may change for ``mask``: the mask dilated by the paste radius of its zoom windows
    (``refalign_config.refinement.dilation`` model pixels, scaled to each window; paper §3.5 zoom-in paste)."""
    from refalign.mask_ops import dilate
    from refalign.pipelines.zoom import plan_windows
    from refalign.windows import ModelFrame

    cfg = pipe.refalign_config.refinement
    plans = plan_windows(mask, context=cfg.context, min_size=cfg.min_window, merge_growth=cfg.merge_growth)
    radius = max(ModelFrame(p.window, pipe.resolution).radius(cfg.dilation) for p in plans)
    return dilate(mask, radius)


def test_real_dummy_pipeline_request(dummy_pipeline, inputs, tmp_path):
    """The handler on the real (tiny) pipeline: only the painted pixels (plus the paste band) change."""
    s, img_value, ref_value = inputs
    r = run_refinement(dummy_pipeline, img_value, ref_value, 2, 2.0, 0, output_root=tmp_path)
    changed = (r.refined != s["image"]).any(-1)
    allowed = allowed_changes(dummy_pipeline, s["mask"])
    assert changed[s["mask"]].any()
    assert not (changed & ~allowed).any() and (~allowed).any()
    assert r.overlay.shape == s["reference"].shape


# --------------------------------------------------------------------------------------------------- CLI


def test_cli_demo_loads_once_and_launches(dummy_checkpoint, monkeypatch):
    from typer.testing import CliRunner

    import refalign.demo.app as app_mod
    from refalign.cli import app

    launched = {}

    def fake_launch(demo, **kwargs):
        launched.update(kwargs, demo=demo)

    monkeypatch.setattr(app_mod, "launch", fake_launch)
    res = CliRunner().invoke(app, ["demo", "--model", str(dummy_checkpoint), "--port", "7999", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert launched["host"] == "127.0.0.1" and launched["port"] == 7999 and isinstance(launched["demo"], gr.Blocks)


def test_cli_demo_bad_model_is_one_line(tmp_path):
    from typer.testing import CliRunner

    from refalign.cli import app

    res = CliRunner().invoke(app, ["demo", "--model", str(tmp_path / "nope")])
    assert res.exit_code == 2
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1


def test_cli_demo_port_in_use_fails_before_loading(dummy_checkpoint, monkeypatch):
    import socket

    from typer.testing import CliRunner

    import refalign.cli._common as common
    from refalign.cli import app

    monkeypatch.setattr(common, "load_pipeline", lambda *a, **k: pytest.fail("the model loaded before the port check"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = CliRunner().invoke(app, ["demo", "--model", str(dummy_checkpoint), "--port", str(port)])
    assert res.exit_code == 2 and f"--port {port}: cannot serve on 127.0.0.1:{port}" in res.output
