"""bench: the runner over case folders, baselines, reruns, failures, reports, and the refalign methods."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import synthetic_scene
from refalign.cli import app
from refalign.errors import InputError, OutputError
from refalign.eval.baselines import template_correspondence
from refalign.eval.cases import read_case, write_case
from refalign.eval.runner import BenchConfig, load_results, run_bench


def _scene_case(root, name, *, kind, size=96, seed=0):
    s = synthetic_scene(size, seed)
    image = s["image"].copy()
    image[s["mask"]] = 0  # a dark blot
    if kind == "warp":  # identity "warp": the correspondence is the mask itself
        ref, corr = s["image"], s["mask"]
    else:  # the scene shifted by (3, -2): a real displacement, no ground-truth correspondence
        ref, corr = s["reference"], None
    return write_case(root / name, image=image, mask=s["mask"], reference=ref, reference_mask=s["object_mask"],
                      target=s["image"], correspondence=corr,
                      meta={"reference_kind": kind, "artifact_kind": "blot"})


@pytest.fixture
def cases(tmp_path):
    root = tmp_path / "cases"
    _scene_case(root, "a-warp", kind="warp")
    _scene_case(root, "b-multiview", kind="multiview", seed=1)
    bad = _scene_case(root, "c-broken", kind="warp")
    (bad / "mask.png").write_bytes(b"not a png")
    return root


def test_baselines_and_report(cases, tmp_path):
    runs = {}
    for method in ("identity", "telea", "ns", "paste"):
        out = run_bench(BenchConfig(cases=cases, method=method, output=tmp_path / method, ocr=False))
        runs[method] = load_results(out / "results.jsonl")
        assert (out / "a-warp" / "refined.png").is_file() and (out / "summary.md").is_file()
        assert "error" in runs[method]["c-broken"] and "mask.png" in runs[method]["c-broken"]["error"]
        for name in ("a-warp", "b-multiview"):
            rec = runs[method][name]
            assert rec["background"] == 0 and rec["reference_kind"] in ("warp", "multiview") and rec["seconds"] >= 0
    assert runs["telea"]["a-warp"]["psnr"] > runs["identity"]["a-warp"]["psnr"] + 5
    assert runs["ns"]["b-multiview"]["psnr"] > runs["identity"]["b-multiview"]["psnr"] + 5
    # paste from the exact correspondence of an unwarped reference restores the target exactly
    assert runs["paste"]["a-warp"]["psnr"] == 100.0 and runs["paste"]["a-warp"]["correspondence_source"] == "ground truth"
    assert runs["paste"]["b-multiview"]["correspondence_source"] == "template match"
    summary = (tmp_path / "telea" / "summary.md").read_text()
    assert "| all | telea |" in summary and "| multiview | telea |" in summary and "c-broken" in summary
    assert "CLIP-T" not in summary  # not measured without weights
    pytest.importorskip("matplotlib")
    assert (tmp_path / "telea" / "per_kind.png").is_file()


def test_template_correspondence_finds_a_shift():
    s = synthetic_scene(128, 2)
    pred = template_correspondence(s["image"], s["mask"], s["reference"])
    truth = np.roll(s["mask"], (3, -2), axis=(0, 1))
    from refalign.eval.metrics import iou

    assert iou(pred, truth) > 0.6


def test_rerun_skips_finished_cases_and_retries_failures(cases, tmp_path):
    cfg = BenchConfig(cases=cases, method="identity", output=tmp_path / "out", ocr=False)
    run_bench(cfg)
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 3
    stamp = (tmp_path / "out" / "a-warp" / "refined.png").stat().st_mtime_ns
    run_bench(cfg)
    lines2 = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines2) == 4 and json.loads(lines2[-1])["case"] == "c-broken"  # only the failed case ran again
    assert (tmp_path / "out" / "a-warp" / "refined.png").stat().st_mtime_ns == stamp
    with pytest.raises(OutputError, match="holds results of method 'identity'"):
        run_bench(BenchConfig(cases=cases, method="telea", output=tmp_path / "out"))


class FakePipeline:
    """Stands in for RefineByAlignPipeline: returns the target-free telea-like fill and the mask as correspondence."""

    def __init__(self):
        self.calls, self.regions = [], []

    def __call__(self, image, mask, reference, reference_mask=None, *, object_mask=None, no_align=False,
                 num_inference_steps=None, generator=None):
        self.regions.append(reference_mask)
        self.calls.append({"no_align": no_align, "steps": num_inference_steps, "object_mask": object_mask is not None})
        out = image.copy()
        out[mask] = 128
        corr = None if no_align else np.roll(mask, (3, -2), axis=(0, 1))[: reference.shape[0], : reference.shape[1]]
        return SimpleNamespace(image=out, correspondence=corr, alignment=None, windows=None)


def test_refalign_methods_with_a_stand_in_pipeline(cases, tmp_path):
    pipe = FakePipeline()
    out = run_bench(BenchConfig(cases=cases, method="refalign", output=tmp_path / "r", steps=3, ocr=False), pipeline=pipe)
    rec = load_results(out / "results.jsonl")
    assert (out / "a-warp" / "correspondence_pred.png").is_file()
    assert 0 < rec["a-warp"]["iou"] < 1 and "iou" not in rec["b-multiview"]  # no ground truth there
    assert pipe.calls[0] == {"no_align": False, "steps": 3, "object_mask": True}
    assert all(r is None for r in pipe.regions)  # a reference_mask would skip the alignment stage
    summary = (out / "summary.md").read_text()
    assert "mIoU" in summary
    single = FakePipeline()
    out = run_bench(BenchConfig(cases=cases, method="refalign-single", output=tmp_path / "s", ocr=False), pipeline=single)
    assert single.calls[0]["no_align"] is True and not (out / "a-warp" / "correspondence_pred.png").exists()


def test_refalign_region_is_told_where_the_content_lies_as_a_user_painting_it_would(cases, tmp_path):
    """``refalign-region`` passes the case's matching region as ``reference_mask``: the exact correspondence of a
    warp case, the mask through the verified ``local_homography`` of a crossview case; a case that knows neither is
    skipped, not failed. The region it was given is not scored as a prediction."""
    s = _scene_case(cases, "d-crossview", kind="crossview", seed=2)
    meta = json.loads((s / "meta.json").read_text())
    meta["local_homography"] = [[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]  # the scene's shift
    (s / "meta.json").write_text(json.dumps(meta))
    pipe = FakePipeline()
    out = run_bench(BenchConfig(cases=cases, method="refalign-region", output=tmp_path / "g", ocr=False),
                    pipeline=pipe)
    rec = load_results(out / "results.jsonl")
    assert "matching region" in rec["b-multiview"]["skipped"] and "error" not in rec["b-multiview"]
    assert "iou" not in rec["a-warp"] and not (out / "a-warp" / "correspondence_pred.png").exists()
    warp, cross = (r for r in pipe.regions if r is not None)
    assert np.array_equal(warp, read_case(cases / "a-warp").correspondence)
    mask = read_case(s).mask
    assert cross.sum() == mask.sum() and np.array_equal(cross[1:-1, 4:-4], np.roll(mask, (-2, 3), (0, 1))[1:-1, 4:-4])


def test_verified_paste_pastes_through_the_crossview_cases_verified_homography(cases, tmp_path):
    """``verified-paste`` pastes through ``local_homography`` as the refine path would, with no check: on a stand-in
    crossview case whose reference is the scene shifted, the hole comes back near the truth; cases without that
    homography are skipped."""
    s = _scene_case(cases, "d-crossview", kind="crossview", seed=2)
    meta = json.loads((s / "meta.json").read_text())
    meta["local_homography"] = [[1.0, 0.0, 3.0], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]]  # the scene's shift
    (s / "meta.json").write_text(json.dumps(meta))
    runs = {}
    for method in ("identity", "verified-paste"):
        out = run_bench(BenchConfig(cases=cases, method=method, output=tmp_path / method, ocr=False))
        runs[method] = load_results(out / "results.jsonl")
    rec = runs["verified-paste"]
    assert "local_homography" in rec["a-warp"]["skipped"] and "local_homography" in rec["b-multiview"]["skipped"]
    assert rec["d-crossview"]["mask_psnr"] > runs["identity"]["d-crossview"]["mask_psnr"] + 15
    assert rec["d-crossview"]["background"] == 0


def test_refalign_needs_a_model(cases, tmp_path):
    with pytest.raises(InputError, match="needs a model"):
        run_bench(BenchConfig(cases=cases, method="refalign", output=tmp_path / "x"))
    with pytest.raises(InputError, match="unknown method"):
        run_bench(BenchConfig(cases=cases, method="magic", output=tmp_path / "x"))


def test_cli_bench(cases, tmp_path):
    res = CliRunner().invoke(app, ["bench", str(cases), "--method", "telea", "--output", str(tmp_path / "o"), "--no-ocr"])
    assert res.exit_code == 1 and "c-broken" in res.output, res.output  # the broken case: exit 1
    assert (tmp_path / "o" / "summary.md").is_file()
    res = CliRunner().invoke(app, ["bench", str(tmp_path / "none"), "--method", "telea", "--output", str(tmp_path / "p")])
    assert res.exit_code == 2 and "no such cases folder" in res.output


def test_cli_bench_semantic_scores_from_user_folders(cases, tmp_path):
    from test_metrics import save_tiny_scoring_models

    paths = save_tiny_scoring_models(tmp_path / "models")
    res = CliRunner().invoke(app, ["bench", str(cases), "--method", "identity", "--output", str(tmp_path / "o"),
                                   "--no-ocr", "--clip", paths["clip"], "--dino", paths["dino"], "--blip", paths["blip"]])
    assert res.exit_code == 1 and "c-broken" in res.output, res.output  # the broken case: exit 1
    rec = load_results(tmp_path / "o" / "results.jsonl")["a-warp"]
    assert {"clip_i", "dino", "clip_t"} <= set(rec) and rec["reference_region"] == "ground truth"
    assert "CLIP-I" in (tmp_path / "o" / "summary.md").read_text()


def test_bench_with_the_real_pipeline(cases, tmp_path, dummy_checkpoint):
    from refalign.pipelines.pipeline_refine_by_align import RefineByAlignPipeline

    if "__call__" not in RefineByAlignPipeline.__dict__:
        pytest.skip("RefineByAlignPipeline.__call__ is not built yet")
    res = CliRunner().invoke(app, ["bench", str(cases), "--method", "refalign", "--output", str(tmp_path / "o"),
                                   "--model", str(dummy_checkpoint), "--steps", "2", "--no-ocr", "--device", "cpu"])
    assert res.exit_code == 1 and "c-broken" in res.output, res.output  # the broken case: exit 1
    rec = load_results(tmp_path / "o" / "results.jsonl")
    assert "error" not in rec["a-warp"], rec["a-warp"].get("error")
    assert rec["a-warp"]["background"] == 0 and "iou" in rec["a-warp"]
    assert rec["a-warp"]["paste_radius"] >= 1 and "guidance" not in rec["a-warp"]  # not a guided model
    assert rec["a-warp"]["paste"] is True  # the run's refinement.paste, which registered() reads
    # each window's report line, as `refine` prints it (one window here)
    reports = rec["a-warp"]["reports"]
    assert len(reports) == len(rec["a-warp"]["sources"]) == 1 and reports[0].startswith("window at"), reports
    assert (tmp_path / "o" / "a-warp" / "correspondence_pred.png").is_file()
    res = CliRunner().invoke(app, ["bench", str(cases), "--method", "refalign-noguide", "--output", str(tmp_path / "n"),
                                   "--model", str(dummy_checkpoint), "--no-ocr", "--device", "cpu"])
    assert res.exit_code == 2 and "warped-reference guidance" in res.output
    res = CliRunner().invoke(app, ["bench", str(cases), "--method", "paste", "--output", str(tmp_path / "p"),
                                   "--model", str(dummy_checkpoint), "--no-ocr", "--device", "cpu"])
    assert res.exit_code == 1 and "c-broken" in res.output, res.output  # the broken case: exit 1
    rec = load_results(tmp_path / "p" / "results.jsonl")["b-multiview"]
    assert rec["correspondence_source"] == "refalign alignment" or "no correspondence region" in rec.get("error", "")


def test_bench_set_changes_the_checkpoints_settings_for_the_run(cases, tmp_path, dummy_checkpoint):
    """``--set section.key=value``: an ablation without editing refalign.json; recorded per case; a bad key or
    value is one line and exit 2 before anything is written."""
    args = ["bench", str(cases), "--method", "refalign", "--model", str(dummy_checkpoint), "--no-ocr", "--device",
            "cpu", "--steps", "1"]
    res = CliRunner().invoke(app, args + ["--output", str(tmp_path / "o"), "--set", "refinement.num_samples=2",
                                          "--set", "refinement.paste_mode=residual"])
    assert res.exit_code == 1 and "c-broken" in res.output, res.output  # the broken case: exit 1
    rec = load_results(tmp_path / "o" / "results.jsonl")["a-warp"]
    assert rec["settings"] == ["refinement.num_samples=2", "refinement.paste_mode=residual"]
    for bad, words in (("refinement.num_sample=2", "expected SECTION.KEY=VALUE"),
                       ("refinement.num_samples=many", "must be int"),
                       ("refinement.feather=wide", "must be a number"),
                       ("refinement.paste_mode=sideways", "paste_mode"),
                       # judged on the checkpoint's own settings (window paste): a combination it cannot run
                       ("refinement.harmonize=true", "harmonize")):
        res = CliRunner().invoke(app, args + ["--output", str(tmp_path / "bad"), "--set", bad])
        assert res.exit_code == 2 and words in res.output, res.output
        assert not (tmp_path / "bad").exists()
    res = CliRunner().invoke(app, ["bench", str(cases), "--method", "telea", "--output", str(tmp_path / "t"),
                                   "--set", "refinement.ramp=1"])
    assert res.exit_code == 2 and "uses no model" in res.output


# ------------------------------------------------------------------- oracle, seen/unseen, comparison and report
def _warp_case(root, name, seed=0, size=96):
    """A warp case as make-cases writes it: reference = colour-changed target under a known homography."""
    import cv2

    from refalign.data.perturb import colour_change, random_homography

    s = synthetic_scene(size, seed)
    rng = np.random.default_rng(seed)
    target = s["image"]
    hom = random_homography(size, size, rng, jitter=0.03)
    ref = cv2.warpPerspective(target, hom, (size, size), flags=cv2.INTER_LINEAR, borderValue=(255, 255, 255))
    ref, _ = colour_change(ref, rng)
    image = target.copy()
    image[s["mask"]] = 0
    return write_case(root / name, image=image, mask=s["mask"], reference=ref, target=target,
                      meta={"reference_kind": "warp", "artifact_kind": "blot", "homography": hom.tolist(),
                            "object": "toy", "photos": "photos", "source_photo": "photos/toy/00.jpg"})


def test_oracle_is_the_upper_bound_and_skips_cases_without_geometry(tmp_path):
    root = tmp_path / "cases"
    _warp_case(root, "a-warp")
    _scene_case(root, "b-multiview", kind="multiview", seed=1)
    runs = {}
    for method in ("telea", "oracle"):
        out = run_bench(BenchConfig(cases=root, method=method, output=tmp_path / method, ocr=False))
        runs[method] = load_results(out / "results.jsonl")
    warp, multi = runs["oracle"]["a-warp"], runs["oracle"]["b-multiview"]
    assert warp["box_psnr"] > runs["telea"]["a-warp"]["box_psnr"] + 3 and warp["background"] == 0
    assert "homography" in multi["skipped"] and "error" not in multi
    summary = (tmp_path / "oracle" / "summary.md").read_text()
    assert "1 cases skipped" in summary and "| all | oracle |" in summary
    assert "Failed cases" not in summary


def test_pixel_metrics_recorded_per_case(cases, tmp_path):
    out = run_bench(BenchConfig(cases=cases, method="telea", output=tmp_path / "t", ocr=False))
    rec = load_results(out / "results.jsonl")["a-warp"]
    assert {"box_psnr", "box_ssim", "mask_psnr", "gmsd", "detail", "seam", "psnr", "ssim"} <= set(rec)
    assert rec["mask_psnr"] < rec["box_psnr"] < rec["psnr"]  # less background, lower PSNR
    summary = (out / "summary.md").read_text()
    assert "PSNR box" in summary and "GMSD" in summary and "PSNR win" in summary


def test_seen_and_unseen_objects_from_the_training_sources(tmp_path):
    from refalign.eval.seen import case_photo_folder, model_training_objects, training_objects

    photos = tmp_path / "somewhere" / "dev-photos"
    for obj in ("backpack", "cat", "dog"):
        (photos / obj).mkdir(parents=True)
    data = {"sources": [{"kind": "procedural", "count": 3}, {"kind": "multiview", "path": "../elsewhere/dev-photos"}],
            "val_holdout": 0.2}  # round(0.2 × 6 groups) = 1 held back: the lowest CRC32 of the six names
    import zlib

    names = ["backpack", "cat", "dog", "proc00000", "proc00001", "proc00002"]
    held = min(names, key=lambda g: zlib.crc32(g.encode()))
    t = training_objects(data, folders={"dev-photos": photos})
    assert t.folders == {"dev-photos": {"backpack", "cat", "dog"}} and t.held_out == {held}
    for obj in ("backpack", "cat", "dog"):
        assert t.seen("dev-photos", obj) == (obj != held)
    assert not t.seen("other-photos", "cat")
    meta = {"object": "cat", "source_photo": str(photos / "cat" / "01.jpg")}
    assert case_photo_folder(meta) == ("dev-photos", "cat")
    assert case_photo_folder({"object": "cat", "photos": "x/dev-photos"}) == ("dev-photos", "cat")
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "refalign.json").write_text(json.dumps({"training": {"data": data}}))
    t2 = model_training_objects(ckpt, [meta])
    assert t2.held_out == {held} and t2.folders["dev-photos"] == {"backpack", "cat", "dog"}
    (ckpt / "refalign.json").write_text("{}")
    assert model_training_objects(ckpt) is None


def test_comparison_run_with_seen_split_and_html_report(tmp_path):
    from refalign.eval.runner import run_comparison

    root = tmp_path / "cases"
    _warp_case(root, "a-warp")
    _scene_case(root, "b-multiview", kind="multiview", seed=1)
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    data = {"sources": [{"kind": "multiview", "path": "photos"}], "val_holdout": 0}
    (ckpt / "refalign.json").write_text(json.dumps({"training": {"data": data}}))
    cfg = BenchConfig(cases=[root], method="identity", output=tmp_path / "cmp", ocr=False, seen_model=str(ckpt))
    out = run_comparison(cfg, ["identity", "telea", "oracle"], report=True)
    for m in ("identity", "telea", "oracle"):
        assert (out / m / "results.jsonl").is_file()
    rec = load_results(out / "telea" / "results.jsonl")
    assert rec["a-warp"]["seen"] is True and rec["b-multiview"]["seen"] is False  # no object recorded there
    summary = (out / "summary.md").read_text()
    assert summary.index("| unseen | identity |") < summary.index("| seen | identity |")
    never = summary.split("## Objects the model never saw, by reference kind")[1].split("##")[0]
    assert "| multiview | telea |" in never and "| warp |" not in never  # the warp case's object was seen
    assert "| telea |" in summary and "× Telea" in summary
    page = (out / "report.html").read_text()
    assert page.count("<img ") >= 2 * (2 + 3 + 1) and "data:image/jpeg;base64," in page
    assert "http://" not in page and "https://" not in page and "<script" not in page
    assert "a-warp" in page and "b-multiview" in page and "<table>" in page
    with pytest.raises(InputError, match="unknown method"):
        run_comparison(cfg, ["telea", "magic"])


def test_cli_bench_several_methods_and_folders_with_report(tmp_path):
    root, more = tmp_path / "cases", tmp_path / "more"
    _warp_case(root, "a-warp")
    _scene_case(more, "b-multiview", kind="multiview", seed=1)
    res = CliRunner().invoke(app, ["bench", str(root), str(more), "--method", "telea", "--method", "ns",
                                   "--output", str(tmp_path / "o"), "--no-ocr", "--report"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "o" / "report.html").is_file() and (tmp_path / "o" / "ns" / "b-multiview" / "refined.png").is_file()
    res = CliRunner().invoke(app, ["bench", str(root), "--method", "telea", "--output", str(tmp_path / "one"),
                                   "--no-ocr", "--report"])
    assert res.exit_code == 0, res.output
    assert "telea" in (tmp_path / "one" / "report.html").read_text()
    _scene_case(more, "a-warp", kind="warp")
    res = CliRunner().invoke(app, ["bench", str(root), str(more), "--method", "telea", "--output", str(tmp_path / "d")])
    assert res.exit_code == 2 and "also in" in res.output


def test_box_psnr_agrees_with_the_independent_check(cases, tmp_path):
    """benchmarks/check_box_psnr.py recomputes the headline metric from the PNG files with numpy alone."""
    import subprocess
    import sys
    from pathlib import Path

    out = run_bench(BenchConfig(cases=cases, method="telea", output=tmp_path / "t", ocr=False))
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "check_box_psnr.py"
    proc = subprocess.run([sys.executable, str(script), str(cases), str(out), "--tolerance", "0.01"],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 cases" in proc.stdout and "largest per case 0.0000 dB" in proc.stdout


def test_ocr_scores_text_cases_only_where_the_artifact_hurt_the_text(tmp_path):
    pytest.importorskip("rapidocr_onnxruntime", reason="the `ocr` extra (rapidocr-onnxruntime) is not installed")
    import cv2

    from refalign.eval.baselines import MethodOutput
    from refalign.eval.cases import read_case
    from refalign.eval.metrics import normalise_text
    from refalign.eval.runner import case_metrics

    target = np.full((120, 320, 3), 255, np.uint8)
    cv2.putText(target, "REFINE", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 2.0, (0, 0, 0), 5)
    on_text = np.zeros((120, 320), bool)
    on_text[40:90, 130:190] = True  # covers the letters in the middle
    off_text = np.zeros((120, 320), bool)
    off_text[100:116, 140:170] = True  # below the word
    for name, mask in (("on", on_text), ("off", off_text)):
        image = target.copy()
        image[mask] = 255  # the artifact erases what it covers
        write_case(tmp_path / name, image=image, mask=mask, reference=target, target=target)
    on, off = read_case(tmp_path / "on"), read_case(tmp_path / "off")
    fixed = case_metrics(on, MethodOutput(on.target.copy()), ocr=True)
    broken = case_metrics(on, MethodOutput(on.image.copy()), ocr=True)
    # the expected string is what the clean target reads in the artifact's window (part of the word here)
    assert fixed["ocr"] == 1.0 and fixed["ocr_edits"] == 0 and normalise_text(fixed["ocr_truth"]) in "refine"
    assert broken["ocr"] < 1.0 and broken["ocr_edits"] >= 1
    assert "ocr" not in case_metrics(off, MethodOutput(off.image.copy()), ocr=True)  # the text was never hurt


def test_cli_bench_several_methods_exits_non_zero_when_cases_failed_not_when_skipped(cases, tmp_path):
    from refalign.cli._common import EXIT_CASES_FAILED

    res = CliRunner().invoke(app, ["bench", str(cases), "--method", "telea", "--method", "oracle",
                                   "--output", str(tmp_path / "o"), "--no-ocr"])
    assert res.exit_code == EXIT_CASES_FAILED, res.output
    assert "c-broken (telea)" in res.output and "c-broken (oracle)" in res.output
    assert "b-multiview" not in res.output  # the oracle skips it: not a failure
    (cases / "c-broken" / "image.png").unlink()  # no longer a case folder
    res = CliRunner().invoke(app, ["bench", str(cases), "--method", "telea", "--method", "oracle",
                                   "--output", str(tmp_path / "p"), "--no-ocr"])
    assert res.exit_code == 0, res.output


def test_registration_table_counts_registered_and_wrongly_registered_cases():
    from refalign.eval.report import comparison_summary, registered, registration_rows

    def rec(case, psnr, ref="crossview", kind="garbled", sources=None):
        r = {"case": case, "box_psnr": psnr, "reference_kind": ref, "artifact_kind": kind}
        return r | ({"sources": sources} if sources is not None else {})

    identity = [rec("a", 20.0), rec("b", 20.0), rec("c", 20.0), rec("d", 20.0, "warp", "shuffled")]
    telea = [rec("a", 21.0), rec("b", 22.0), rec("c", 23.0), rec("d", 24.0, "warp", "shuffled")]
    pipe = [rec("a", 30.0, sources=["reference"]),  # registered, right
            rec("b", 19.0, sources=["model", "reference"]),  # registered (one window of two), worse than nothing
            rec("c", 25.0, sources=["kept"]),
            rec("d", 35.0, "warp", "shuffled", sources=["reference+model"])]
    assert [registered(r) for r in pipe] == [True, True, False, True] and registered(identity[0]) is None
    # a colour drift recoloured instead of pasted is registered (its confidence); one with no registration is not
    recoloured = [rec("e", 30.0, sources=["recoloured"]) | {"confidence": [0.71]},
                  rec("f", 30.0, sources=["recoloured"]) | {"confidence": [0.0]},
                  rec("g", 30.0, sources=["recoloured"])]
    assert [registered(r) for r in recoloured] == [True, False, False]
    # under refinement.paste=false a registered window recoloured by auto weighed no paste: not registered
    assert registered(recoloured[0] | {"paste": False}) is False and registered(recoloured[0] | {"paste": True})
    rows = {r["group"]: r for r in registration_rows(pipe, identity, telea, "reference_kind")}
    assert rows["all"] | {} == {"group": "all", "n": 4, "registered": 3, "wrong": 1, "doubted": None,
                                "doubted_wrong": None, "psnr": 28.0, "identity": 20.0, "telea": pytest.approx(67 / 3)}
    assert (rows["crossview"]["registered"], rows["crossview"]["wrong"], rows["crossview"]["psnr"]) == (2, 1, 24.5)
    assert rows["warp"]["wrong"] == 0
    assert registration_rows(pipe, None, None, "artifact_kind")[0]["wrong"] is None  # no identity run: not measured
    text = comparison_summary({"identity": identity, "telea": telea, "refalign": pipe})
    assert "## Registered windows" in text
    assert "| refalign | crossview | 3 | 2/3 (67%) | 1/3 (33%) | – | 24.50 | 20.00 | 21.50 |" in text
    # the pipeline's doubts on its pastes: how many registered cases drew one, and how many of those were wrong
    doubts = ([[]], [[], ["close call", "breaks the edge"]], [[]], [["close call"]])
    told = [r | {"doubts": d} for r, d in zip(pipe, doubts)]
    rows = {r["group"]: r for r in registration_rows(told, identity, telea, "reference_kind")}
    assert (rows["all"]["doubted"], rows["all"]["doubted_wrong"]) == (2, 1)
    assert (rows["crossview"]["doubted"], rows["warp"]["doubted"], rows["warp"]["doubted_wrong"]) == (1, 1, 0)
    assert "| refalign | crossview | 3 | 2/3 (67%) | 1/3 (33%) | 1 (1) | 24.50 |" in comparison_summary(
        {"identity": identity, "telea": telea, "refalign": told})
    assert "## Cases refalign left unregistered, by artifact kind" in text  # the case kept: every method there
    assert "Registered" not in comparison_summary({"identity": identity, "telea": telea})  # no pipeline: no table


def test_cases_with_truth_reads_every_folder_in_order_and_skips_cases_without_a_target(tmp_path):
    from refalign.eval.cases import cases_with_truth

    image = np.zeros((32, 32, 3), np.uint8)
    mask = np.zeros((32, 32), bool)
    mask[8:16, 8:16] = True
    for root, names in (("a", ("c1", "c2-no-truth")), ("b", ("c3",))):
        for name in names:
            target = None if "no-truth" in name else image
            write_case(tmp_path / root / name, image=image, mask=mask, reference=image, target=target)
    read = [c.path.name for c in cases_with_truth([tmp_path / "a", tmp_path / "b"])]
    assert read == ["c1", "c3"]
    assert [c.path.name for c in cases_with_truth([tmp_path / "a", tmp_path / "b"], limit=2)] == ["c1"]


def test_bench_references_refines_with_every_other_photo_of_the_object(tmp_path, dummy_checkpoint):
    """benchmarks/bench_references.py: a crossview case whose own reference (another object's texture) does not
    register gains the object's other photo, a turned and otherwise lit view that does; refined with all of them,
    the window pastes from that photo, and the mirrored copy of the source photo (a near-duplicate) is not used."""
    import subprocess
    import sys
    from pathlib import Path

    import cv2

    from conftest import textured_image
    from refalign.files import save_image

    truth = textured_image(seed=2)
    turned = cv2.warpAffine(truth, cv2.getRotationMatrix2D((160, 160), 20, 0.9), (320, 320),
                            borderMode=cv2.BORDER_REFLECT)
    view = (255 * (turned / 255.0) ** 0.8).astype(np.uint8)  # another view: turned, and lit otherwise
    photos = tmp_path / "photos" / "thing"
    photos.mkdir(parents=True)
    for stem, photo in (("00", truth), ("01", textured_image(seed=9)), ("02", view), ("03", truth[:, ::-1])):
        save_image(photo, photos / f"{stem}.png")
        save_image(np.ones(photo.shape[:2], bool), photos / f"{stem}.mask.png")
    mask = np.zeros(truth.shape[:2], bool)
    mask[135:165, 150:190] = True
    image = truth.copy()
    image[mask] = (255, 0, 255)
    write_case(tmp_path / "cases" / "0000-thing-00-garbled-crossview", image=image, mask=mask,
               reference=textured_image(seed=9), reference_mask=np.ones(truth.shape[:2], bool), target=truth,
               meta={"artifact_kind": "garbled", "reference_kind": "crossview", "object": "thing",
                     "source_photo": str(photos / "00.png"), "reference_photo": str(photos / "01.png")})
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_references.py"
    proc = subprocess.run([sys.executable, str(script), str(tmp_path / "cases"), "--model", str(dummy_checkpoint),
                           "--set", "refinement.source=reference", "--json", str(tmp_path / "rows.jsonl")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    row = json.loads((tmp_path / "rows.jsonl").read_text())
    assert sorted(row["singles"]) == ["01", "02"]  # 03, the source photo mirrored, is the same picture: left out
    assert not row["given"]["registered"] and row["all"]["registered"] and row["all"]["reference"] == "02"
    assert "| case's own reference | 0 of 1 |" in proc.stdout and "| all references | 1 of 1 | 0 |" in proc.stdout
    assert "the choice among pastes never arose" in proc.stdout, proc.stdout


def test_harmonizer_headroom_scores_ideal_corrections_of_each_windows_source(cases, tmp_path):
    """benchmarks/bench_harmonizer_headroom.py: the truth's own correction through a model's resolution, or smoothed,
    added inside the mask only; a correction seen at full resolution is the truth itself."""
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_harmonizer_headroom.py"
    sys.path.insert(0, str(script.parent))
    try:
        from bench_harmonizer_headroom import at_resolution, smooth_correction
    finally:
        sys.path.remove(str(script.parent))
    rng = np.random.default_rng(0)
    source, truth = (rng.integers(0, 255, (40, 40, 3)).astype(np.uint8) for _ in range(2))
    hole = np.zeros((40, 40), bool)
    hole[10:30, 12:28] = True
    full = at_resolution(source, truth, hole, (0, 0, 40, 40), 40)
    assert np.allclose(full[hole], truth[hole]) and (full[~hole] == source[~hole]).all()
    coarse = at_resolution(source, truth, hole, (0, 0, 40, 40), 4)
    assert np.abs(coarse - truth)[hole].mean() < np.abs(source.astype(float) - truth)[hole].mean()
    flat = smooth_correction(np.zeros_like(source), np.where(hole[..., None], 7, 255).repeat(3, axis=2), hole, 3.0)
    assert np.allclose(flat[hole], 7.0)  # nothing leaks in from outside the hole
    assert (smooth_correction(source, truth, hole, 3.0)[~hole] == source[~hole]).all()

    out = run_bench(BenchConfig(cases=cases, method="telea", output=tmp_path / "t", ocr=False))
    results = out / "results.jsonl"
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    results.write_text("".join(json.dumps({**r, "sources": ["synthesis"]}) + "\n" for r in rows if "box_psnr" in r))
    proc = subprocess.run([sys.executable, str(script), str(out), str(cases), "--resolutions", "8", "512",
                           "--sigmas", "2"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = {line.split("|")[1].strip(): line.split("|")[2:-1] for line in proc.stdout.splitlines()
             if line.startswith("| ") and not line.startswith("| windows")}
    assert set(table) == {"synthesis", "warp: synthesis"}
    for n, source_score, at8, at512, smooth in table.values():
        assert int(n) == 1
        psnr = [float(c.split("/")[0]) for c in (source_score, at8, at512, smooth)]
        assert psnr[2] > 60 and psnr[1] > psnr[0] and psnr[3] > psnr[0]  # at 512 px: the truth, up to rounding
