"""Reading text, for the OCR-agreement metric on text cases (logos, labels, print).

Two engines, the first one installed wins:

* ``rapidocr`` — RapidOCR (``pip install 'refalign[ocr]'``, package ``rapidocr-onnxruntime``): PP-OCR detection and
  recognition models in ONNX, shipped *inside its wheel*, run by onnxruntime on the CPU; needs no network.
* ``tesseract`` — the ``tesseract`` binary (Debian package ``tesseract-ocr``) through a subprocess (optional).

When neither is there :func:`ocr_engine` is ``None`` and the runner skips the metric with one logged line.
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import subprocess

import cv2
import numpy as np

#: Fewest alphanumeric characters the OCR must read in the clean target for a case to count as a text case.
MIN_TEXT_CHARS = 3
#: Word confidence (0–100) above which a word of the target counts as real text, not texture read as text.
TEXT_CONFIDENCE = 80.0
ENGINES = ("rapidocr", "tesseract")


def ocr_engine() -> str | None:
    """The OCR engine :func:`read_text` uses: ``"rapidocr"``, ``"tesseract"`` or ``None`` when neither is installed."""
    if importlib.util.find_spec("rapidocr_onnxruntime") is not None:
        return "rapidocr"
    if shutil.which("tesseract") is not None:
        return "tesseract"
    return None


def tesseract_available() -> bool:
    """Whether the ``tesseract`` binary is on ``PATH``."""
    return shutil.which("tesseract") is not None


def _upscaled(image: np.ndarray, upscale_to: int) -> np.ndarray:
    h, w = image.shape[:2]
    s = max(1.0, upscale_to / max(1, min(h, w)))
    if s > 1:
        image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
    return image


@functools.lru_cache(maxsize=1)
def _rapidocr():
    from rapidocr_onnxruntime import RapidOCR  # deferred: optional, and loading its three models takes seconds

    return RapidOCR()


#: A word read: its text, confidence (0–100) and box ``(top, left, bottom, right)`` in the input's pixels.
Word = tuple[str, float, tuple[int, int, int, int]]


def _rapidocr_words(image: np.ndarray, upscale_to: int) -> list[Word]:
    big = _upscaled(image, upscale_to)
    s = big.shape[0] / image.shape[0]
    result, _ = _rapidocr()(cv2.cvtColor(big, cv2.COLOR_RGB2BGR))
    words = []
    for box, text, score in result or []:  # one per detected text line: 4 corner points, text, score in 0..1
        pts = np.asarray(box, np.float64) / s
        (l, t), (r, b) = pts.min(0), pts.max(0)
        words.append((str(text), 100.0 * float(score), (int(t), int(l), int(np.ceil(b)), int(np.ceil(r)))))
    return words


def _tesseract_words(image: np.ndarray, upscale_to: int, timeout: float) -> list[Word]:
    grey = _upscaled(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), upscale_to)
    s = grey.shape[0] / image.shape[0]
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
                l, t, w, h = (float(c) / s for c in cols[6:10])
                words.append((cols[11].strip(), float(cols[10]), (int(t), int(l), int(np.ceil(t + h)), int(np.ceil(l + w)))))
            except ValueError:
                continue
    return words


def read_words(image: np.ndarray, *, upscale_to: int = 400, timeout: float = 30.0,
               engine: str | None = None) -> list[Word]:
    """Every word (RapidOCR: text line) read in an RGB image, with confidence and box; see :func:`read_text`."""
    engine = engine or ocr_engine()
    if engine == "rapidocr":
        return _rapidocr_words(image, upscale_to)
    if engine == "tesseract":
        return _tesseract_words(image, upscale_to, timeout)
    raise RuntimeError("no OCR engine installed: pip install 'refalign[ocr]' (RapidOCR), or tesseract-ocr")


def read_text(
    image: np.ndarray, *, min_confidence: float = 0.0, min_word: int = 1, upscale_to: int = 400,
    timeout: float = 30.0, engine: str | None = None,
) -> str:
    """Text read in an RGB crop (enlarged so the short side is ``upscale_to`` px), keeping words of confidence
    ≥ ``min_confidence`` (0–100) with at least ``min_word`` alphanumeric characters. ``engine`` defaults to
    :func:`ocr_engine`. ``""`` when nothing is read."""
    words = read_words(image, upscale_to=upscale_to, timeout=timeout, engine=engine)
    return " ".join(w for w, c, _ in words if c >= min_confidence and sum(ch.isalnum() for ch in w) >= min_word)
