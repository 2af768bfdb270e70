"""The benchmark's HTML report in a real browser: headless Chromium (Debian's ``chromium``) through Playwright.

The page must be self-contained: every image loads (``complete`` with a non-zero natural width) and the page asks
for nothing outside itself. Needs what ``scripts/install_browser_test_deps.sh`` installs (the chromium fixture of
the demo's browser test runs it when something is missing, or skips with one line).
Run with ``pytest -m slow tests/test_report_browser.py``.
"""

from __future__ import annotations

import logging

import pytest

from test_bench import _scene_case, _warp_case
from test_demo_browser import CHROMIUM_ARGS, chromium  # noqa: F401  (the fixture)

pytestmark = pytest.mark.slow

logger = logging.getLogger(__name__)


def test_report_opens_in_headless_chromium_with_every_image(chromium, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from refalign.eval.runner import BenchConfig, run_comparison

    root = tmp_path / "cases"
    _warp_case(root, "a-warp")
    _scene_case(root, "b-multiview", kind="multiview", seed=1)
    out = run_comparison(BenchConfig(cases=root, method="identity", output=tmp_path / "run", ocr=False),
                         ["identity", "telea", "oracle"], report=True)
    requests: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: requests.append(r.url))
            page.goto((out / "report.html").as_uri())
            page.wait_for_load_state("load")
            images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.alt])")
            tables = page.locator("table").count()
            sections = page.locator("section.case").count()
            page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        finally:
            browser.close()
    logger.info("report screenshot %s", tmp_path / "report.png")
    assert images and all(ok and width > 0 for ok, width, _ in images), [i for i in images if not (i[0] and i[1])]
    assert len(images) >= 2 * (2 + 3 + 1) and tables >= 3 and sections == 2
    outside = [u for u in requests if not u.startswith(("file://", "data:"))]
    assert outside == [], outside
