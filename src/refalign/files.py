"""Reading and validating user images and masks, and writing outputs safely (DESIGN §5).

All checks run before any model loads. Each failure raises :class:`~refalign.errors.InputError` or
:class:`~refalign.errors.OutputError` with one line that names the file and says how to fix it; the CLI prints
that line and exits with code 2.

Conventions: images are ``uint8`` arrays of shape ``(H, W, 3)``; masks are ``bool`` arrays of shape ``(H, W)``
with ``True`` = artifact (a mask file stores 255 there). Modes other than RGB are converted: RGBA and LA drop
alpha (the alpha of a *reference* is returned separately as its object mask), palette and grayscale expand to
RGB, 16-bit images scale to 8 bits; EXIF orientation is applied.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from dataclasses import dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from refalign.errors import InputError, OutputError

logger = logging.getLogger(__name__)
PathLike = Union[str, os.PathLike]
ImageLike = Union[PathLike, Image.Image, np.ndarray]

#: Largest image accepted, in pixels (width × height). Override with ``max_pixels=`` or ``--max-pixels``.
DEFAULT_MAX_PIXELS = 100_000_000
#: Smallest side accepted, in pixels.
MIN_SIDE = 8
#: Output extensions and the format each is written in: lossless ones, and JPEG at a stated quality.
OUTPUT_FORMATS = {".png": "PNG", ".tif": "TIFF", ".tiff": "TIFF", ".webp": "WEBP", ".jpg": "JPEG", ".jpeg": "JPEG"}
JPEG_QUALITY = 95
SAVE_OPTIONS = {"JPEG": {"quality": JPEG_QUALITY}, "WEBP": {"lossless": True, "exact": True},
                "TIFF": {"compression": "tiff_lzw"}}
#: Serialises the swap of PIL's own pixel limit for the one given (requests of the demo run in threads).
_PIL_LIMIT = threading.Lock()


@dataclass(frozen=True)
class LoadedReference:
    """A reference photo and, when its file carried transparency, the object mask taken from the alpha channel."""

    image: np.ndarray
    object_mask: np.ndarray | None


def _open(path: PathLike, what: str, max_pixels: int) -> Image.Image:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such {what} file; check the path")
    if path.is_dir():
        raise InputError(f"{path}: is a folder; give the path of the {what} file (PNG or JPEG)")
    try:
        # ``max_pixels`` is the limit, not PIL's own (89 Mpx, which would silently cap --max-pixels): PIL's check
        # is off while this file is opened, and the size is checked here, from the header, before decoding
        with _PIL_LIMIT:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = _open_checked(path, max_pixels)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except InputError:
        raise
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image file refalign can read; give a PNG or JPEG") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: image is too large to decode safely; downscale it") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{path}: image is truncated or corrupt ({exc}); re-export it") from None
    if min(img.size) < MIN_SIDE:
        raise InputError(f"{path}: {img.size[0]}x{img.size[1]} is too small; give an image at least {MIN_SIDE} px a side")
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # a broken EXIF block is not worth refusing the image for
        pass
    return img


def _open_checked(path: Path, max_pixels: int) -> Image.Image:
    img = Image.open(path)
    w, h = img.size
    if w * h > max_pixels:
        raise InputError(
            f"{path}: {w}x{h} is over the limit of {max_pixels:,} pixels; downscale it or raise --max-pixels"
        )
    frames = getattr(img, "n_frames", 1)
    if frames > 1 and img.format in ("GIF", "PNG", "WEBP"):  # animations (a multi-page TIFF gives its first page)
        raise InputError(f"{path}: animated image with {frames} frames; export the one frame to use as a PNG")
    img.load()
    return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16-bit and 32-bit integer or float single-channel images to 8 bits."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img).astype(np.float64)
        hi = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        if img.mode == "F" and arr.max() <= 1.0:
            hi = 1.0
        return Image.fromarray(np.clip(np.round(arr / hi * 255.0), 0, 255).astype(np.uint8), mode="L")
    return img


def pil_to_rgb(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Convert any PIL mode to an ``(H, W, 3) uint8`` array, returning the alpha channel (``bool``) if it had one."""
    img = _to_8bit(img)
    alpha = None
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        a = np.asarray(img.getchannel("A"))
        if (a < 255).any():
            alpha = a >= 128
    rgb = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(rgb), alpha


