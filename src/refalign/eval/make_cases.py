"""Benchmark cases from real photos (the library behind ``refalign make-cases``).

GenArtifactBench (paper §4.1, §A.6) pairs generated images that have artifacts with reference photos and annotated
correspondences; it was never published. Here a case is made from a real photo ``P`` of an object:

1. The object mask comes from ``<photo>.mask.png`` beside the photo, or else from GrabCut initialised with a centred
   box (logged, since it can be wrong on busy backgrounds).
2. A free-form artifact mask (irregular, mostly under 4 % of the image as in §A.2) is placed on a *detailed* part of
   the object (high local gradient energy) and one synthetic artifact kind (:mod:`refalign.eval.synth`) changes
   only the pixels inside it → ``image.png``; ``P`` itself is ``target.png``.
3. The reference is either
   * ``warp`` — ``P`` under a known random perspective transform and colour change; ``correspondence.png`` is the
     artifact mask pushed through the same transform, so alignment can be scored exactly; or
   * ``multiview`` — a different photo of the same object (a real view change); no correspondence is known, and
     the artifact may sit on content that photo does not show; or
   * ``crossview`` — a different photo of the same object, with the artifact placed (at 1.5–6 % of the image) on
     content that photo *does* show: where local features of the two photos match (SIFT, ratio test, checked by a
     RANSAC fundamental matrix), and only if the mask's neighbourhood registers onto the other photo
     (:func:`refalign.registration.register`; its estimated homography is kept in ``meta.json`` as
     ``local_homography``) and the other photo seen through it shows the clean content under the mask
     (:func:`content_shown`, checked against the truth). The reference really holds the answer, so these cases tell
     a good transfer from a bad one; no exact correspondence is known.

With ``on_text`` (``--on-text``) the artifact covers part of a line of text the OCR reads in the photo (text and
logo cases, scored by the bench's OCR agreement); photos without readable text give no case.

With ``on_parts`` (``--on-parts``) the mask covers one distinct *part* of the object — an eye, a nose, a pin, a
printed logo: a compact region whose colour stands apart from its surroundings (:func:`part_mask`) — grown by a
margin, as a user paints around a broken feature. The free-form masks above sit on detailed texture whose truth
continues its surroundings; on a part the truth itself breaks from them. Photos with no such part give no case.

``meta.json`` of a warp case holds the exact ``homography`` (image → reference pixels, full precision; older cases
rounded it to 6 decimals) and ``photos``, the base name of the photo folder (used to tell objects a model trained on
from those it never saw, :mod:`refalign.eval.seen`).

Everything is deterministic for a given ``seed`` and photo folder: case ``c`` draws from
``numpy.random.default_rng([seed, c])`` and GrabCut's OpenCV RNG is seeded the same way.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm.auto import tqdm

from refalign.data.perturb import perspective_copy, project_mask, random_homography
from refalign.errors import InputError, OutputError
from refalign.eval import synth
from refalign.eval.cases import is_case, write_case
from refalign.files import load_image, load_object_mask, write_bytes_atomic
from refalign.mask_ops import dilate, grabcut_foreground
from refalign.registration import register
from refalign.transfer.features import Features, detect, match_ratio
from refalign.transfer.register import gradient_correlation, score_sigma, warp_box
from refalign.windows import mask_bbox, resize_image, resize_mask

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
REFERENCE_KINDS = ("warp", "multiview", "crossview")
#: Reference kinds ``make-cases`` builds when none are named (crossview cases go in a folder of their own, so the
#: default benchmark stays comparable with earlier tables).
DEFAULT_REFERENCE_KINDS = ("warp", "multiview")
#: Artifact area of crossview cases, as a share of the image.
CROSSVIEW_AREA = (0.015, 0.06)
#: Lowe's ratio for crossview matches, fewest fundamental-matrix inliers between two photos for a crossview pair,
#: and fewest homography inliers of the mask's neighbourhood (real view changes of plush toys and pets match
#: sparsely; these were set on the development photos so that most objects give a crossview case)
CROSSVIEW_RATIO = 0.8
CROSSVIEW_MIN_MATCHES = 8
CROSSVIEW_MIN_INLIERS = 8
#: A crossview case must keep its promise that the other photo shows the artifact's content: through the case's local
#: homography, the other photo's structure under the mask must match the clean photo's — gradient correlation inside
#: the mask at least this much (:func:`~refalign.transfer.register.gradient_correlation`, the threshold the
#: registration's ring gate uses). Before this check, 24 of the 32 development crossview cases scored below 0.5 (a
#: homography from 8 inliers can be degenerate), and on those even the best registration candidate chosen with the
#: truth seldom beat doing nothing and Telea.
CROSSVIEW_MIN_SHOWN = 0.5
#: Two photos are one picture — a crop, a rescale or a mirror image of the other, no view change at all — when the
#: other, through a homography fitted to their SIFT matches (MAGSAC++), reproduces the photo's grey levels: the 90th
#: percentile of the difference over their overlap at most ``SAME_PICTURE_GREY``, the homography fitted on at least
#: ``SAME_PICTURE_INLIERS`` inliers. Measured on every pair of the 78 development photos at 512 px (both ways round):
#: ``cat/02``–``03`` (a crop, 506 inliers) and ``dog5/02``–``03`` (a mirror image, 934) differ by 1.0 grey level; every
#: other pair by 9 or more (9: two cartoons on one white background, 12 inliers; 62: two shots of one dog against one
#: wall, 105 inliers). ``shared/data/README.md`` lists ``cat/01``–``02`` and ``dog/03``–``04`` instead: measured, those
#: are different photos, and ``backpack/00``–``01`` (listed as near-duplicates) two shots with the arm moved (36
#: inliers, 79 levels), a real if small view change.
SAME_PICTURE_GREY = 4.0
SAME_PICTURE_INLIERS = 20
#: A part (:func:`part_mask`): a connected region of the object whose Lab colour (OpenCV's 8-bit scale) lies at least
#: ``PART_CONTRAST`` from the median colour over a square of ``PART_CONTEXT ×`` the image's longer side around it,
#: filling at least ``PART_FILL`` of its bounding box, with an area between ``PART_AREA`` × the config's
#: ``min_area`` and ``max_area``; its mask is the part grown by ``PART_MARGIN ×`` the square root of its area. On the
#: 78 development photos at 512 px, 66 hold a part: eyes, noses, tongues and mouths of the pets and plush toys, the
#: emoji's eyes, pins.
PART_CONTEXT = 0.08
PART_CONTRAST = 30.0
PART_FILL = 0.3
PART_AREA = (0.25, 0.5)
PART_MARGIN = 0.15


@dataclass
class MakeCasesConfig:
    """Options of :func:`make_cases`. ``max_area`` bounds the artifact's share of the image (§A.2: mostly < 4 %)."""

    seed: int = 0
    per_photo: int = 1
    kinds: tuple[str, ...] = synth.ARTIFACT_KINDS
    reference_kinds: tuple[str, ...] = DEFAULT_REFERENCE_KINDS
    size: int = 512
    min_area: float = 0.006
    max_area: float = 0.045
    overwrite: bool = False
    #: photo pairs never used together, ``(object, stem, stem)``, beyond those :func:`is_near_duplicate` finds
    avoid_pairs: frozenset = frozenset()
    #: place the artifact over text the OCR reads in the photo (text/logo cases; photos without text give none)
    on_text: bool = False
    #: place the artifact over a distinct part of the object, its mask hugging it (:func:`part_mask`)
    on_parts: bool = False


