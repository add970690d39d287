"""The page in a real browser: Playwright driving the system's Chromium (no download).

Skips where Playwright or a ``chromium`` executable is missing (.ci/run installs both).
"""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from faltung.io import save_model

from ..explain.models import trained_grey_net

playwright = pytest.importorskip("playwright.sync_api")
Image = pytest.importorskip("PIL.Image")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium executable on PATH")
ROOT = Path(__file__).resolve().parents[2]

# Per layer: how many channel images differ from their neighbours' pixels (not blank).
CANVAS_STATS = """() => Array.from(document.querySelectorAll('canvas.fmap')).map(c => {
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  let lo = 255, hi = 0;
  for (let i = 0; i < d.length; i += 4) { lo = Math.min(lo, d[i + 1]); hi = Math.max(hi, d[i + 1]); }
  return {layer: c.dataset.layer, spread: hi - lo};
})"""
PIXEL_SUMS = """() => Array.from(document.querySelectorAll('canvas.fmap')).map(c =>
  c.getContext('2d').getImageData(0, 0, c.width, c.height).data.reduce((a, b) => a + b, 0))"""
PROBABILITIES = "() => Array.from(document.querySelectorAll('.prob')).map(r => Number(r.dataset.p))"


@pytest.fixture(scope="module")
def page_url(tmp_path_factory):
    model, _, _ = trained_grey_net()
    path = tmp_path_factory.mktemp("serve") / "model.npz"
    save_model(model, path, {"input_shape": [1, 28, 28], "classes": [str(i) for i in range(10)]})
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), PYTHONUNBUFFERED="1")
    process = subprocess.Popen(
        [sys.executable, "-m", "faltung", "serve", str(path), "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        line = process.stdout.readline()
        match = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert match, line
        yield match.group(0)
    finally:
        process.terminate()
        process.wait(timeout=10)


def wait_until(page, script, timeout_s=30.0):
    """Poll ``script`` (a function) until it returns something truthy. (The page's CSP
    forbids eval, which Playwright's wait_for_function would need.)"""
    deadline = time.monotonic() + timeout_s
    while not page.evaluate(script):
        assert time.monotonic() < deadline, f"timed out waiting for {script}"
        page.wait_for_timeout(50)


def stroke(page, points):
    box = page.locator("#pad").bounding_box()
    at = [(box["x"] + x * box["width"], box["y"] + y * box["height"]) for x, y in points]
    page.mouse.move(*at[0])
    page.mouse.down()
    for (ax, ay), (bx, by) in itertools.pairwise(at):
        for t in range(1, 9):
            page.mouse.move(ax + (bx - ax) * t / 8, ay + (by - ay) * t / 8)
    page.mouse.up()


def test_drawing_updates_probabilities_and_feature_maps(page_url, tmp_path):
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.goto(page_url)
            wait_until(page, "() => Number(document.body.dataset.updates) >= 1")
            blank_probabilities = page.evaluate(PROBABILITIES)
            blank_maps = page.evaluate(PIXEL_SUMS)
            before = int(page.evaluate("document.body.dataset.updates"))

            # Synthetic class 3 is a horizontal bar at rows 10-11 of 28.
            stroke(page, [(0.15, 0.38), (0.85, 0.38)])
            wait_until(page, f"() => Number(document.body.dataset.updates) > {before}")
            page.wait_for_timeout(300)
            assert page.inner_text("#status") == ""
            probabilities = page.evaluate(PROBABILITIES)
            assert len(probabilities) == 10 and abs(sum(probabilities) - 1) < 1e-3
            assert probabilities != blank_probabilities
            maps = page.evaluate(PIXEL_SUMS)
            changed = sum(a != b for a, b in zip(maps, blank_maps))
            assert changed > len(maps) // 2, (changed, len(maps))
            stats = page.evaluate(CANVAS_STATS)
            layers = {s["layer"] for s in stats}
            assert {"conv1", "pool1", "relu1", "fc1", "sigmoid", "fc2"} <= layers
            for layer in layers:  # every layer shows something, not one flat colour
                assert max(s["spread"] for s in stats if s["layer"] == layer) > 20, layer
            saliency = page.evaluate(
                """() => { const c = document.getElementById('saliency');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 60; return n; }"""
            )
            assert saliency > 0

            page.locator("canvas.fmap[data-layer='conv1']").first.click()
            page.wait_for_selector("#detail:not([hidden])")
            assert "conv1, channel 0" in page.inner_text("#detail-title")
            assert "=" in page.inner_text("#detail-formula")

            # Without a dataset the sample buttons are off and say why.
            assert page.is_disabled("#random") and page.is_disabled("#mistake")
            assert "No test images" in page.inner_text("#data-note")

            # An image file, dark on light, is inverted and shown to the model.
            before = int(page.evaluate("() => Number(document.body.dataset.updates)"))
            picture = np.full((56, 56), 255, np.uint8)
            picture[10:14, 8:48] = 0
            Image.fromarray(picture).save(tmp_path / "bar.png")
            page.set_input_files("#file", str(tmp_path / "bar.png"))
            wait_until(page, f"() => Number(document.body.dataset.updates) > {before}")
            assert "inverted" in page.inner_text("#sample-note")
            assert page.evaluate(PROBABILITIES) != probabilities

            page.screenshot(path=str(tmp_path / "page.png"))
            assert (tmp_path / "page.png").stat().st_size > 10_000
            assert errors == []
        finally:
            browser.close()