def load_image(path: PathLike, *, what: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an RGB image file as ``(H, W, 3) uint8``."""
    return pil_to_rgb(_open(path, what, max_pixels))[0]


def load_reference(path: PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> LoadedReference:
    """Read a reference photo; a transparent PNG gives its alpha as the object mask."""
    image, alpha = pil_to_rgb(_open(path, "reference", max_pixels))
    if alpha is not None and not alpha.any():
        raise InputError(f"{path}: its transparency is read as the object mask, and it is transparent everywhere; "
                         "save the reference without alpha, or give the object with --object-mask")
    return LoadedReference(image=image, object_mask=alpha)


def mask_from_pil(img: Image.Image) -> np.ndarray:
    """Binarise a mask image: white (>127) is the artifact. A mask drawn as opaque strokes on a transparent layer
    (RGBA with varying alpha and constant colour) is read from its alpha."""
    img = _to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        a = np.asarray(img.getchannel("A"))
        lum = np.asarray(img.convert("L"))
        if (a < 255).any() and lum.min() == lum.max():
            return a > 127
    return np.asarray(img.convert("L")) > 127


def check_mask(mask: np.ndarray, image_shape: tuple[int, int], *, name: str = "mask", image_name: str = "image") -> np.ndarray:
    """Refuse a mask whose size differs from the image's, that marks nothing, or that marks everything."""
    mask = np.asarray(mask)
    if mask.ndim == 3:
        mask = mask[..., 0]
    if mask.dtype != bool:
        mask = mask > (127 if mask.dtype == np.uint8 else 0.5)
    h, w = image_shape[:2]
    if mask.shape != (h, w):
        raise InputError(
            f"{name}: mask is {mask.shape[1]}x{mask.shape[0]} but {image_name} is {w}x{h}; "
            "paint the mask on an image of the same size"
        )
    if not mask.any():
        raise InputError(f"{name}: mask marks no pixels; paint the artifact white (255) on black")
    if mask.all():
        raise InputError(f"{name}: mask covers the whole image; mark only the artifact, the rest must stay black")
    return mask


def load_mask(
    path: PathLike, image_shape: tuple[int, int], *, image_name: str = "image", max_pixels: int = DEFAULT_MAX_PIXELS
) -> np.ndarray:
    """Read a mask file (255 = artifact) and check it against the image's ``(H, W)``."""
    return check_mask(mask_from_pil(_open(path, "mask", max_pixels)), image_shape, name=str(path), image_name=image_name)


def load_object_mask(path: PathLike, image_shape: tuple[int, int], *, image_name: str = "reference") -> np.ndarray:
    """Read an object or region mask for a reference (may not be empty; may cover everything)."""
    mask = mask_from_pil(_open(path, "mask", DEFAULT_MAX_PIXELS))
    h, w = image_shape[:2]
    if mask.shape != (h, w):
        raise InputError(
            f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but {image_name} is {w}x{h}; use a mask of the same size"
        )
    if not mask.any():
        raise InputError(f"{path}: mask marks no pixels; paint the region white (255) on black")
    return mask


def is_grey(image: np.ndarray) -> bool:
    """Whether an ``(H, W, 3) uint8`` image is a greyscale picture: red, green and blue equal at every pixel."""
    return bool(np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2]))


def grey_rgb(image: np.ndarray) -> np.ndarray:
    """The luminance of an ``(H, W, 3) uint8`` image (ITU-R BT.601, exactly PIL's conversion to ``"L"``) in all
    three channels; a pixel that is grey already keeps its value."""
    r, g, b = (image[..., k].astype(np.uint32) for k in range(3))
    y = ((r * 19595 + g * 38470 + b * 7471 + 32768) >> 16).astype(np.uint8)  # weights sum to 65536
    return np.repeat(y[..., None], 3, axis=2)


def references_like(references: list, grey: bool) -> list[np.ndarray]:
    """``references`` (paths, PIL images or arrays) as ``(H, W, 3) uint8`` arrays, in grey (:func:`grey_rgb`) when
    the picture they repair is greyscale (``grey``, :func:`is_grey` of it): a grey picture is repaired from grey
    references."""
    return [grey_rgb(as_rgb(r)) if grey else as_rgb(r) for r in references]