@dataclass(frozen=True)
class Photo:
    path: Path
    object: str

    @property
    def stem(self) -> str:
        return self.path.stem

    @property
    def mask_path(self) -> Path:
        return self.path.with_name(self.path.stem + ".mask.png")


def discover_photos(root: Path) -> list[Photo]:
    """Photos of a folder: ``root/<object>/<photo>`` (several views per object) or ``root/<photo>`` (each photo its
    own object). ``*.mask.png`` files are object masks, not photos."""
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such photo folder; give a folder of images or of <object>/<photo>.jpg")

    def images(folder: Path) -> list[Path]:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.endswith(".mask.png"))

    photos = [Photo(p, p.stem) for p in images(root)]
    for sub in sorted(p for p in root.iterdir() if p.is_dir()):
        photos += [Photo(p, sub.name) for p in images(sub)]
    if not photos:
        raise InputError(f"{root}: holds no photos ({', '.join(IMAGE_SUFFIXES)}); give a folder of object photos")
    return photos


def fit_size(image: np.ndarray, size: int) -> np.ndarray:
    """Resize so the longer side is ``size`` pixels, keeping the aspect ratio."""
    h, w = image.shape[:2]
    s = size / max(h, w)
    return resize_image(image, (max(8, round(h * s)), max(8, round(w * s))))


