"""End to end in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright for Python.

The demo is served on 127.0.0.1 with the dummy checkpoint; the test uploads the image and the reference, checks
that running without a mask shows a readable message in the page, paints a stroke with the mouse, runs, downloads
the refined PNG and the mask the page used, and checks that only the painted pixels (plus the paste band) changed.
Every request that does not go to 127.0.0.1 is aborted and must not happen at all.

What it needs is installed by ``scripts/install_browser_test_deps.sh`` (run here when something is missing); when
that cannot install a browser the test is skipped with one line. Run with ``pytest -m slow tests/test_demo_browser.py``.
"""

from __future__ import annotations

import importlib
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import synthetic_scene
from test_demo import allowed_changes

pytestmark = pytest.mark.slow

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
INSTALL_SCRIPT = ROOT / "scripts" / "install_browser_test_deps.sh"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
RUN_TIMEOUT_MS = 300_000  # the dummy model takes seconds; leave room for a loaded 2-core machine


def _find_chromium() -> str | None:
    for candidate in (os.environ.get("REFALIGN_CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser"), "/usr/bin/chromium"):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _have_python_deps() -> bool:
    importlib.invalidate_caches()
    try:
        importlib.import_module("playwright.sync_api")
        importlib.import_module("gradio")
    except ImportError:
        return False
    return True


@pytest.fixture(scope="module")
def chromium() -> str:
    """The system Chromium, installed with the project's script when missing; skip (one line) when impossible."""
    if _find_chromium() is None or not _have_python_deps():
        try:
            proc = subprocess.run(
                ["bash", str(INSTALL_SCRIPT), sys.executable], capture_output=True, text=True, timeout=1200
            )
            why = (proc.stderr.strip().splitlines() or proc.stdout.strip().splitlines() or [f"exit {proc.returncode}"])[-1]
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = str(exc)
        if _find_chromium() is None or not _have_python_deps():
            pytest.skip(f"no headless Chromium + Playwright here ({INSTALL_SCRIPT.name}: {why})")
    return _find_chromium()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def served(dummy_checkpoint, tmp_path_factory):
    """The demo for the dummy checkpoint, loaded as the CLI loads it, served on 127.0.0.1 in a thread."""
    from refalign.cli._common import load_pipeline
    from refalign.demo.app import build_demo, launch

    pipe = load_pipeline(str(dummy_checkpoint), "cpu")
    demo = build_demo(pipe, output_root=tmp_path_factory.mktemp("demo-out"))
    port = _free_port()
    launch(demo, host="127.0.0.1", port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", pipe
    finally:
        demo.close()


def _paint_stroke(page, selector: str, dx: float = 16.0) -> None:
    """Drag the brush across the middle of the editor's canvas (the image is centred in it)."""
    canvas = page.locator(f"{selector} canvas").first
    box = canvas.bounding_box()
    x, y = box["x"] + box["width"] / 2 - dx / 2, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for i in range(1, 9):
        page.mouse.move(x + dx * i / 8, y, steps=2)
    page.mouse.up()


def test_demo_in_headless_chromium(chromium, served, tmp_path):
    from playwright.sync_api import sync_playwright

    url, pipe = served
    scene = synthetic_scene(256)
    image_path, reference_path = tmp_path / "image.png", tmp_path / "reference.png"
    Image.fromarray(scene["image"]).save(image_path)
    Image.fromarray(scene["reference"]).save(reference_path)
    outside: list[str] = []
    timings: dict[str, float] = {}

    def local_only(route):
        if route.request.url.startswith(("http://127.0.0.1:", "ws://127.0.0.1:")):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    t_start = time.perf_counter()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1600}, accept_downloads=True)
            page.route("**/*", local_only)
            page.goto(url)
            page.wait_for_selector("#refalign-run", timeout=60_000)
            timings["page loaded"] = time.perf_counter() - t_start

            page.locator("#refalign-image input[type=file]").set_input_files(str(image_path))
            page.locator("#refalign-reference input[type=file]").set_input_files(str(reference_path))
            page.locator("#refalign-image canvas").first.wait_for(timeout=30_000)
            page.locator("#refalign-reference canvas").first.wait_for(timeout=30_000)
            timings["uploaded"] = time.perf_counter() - t_start

            # nothing painted yet: a readable message in the page, no traceback
            page.click("#refalign-run")
            page.get_by_text("no artifact painted").first.wait_for(timeout=RUN_TIMEOUT_MS)
            assert page.get_by_text("Traceback").count() == 0
            timings["error shown"] = time.perf_counter() - t_start

            _paint_stroke(page, "#refalign-image")
            t_run = time.perf_counter()
            page.click("#refalign-run")
            page.locator("#refalign-status", has_text="painted pixels").wait_for(timeout=RUN_TIMEOUT_MS)
            page.locator("#refalign-files a").nth(2).wait_for(timeout=RUN_TIMEOUT_MS)
            timings["refine request"] = time.perf_counter() - t_run
            page.locator("#refalign-refined img").first.wait_for(timeout=30_000)
            page.locator("#refalign-overlay img").first.wait_for(timeout=30_000)
            page.locator("#refalign-comparison img").first.wait_for(timeout=30_000)
            status = page.locator("#refalign-status").inner_text()

            links = page.locator("#refalign-files a")
            names = [links.nth(i).get_attribute("href").rsplit("/", 1)[-1] for i in range(links.count())]
            with page.expect_download() as download:
                page.locator('#refalign-files a[href$="/refined.png"]').first.click()
            refined_path = tmp_path / "refined.png"
            download.value.save_as(refined_path)
            mask_href = page.locator('#refalign-files a[href$="/mask.png"]').first.get_attribute("href")
            mask_bytes = page.request.get(mask_href).body()
            (tmp_path / "mask.png").write_bytes(mask_bytes)

            shot = tmp_path / "demo.png"
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    timings["total"] = time.perf_counter() - t_start
    logger.info("browser test: screenshot %s; timings %s; status %r", shot, timings, status)

    assert outside == [], f"the page tried to reach other hosts: {outside[:5]}"
    assert names == ["refined.png", "mask.png", "correspondence.png"], names
    assert "Refined" in status and "seed 0" in status

    image = scene["image"]
    refined = np.asarray(Image.open(refined_path).convert("RGB"))
    mask = np.asarray(Image.open(tmp_path / "mask.png")) > 127
    assert refined.shape == image.shape
    h, w = mask.shape
    # the painted stroke: a small blob around the middle of the image
    ys, xs = np.nonzero(mask)
    assert 0 < mask.mean() < 0.15, f"mask covers {mask.mean():.1%}"
    assert abs(ys.mean() - h / 2) < h / 8 and abs(xs.mean() - w / 2) < w / 8
    # the result differs from the input inside the mask, and nowhere outside the dilated mask
    changed = (refined != image).any(-1)
    allowed = allowed_changes(pipe, mask)
    assert changed[mask].mean() > 0.5
    assert not (changed & ~allowed).any(), f"{int((changed & ~allowed).sum())} pixels changed outside the mask"
    assert (~allowed).mean() > 0.5  # the check covers most of the image
    assert shot.stat().st_size > 10_000