def as_rgb(image: ImageLike) -> np.ndarray:
    """Accept a path, a PIL image or an array (``uint8`` or float in ``[0, 1]``) and return ``(H, W, 3) uint8``."""
    if isinstance(image, (str, os.PathLike)):
        return load_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)[0]
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise InputError(f"image array has shape {arr.shape}; expected (H, W, 3)")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.round(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def as_mask(mask: ImageLike | None) -> np.ndarray | None:
    """Accept a path, a PIL image or an array and return a ``bool`` mask (``None`` passes through)."""
    if mask is None:
        return None
    if isinstance(mask, (str, os.PathLike)):
        return mask_from_pil(_open(mask, "mask", DEFAULT_MAX_PIXELS))
    if isinstance(mask, Image.Image):
        return mask_from_pil(mask)
    arr = np.asarray(mask)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if arr.dtype == bool:
        return arr
    return arr > (127 if arr.dtype == np.uint8 else 0.5)


# --------------------------------------------------------------------------------------------------- outputs


def check_output(path: PathLike, *, overwrite: bool = False, protected: tuple[PathLike, ...] = ()) -> Path:
    """Refuse an output that exists (unless ``overwrite``), whose folder is missing, or that is one of the inputs."""
    path = Path(path)
    for p in protected:
        if Path(p).exists() and path.exists() and path.resolve() == Path(p).resolve():
            raise OutputError(f"{path}: is one of the inputs; write the result to another file")
    if path.is_dir():
        raise OutputError(f"{path}: is a folder; give a file name")
    if path.exists() and not overwrite:
        raise OutputError(f"{path}: already exists; choose another name or pass --overwrite")
    if not path.parent.exists():
        raise OutputError(f"{path.parent}: output folder does not exist; create it first")
    output_format(path)
    if OUTPUT_FORMATS[path.suffix.lower()] == "JPEG":
        logger.warning("%s: JPEG is lossy (saved at quality %d), so pixels outside the mask will not stay "
                       "bit-identical; use .png, .tif or .webp to keep them", path, JPEG_QUALITY)
    return path


def output_format(path: PathLike) -> str:
    """The PIL format an output extension is written in; other extensions (``.gif``: 256 colours, ``.ico``:
    256×256, ``.xbm``/``.msp``: 1 bit, ...) would silently lose pixels and are refused with one line."""
    path = Path(path)
    fmt = OUTPUT_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise OutputError(f"{path}: {path.suffix or 'no extension'} is not an output format refalign writes without "
                          "losing pixels; use .png, .tif, .webp (lossless) or .jpg (quality "
                          f"{JPEG_QUALITY})")
    return fmt


def write_bytes_atomic(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder, so a crash leaves nothing half-written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    remove_stale_temps(path)


def remove_stale_temps(path: PathLike) -> list[Path]:
    """Delete the temporary files :func:`write_bytes_atomic` left for ``path`` when a run was killed mid-write
    (``.NAME.*.tmp``, mode 0600, in the same folder); returns what was removed."""
    path = Path(path)
    removed = []
    for stale in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
        try:
            stale.unlink()
            removed.append(stale)
        except OSError:  # gone already, or not ours to delete
            pass
    if removed:
        logger.info("removed %d temporary file(s) of %s left by an interrupted run", len(removed), path)
    return removed


def is_complete_image(path: PathLike) -> bool:
    """Whether ``path`` is an image file that decodes to the end (an empty or truncated output is not finished)."""
    try:
        with Image.open(path) as img:
            img.load()
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError):
        return False
    return True


def save_image(image: np.ndarray | Image.Image, path: PathLike) -> None:
    """Save an RGB image or a mask (``bool`` → 0/255) atomically; the format follows the extension (PNG, TIFF and
    WebP lossless; JPEG at :data:`JPEG_QUALITY`; others are refused, see :func:`output_format`)."""
    import io

    path = Path(path)
    fmt = output_format(path)
    if isinstance(image, np.ndarray):
        if image.dtype == bool:
            image = image.astype(np.uint8) * 255
        image = Image.fromarray(image)
    buf = io.BytesIO()
    image.save(buf, format=fmt, **SAVE_OPTIONS.get(fmt, {}))
    write_bytes_atomic(path, buf.getvalue())


# --------------------------------------------------------------------------------------------------- bundles


@dataclass(frozen=True)
class RefineInputs:
    """The validated inputs of one refinement or alignment: image, artifact mask, reference and an optional mask on
    the reference (the object, or the user's own choice of region)."""

    image: np.ndarray
    mask: np.ndarray | None  # None only when the caller passed ``mask=None`` (it will detect the mask itself)
    reference: np.ndarray
    reference_mask: np.ndarray | None


def load_refine_inputs(
    image: PathLike,
    mask: PathLike | None,
    reference: PathLike,
    reference_mask: PathLike | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> RefineInputs:
    """Read and check every input of ``refine``/``align`` before any model loads (DESIGN §5). A transparent
    reference PNG gives its alpha as ``reference_mask`` unless one is passed explicitly. ``mask=None`` skips the
    mask (``RefineInputs.mask`` is then ``None``), for callers that detect it."""
    img = load_image(image, max_pixels=max_pixels)
    m = load_mask(mask, img.shape[:2], image_name=str(image), max_pixels=max_pixels) if mask is not None else None
    ref = load_reference(reference, max_pixels=max_pixels)
    ref_mask = (
        load_object_mask(reference_mask, ref.image.shape[:2], image_name=str(reference))
        if reference_mask is not None
        else ref.object_mask
    )
    return RefineInputs(image=img, mask=m, reference=ref.image, reference_mask=ref_mask)