def grabcut_object_mask(image: np.ndarray, *, seed: int = 0, margin: float = 0.08, work_side: int = 256) -> np.ndarray:
    """Object mask by GrabCut initialised with a centred box ``margin`` inside each border; the largest component,
    holes filled. Run at ``work_side`` px for speed, upsampled back."""
    h, w = image.shape[:2]
    small = fit_size(image, work_side)
    sh, sw = small.shape[:2]
    fg = grabcut_foreground(small, margin=margin, iterations=5, seed=seed)[0].astype(np.uint8)
    flood = fg.copy()
    cv2.floodFill(flood, np.zeros((sh + 2, sw + 2), np.uint8), (0, 0), 1)  # corner is outside the box: background
    fg = fg | (1 - flood)
    return resize_mask(fg.astype(bool), (h, w), conservative=False)


def object_mask_for(photo: Photo, image: np.ndarray, seed: int) -> tuple[np.ndarray, str]:
    """The object mask of a (resized) photo and where it came from (``file`` or ``grabcut``)."""
    if photo.mask_path.is_file():
        full = load_object_mask(photo.mask_path, load_image(photo.path).shape[:2], image_name=str(photo.path))
        return resize_mask(full, image.shape[:2], conservative=False), "file"
    mask = grabcut_object_mask(image, seed=seed)
    frac = float(mask.mean())
    if not 0.005 <= frac <= 0.97:
        logger.warning("%s: GrabCut found an object covering %.0f%% of the photo; using the centred box instead "
                       "(add %s for a real mask)", photo.path, 100 * frac, photo.mask_path.name)
        h, w = mask.shape
        mask = np.zeros((h, w), bool)
        mask[int(0.08 * h) : int(0.92 * h), int(0.08 * w) : int(0.92 * w)] = True
    return mask, "grabcut"


