"""Reading text with Tesseract, for the OCR-agreement metric on text cases (logos, labels, print).

Uses the ``tesseract`` binary (Debian package ``tesseract-ocr``) through a subprocess; when it is not installed
:func:`tesseract_available` is false and the runner skips the metric with one logged line.
"""

from __future__ import annotations

import shutil
import subprocess

import cv2
import numpy as np

#: Fewest alphanumeric characters Tesseract must read in the clean target window for a case to count as a text case.
MIN_TEXT_CHARS = 3
#: Tesseract word confidence (0–100) above which a word of the target counts as real text, not texture read as text.
TEXT_CONFIDENCE = 80.0


def tesseract_available() -> bool:
    """Whether the ``tesseract`` binary is on ``PATH``."""
    return shutil.which("tesseract") is not None


def _tesseract_tsv(image: np.ndarray, upscale_to: int, timeout: float) -> list[tuple[str, float]]:
    grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    h, w = grey.shape
    s = max(1.0, upscale_to / max(1, min(h, w)))
    if s > 1:
        grey = cv2.resize(grey, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
    ok, png = cv2.imencode(".png", grey)
    if not ok:
        return []
    proc = subprocess.run(["tesseract", "stdin", "stdout", "--psm", "6", "tsv"], input=png.tobytes(),
                          capture_output=True, timeout=timeout, check=False)
    words = []
    for line in proc.stdout.decode("utf-8", errors="replace").splitlines()[1:]:
        cols = line.split("\t")
        if len(cols) == 12 and cols[11].strip():
            try:
                words.append((cols[11].strip(), float(cols[10])))
            except ValueError:
                continue
    return words


def read_text(
    image: np.ndarray, *, min_confidence: float = 0.0, min_word: int = 1, upscale_to: int = 400, timeout: float = 30.0
) -> str:
    """Text Tesseract reads in an RGB crop (greyscale, enlarged so the short side is ``upscale_to`` px, one block
    of text: ``--psm 6``), keeping words of confidence ≥ ``min_confidence`` (0–100) with at least ``min_word``
    alphanumeric characters. ``""`` when nothing is read."""
    words = _tesseract_tsv(image, upscale_to, timeout)
    return " ".join(w for w, c in words if c >= min_confidence and sum(ch.isalnum() for ch in w) >= min_word)