def is_near_duplicate(a: np.ndarray, b: np.ndarray, threshold: float = 0.9) -> bool:
    """Whether two photos are the same picture: the same framing or its mirror image (correlation of 32×32 grey
    thumbnails at least ``threshold``), or a crop or rescale of either (:func:`same_picture`)."""
    def thumb(x: np.ndarray) -> np.ndarray:
        t = cv2.resize(cv2.cvtColor(x, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(np.float64)
        t -= t.mean()
        return t / (np.linalg.norm(t) + 1e-9)

    ta, tb = thumb(a), thumb(b)
    if max(float((ta * tb).sum()), float((ta * tb[:, ::-1]).sum())) >= threshold:
        return True
    features = detect(a)  # once for both ways round
    return same_picture(a, b, features) or same_picture(a, np.ascontiguousarray(b[:, ::-1]), features)


def same_picture(a: np.ndarray, b: np.ndarray, features: Features | None = None) -> bool:
    """Whether ``b`` is a crop or rescale of the picture ``a`` (or the other way round): a homography fitted to
    their SIFT matches maps ``b`` onto ``a`` with the grey levels of their overlap nearly unchanged
    (:data:`SAME_PICTURE_GREY`, :data:`SAME_PICTURE_INLIERS`). A view change, even a small one, leaves more.
    ``features``: ``a``'s (:func:`~refalign.transfer.features.detect`), when the caller has them."""
    pa, pb, _ = match_ratio(features if features is not None else detect(a), detect(b))
    if len(pa) < SAME_PICTURE_INLIERS:
        return False
    hom, inliers = cv2.findHomography(pa, pb, cv2.USAC_MAGSAC, 3.0)
    if hom is None or int(inliers.sum()) < SAME_PICTURE_INLIERS:
        return False
    h, w = a.shape[:2]
    warped = cv2.warpPerspective(b, hom, (w, h), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_LINEAR)
    overlap = cv2.warpPerspective(np.full(b.shape[:2], 255, np.uint8), hom, (w, h),
                                  flags=cv2.WARP_INVERSE_MAP | cv2.INTER_NEAREST)
    overlap = cv2.erode(overlap, np.ones((5, 5), np.uint8)) > 0
    if overlap.sum() < SAME_PICTURE_INLIERS:
        return False
    grey = lambda x: cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32)  # noqa: E731
    return float(np.percentile(np.abs(grey(a) - grey(warped))[overlap], 90)) <= SAME_PICTURE_GREY


def artifact_mask(image: np.ndarray, obj: np.ndarray, rng: np.random.Generator, cfg: MakeCasesConfig, *,
                  area: tuple[float, float] | None = None, where: np.ndarray | None = None) -> np.ndarray:
    """A free-form mask on a detailed part of the object with an area in ``area`` (default ``[min_area, max_area]``)
    of the image; ``where`` (``(H, W)`` float, > 0 where allowed) replaces the detail score as the placement score."""
    h, w = obj.shape
    lo, hi = area or (cfg.min_area * 0.5, cfg.max_area)
    for _ in range(20):
        radius = max(4, int(np.sqrt(rng.uniform(max(lo, cfg.min_area), hi) * h * w) * 0.75))
        score = where if where is not None else synth.detail_map(image, obj, radius // 2)
        if not (score > 0).any():
            score = synth.detail_map(image, obj, 1)
        if not (score > 0).any():
            raise InputError("object mask is too small to hold an artifact; give a larger photo or a real mask")
        centre = synth.pick_detailed_location(score, rng)
        mask = synth.free_form_mask((h, w), centre, radius, rng) & obj
        frac = mask.mean()
        if mask.any() and lo <= frac <= hi:
            return mask
    return mask if mask.any() else synth.free_form_mask((h, w), centre, 6, rng)


def matched_points(image: np.ndarray, obj: np.ndarray, other: np.ndarray, other_obj: np.ndarray) -> np.ndarray:
    """``(N, 2)`` points ``(x, y)`` of ``image``'s object whose SIFT features match ``other``'s object (Lowe's ratio
    test, ``CROSSVIEW_RATIO``) and agree with a RANSAC fundamental matrix (3 px): content both photos show."""
    sift = cv2.SIFT_create()
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY) for x in (image, other))
    ka, da = sift.detectAndCompute(ga, obj.astype(np.uint8) * 255)
    kb, db = sift.detectAndCompute(gb, other_obj.astype(np.uint8) * 255)
    if da is None or db is None or len(ka) < 8 or len(kb) < 8:
        return np.zeros((0, 2), np.float32)
    pairs = cv2.BFMatcher(cv2.NORM_L2).knnMatch(da, db, k=2)
    good = [m for m, n in (p for p in pairs if len(p) == 2) if m.distance < CROSSVIEW_RATIO * n.distance]
    if len(good) < 8:
        return np.zeros((0, 2), np.float32)
    pa = np.float32([ka[m.queryIdx].pt for m in good])
    pb = np.float32([kb[m.trainIdx].pt for m in good])
    _, inl = cv2.findFundamentalMat(pa, pb, cv2.FM_RANSAC, 3.0, 0.995)
    return pa[inl.ravel().astype(bool)] if inl is not None else np.zeros((0, 2), np.float32)


def text_mask(target: np.ndarray, rng: np.random.Generator, cfg: MakeCasesConfig) -> tuple[np.ndarray, str] | None:
    """``(mask, text)``: a free-form artifact over one line of text the OCR reads confidently in the photo (at least
    ``MIN_TEXT_CHARS`` alphanumerics), sized to cover part of it; ``None`` when the photo shows no such text."""
    from refalign.eval.ocr import MIN_TEXT_CHARS, TEXT_CONFIDENCE, read_words

    words = [(w, box) for w, conf, box in read_words(target)
             if conf >= TEXT_CONFIDENCE and sum(ch.isalnum() for ch in w) >= MIN_TEXT_CHARS]
    if not words:
        return None
    text, (t, l, b, r) = words[int(rng.integers(len(words)))]
    h, w = target.shape[:2]
    cap = np.sqrt(cfg.max_area * h * w) * 0.75
    radius = int(np.clip(0.5 * max(b - t, r - l), np.sqrt(cfg.min_area * h * w) * 0.5, cap))
    centre = (int(rng.integers(t, max(t + 1, b))), int(rng.integers(l + (r - l) // 4, max(l + 1, r - (r - l) // 4))))
    mask = synth.free_form_mask((h, w), centre, radius, rng)
    return (mask, text) if mask.any() else None


def part_mask(target: np.ndarray, obj: np.ndarray, rng: np.random.Generator, cfg: MakeCasesConfig) -> np.ndarray | None:
    """A mask over one distinct part of the object (:data:`PART_CONTRAST` and the constants beside it), drawn at
    random among the parts the photo holds, grown by its margin and kept inside the object; ``None`` when there is
    none."""
    h, w = obj.shape
    lab = cv2.cvtColor(target, cv2.COLOR_RGB2LAB)
    around = cv2.medianBlur(lab, int(PART_CONTEXT * max(h, w)) | 1)
    apart = np.linalg.norm(lab.astype(np.float32) - around.astype(np.float32), axis=2) >= PART_CONTRAST
    inner = cv2.erode(obj.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    n, labels, stats, _ = cv2.connectedComponentsWithStats((apart & inner).astype(np.uint8), connectivity=8)
    lo, hi = PART_AREA[0] * cfg.min_area * h * w, PART_AREA[1] * cfg.max_area * h * w
    parts = [i for i in range(1, n) if lo <= stats[i, cv2.CC_STAT_AREA] <= hi
             and stats[i, cv2.CC_STAT_AREA] >= PART_FILL * stats[i, cv2.CC_STAT_WIDTH] * stats[i, cv2.CC_STAT_HEIGHT]]
    if not parts:
        return None
    part = labels == parts[int(rng.integers(len(parts)))]
    return dilate(part, max(2, int(round(PART_MARGIN * np.sqrt(part.sum()))))) & obj


def content_shown(target: np.ndarray, other: np.ndarray, matrix: np.ndarray, mask: np.ndarray) -> float:
    """How well ``other`` warped through ``matrix`` (``target`` → ``other`` pixels) shows ``target``'s content under
    ``mask``: the gradient correlation of the two inside the mask at the registration's scale for this image size
    (:func:`~refalign.transfer.register.score_sigma`; −1…1, −1 where the warp misses the mask)."""
    t, l, b, r = box = mask_bbox(mask)
    warped, valid = warp_box(other, matrix, box)
    inside = mask[t:b, l:r] & valid
    sigma = score_sigma(target.shape)
    return gradient_correlation(warped, target[t:b, l:r], inside, sigma) if inside.sum() >= 12 else -1.0


def crossview_mask(target: np.ndarray, obj: np.ndarray, other: np.ndarray, other_obj: np.ndarray,
                   rng: np.random.Generator, cfg: MakeCasesConfig, *, tries: int = 12):
    """``(mask, registration)`` of a crossview case (module docstring), or ``None`` when the two photos share too
    little matched content. The mask covers ``CROSSVIEW_AREA`` of the image around matched features; its
    neighbourhood (the mask grown by its own size) must register onto ``other``, and ``other`` seen through that
    registration must show the clean content under the mask (:func:`content_shown`, ``CROSSVIEW_MIN_SHOWN``)."""
    pts = matched_points(target, obj, other, other_obj)
    if len(pts) < CROSSVIEW_MIN_MATCHES:
        return None
    h, w = obj.shape
    density = np.zeros((h, w), np.float32)
    xy = np.clip(np.round(pts).astype(int), 0, (w - 1, h - 1))
    np.add.at(density, (xy[:, 1], xy[:, 0]), 1.0)
    sigma = 0.5 * np.sqrt(np.mean(CROSSVIEW_AREA) * h * w)
    density = cv2.GaussianBlur(density, (0, 0), sigma) * obj
    for _ in range(tries):
        mask = artifact_mask(target, obj, rng, cfg, area=CROSSVIEW_AREA, where=density)
        t, l, b, r = mask_bbox(mask)
        grow = max(b - t, r - l)
        reg = register(target, other, image_mask=dilate(mask, grow) & obj, reference_mask=other_obj,
                       roi_center=((l + r) / 2.0, (t + b) / 2.0), min_inliers=CROSSVIEW_MIN_INLIERS)
        inside = dilate(mask, max(2, grow // 4))
        n_inside = sum(bool(inside[int(y), int(x)]) for x, y in reg.inlier_points[:, 0]) if reg.ok else 0
        if (reg.ok and n_inside >= 3 and CROSSVIEW_AREA[0] <= mask.mean() <= CROSSVIEW_AREA[1]
                and content_shown(target, other, reg.homography, mask) >= CROSSVIEW_MIN_SHOWN):
            return mask, reg
    return None


def warp_reference(target: np.ndarray, obj: np.ndarray, mask: np.ndarray, rng: np.random.Generator):
    """``(reference, reference_mask, correspondence, info)``: the clean photo under a known perspective + colour
    change; the correspondence is the artifact mask pushed through the same transform (linear, ≥ 0.5)."""
    h, w = target.shape[:2]
    for _ in range(20):
        hom = random_homography(h, w, rng)
        corr = project_mask(mask, hom, (h, w))
        src_area = mask.sum() * abs(np.linalg.det(hom[:2, :2]))  # rough area the region should keep
        if corr.any() and corr.sum() >= 0.7 * src_area:
            break
    ref, ref_mask, colour = perspective_copy(target, obj, hom, rng)
    return ref, ref_mask, corr, {"homography": hom.tolist(), "colour_change": colour}


def valid_partners(photo: Photo, photos: list[Photo], avoid: frozenset) -> list[Photo]:
    """The other photos of ``photo``'s object, except the pairs in ``avoid`` (``(object, stem, stem)``, either way
    round)."""
    def bad(a: str, b: str) -> bool:
        return (photo.object, a, b) in avoid or (photo.object, b, a) in avoid

    return [p for p in photos if p.object == photo.object and p.path != photo.path and not bad(photo.stem, p.stem)]


def make_cases(photos_dir: str | Path, out: str | Path, cfg: MakeCasesConfig | None = None) -> list[Path]:
    """Build ``cfg.per_photo`` cases per photo of ``photos_dir`` into ``out`` (see the module docstring)."""
    cfg = cfg or MakeCasesConfig()
    bad = [k for k in cfg.kinds if k not in synth.KNOWN_KINDS]
    if bad:
        raise InputError(f"unknown artifact kind {bad[0]!r}; choose from {', '.join(synth.KNOWN_KINDS)}")
    bad = [k for k in cfg.reference_kinds if k not in REFERENCE_KINDS]
    if bad or not cfg.kinds or not cfg.reference_kinds:
        raise InputError(f"reference kinds must be among {', '.join(REFERENCE_KINDS)} and artifact kinds non-empty")
    if cfg.on_text and "crossview" in cfg.reference_kinds:
        raise InputError("--on-text places the artifact over text, crossview over matched content: choose one")
    if cfg.on_parts and (cfg.on_text or "crossview" in cfg.reference_kinds):
        raise InputError("--on-parts places the artifact over a part of the object, --on-text over text and "
                         "crossview over matched content: choose one")
    if cfg.on_text:
        from refalign.eval.ocr import ocr_engine

        if ocr_engine() is None:
            raise InputError("--on-text needs an OCR engine: pip install 'refalign[ocr]' (RapidOCR), or tesseract-ocr")
    if cfg.per_photo < 1 or cfg.size < 64:
        raise InputError("--per-photo must be at least 1 and --size at least 64")
    photos = discover_photos(Path(photos_dir))
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"{out}: exists and is not a folder; choose another --out")
    if out.is_dir() and not cfg.overwrite and any(is_case(p) for p in out.iterdir()):
        raise OutputError(f"{out}: already holds cases; choose another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)

    cache: dict[Path, tuple[np.ndarray, np.ndarray, str]] = {}

    def load(photo: Photo) -> tuple[np.ndarray, np.ndarray, str]:
        if photo.path not in cache:
            img = fit_size(load_image(photo.path), cfg.size)
            obj, source = object_mask_for(photo, img, cfg.seed)
            cache[photo.path] = (img, obj, source)
        return cache[photo.path]

    duplicates: dict[frozenset, bool] = {}

    def duplicate(a: Photo, b: Photo) -> bool:
        key = frozenset((a.path, b.path))
        if key not in duplicates:
            duplicates[key] = is_near_duplicate(load(a)[0], load(b)[0])
        return duplicates[key]

    grabcut = sum(not p.mask_path.is_file() for p in photos)
    if grabcut:
        logger.info("%d of %d photos have no <photo>.mask.png: their object masks come from GrabCut on a centred box",
                    grabcut, len(photos))
    written: list[Path] = []
    total = len(photos) * cfg.per_photo
    with tqdm(total=total, desc="make-cases", unit="case") as bar:
        for i, photo in enumerate(photos):
            for n in range(cfg.per_photo):
                c = i * cfg.per_photo + n
                case = _make_one(c, photo, photos, load, duplicate, out, cfg, Path(photos_dir))
                if case is not None:
                    written.append(case)
                bar.update(1)
    write_bytes_atomic(out / "make-cases.json", (json.dumps(
        {"photos": str(photos_dir), "config": {**asdict(cfg), "avoid_pairs": sorted(cfg.avoid_pairs)}, "cases": len(written)},
        indent=2, default=list) + "\n").encode())
    logger.info("wrote %d cases to %s", len(written), out)
    return written


def _make_one(c: int, photo: Photo, photos: list[Photo], load, duplicate, out: Path, cfg: MakeCasesConfig,
              photos_dir: Path) -> Path | None:
    """Case number ``c`` from ``photo``; ``None`` when a crossview, text or part case cannot be made from it."""
    rng = np.random.default_rng([cfg.seed, c])
    target, obj, source = load(photo)
    ref_kind = cfg.reference_kinds[c % len(cfg.reference_kinds)]
    kind = cfg.kinds[(c // len(cfg.reference_kinds)) % len(cfg.kinds)]
    partners = []
    if ref_kind in ("multiview", "crossview"):
        partners = [p for p in valid_partners(photo, photos, cfg.avoid_pairs) if not duplicate(photo, p)]
        if not partners and ref_kind == "crossview":
            logger.info("%s: no other photo of %r for a crossview case; none made", photo.path, photo.object)
            return None
        if not partners:
            logger.info("%s: no other photo of %r to use as a multiview reference; using a warp reference",
                        photo.path, photo.object)
            ref_kind = "warp"
    mask = partner = crossview = text = None
    if cfg.on_text:
        found = text_mask(target, rng, cfg)
        if found is None:
            logger.info("%s: no text read in the photo; no text case made", photo.path)
            return None
        mask, text = found
    elif cfg.on_parts:
        mask = part_mask(target, obj, rng, cfg)
        if mask is None:
            logger.info("%s: no part of the object stands apart from its surroundings; no part case made", photo.path)
            return None
    elif ref_kind == "crossview":
        for p in [partners[i] for i in rng.permutation(len(partners))]:
            crossview = crossview_mask(target, obj, load(p)[0], load(p)[1], rng, cfg)
            if crossview is not None:
                partner, (mask, crossview) = p, crossview
                break
        if crossview is None:
            logger.info("%s: no other photo of %r shares enough matched content for a crossview case; none made",
                        photo.path, photo.object)
            return None
    for _ in range(8):
        if crossview is None and text is None and not cfg.on_parts:
            mask = artifact_mask(target, obj, rng, cfg)
        image = synth.apply_artifact(kind, target, mask, rng)
        if np.abs(image.astype(int) - target).sum(axis=2)[mask].mean() >= 12:  # a visible change
            break
    meta = {
        "kind": "synthetic", "artifact_kind": kind, "reference_kind": ref_kind, "object": photo.object,
        "source_photo": str(photo.path), "photos": photos_dir.resolve().name, "object_mask_source": source,
        "seed": cfg.seed, "case_index": c, "area_fraction": round(float(mask.mean()), 5),
    }
    if text is not None:
        meta["text_line"] = text  # the line the artifact covers (the bench reads the expected text in its window)
    if cfg.on_parts:
        meta["on_part"] = True
    corr = None
    if ref_kind == "warp":
        reference, ref_mask, corr, info = warp_reference(target, obj, mask, rng)
        meta.update(info, reference_photo=str(photo.path))
    else:
        if partner is None:
            partner = partners[int(rng.integers(len(partners)))]
        reference, ref_mask, ref_source = load(partner)
        meta.update(reference_photo=str(partner.path), reference_mask_source=ref_source)
        if crossview is not None:
            meta.update(local_homography=crossview.homography.tolist(), matched_inliers=crossview.num_inliers)
    name = (f"{c:04d}-{photo.object}-{photo.stem}-{kind}-{ref_kind}" + ("-text" if text is not None else "")
            + ("-part" if cfg.on_parts else ""))
    return write_case(out / name, image=image, mask=mask, reference=reference, reference_mask=ref_mask,
                      target=target, correspondence=corr, meta=meta)
