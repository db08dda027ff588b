"""Images named by statements: what they are, what each platform accepts, and the bytes a
platform receives (re-encoded where its limit asks for it).

Pillow reads only the header to inspect a file, so `validate` stays fast on large images.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, UnidentifiedImageError

# Formats every platform here takes; GIF is left out (animated GIFs are re-encoded as
# video by some platforms and refused by others).
MIME_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MAX_IMAGES = 4
MAX_ALT = 1500  # Mastodon's description limit, the tightest of the platforms


@dataclass(frozen=True, slots=True)
class ImageInfo:
    format: str  # Pillow's name: JPEG, PNG, WEBP
    width: int
    height: int
    size: int  # bytes on disk

    @property
    def mime(self) -> str:
        return MIME_TYPES[self.format]

    @property
    def aspect(self) -> float:
        return self.width / self.height


def inspect(path: Path) -> ImageInfo:
    """What the image is; ValueError says why it cannot be used (missing, not an image,
    a format no platform takes)."""
    try:
        with Image.open(path) as im:
            fmt = str(im.format)
            width, height = im.size
    except FileNotFoundError:
        raise ValueError(f"image file {path.name!r} not found") from None
    except (UnidentifiedImageError, OSError):
        raise ValueError(f"{path.name!r} is not an image Pillow can read") from None
    if fmt not in MIME_TYPES:
        raise ValueError(
            f"{path.name!r} is {fmt}; use JPEG, PNG or WebP (every platform takes those)"
        )
    return ImageInfo(fmt, width, height, path.stat().st_size)


@dataclass(frozen=True, slots=True, kw_only=True)
class ImageLimits:
    """What one platform accepts, from its documentation.

    `reencode` means the image is re-encoded to fit (as JPEG, within `max_bytes` and
    `max_width`) rather than refused: Bluesky before uploading, and `scheduler web` for the
    platforms that fetch images by URL. What re-encoding cannot mend (too small, the wrong
    aspect ratio) is still refused.
    """

    max_bytes: int | None = None
    reencode: bool = False
    max_pixels: int | None = None
    max_side_sum: int | None = None  # Telegram: width + height
    min_width: int | None = None
    max_width: int | None = None
    min_aspect: float | None = None  # width / height
    max_aspect: float | None = None
    formats: frozenset[str] = frozenset(MIME_TYPES)
    max_images: int = MAX_IMAGES

    def problems(self, info: ImageInfo) -> list[str]:
        """Why the platform would refuse the image (empty when it takes it)."""
        found = []
        if info.format not in self.formats and not self.reencode:
            found.append(f"{info.format} is not accepted; use {', '.join(sorted(self.formats))}")
        if self.max_bytes is not None and info.size > self.max_bytes and not self.reencode:
            found.append(f"{info.size:,} bytes is over the limit of {self.max_bytes:,}")
        if self.max_pixels is not None and info.width * info.height > self.max_pixels:
            found.append(
                f"{info.width}x{info.height} is over {self.max_pixels:,} pixels; scale it down"
            )
        if self.max_side_sum is not None and info.width + info.height > self.max_side_sum:
            found.append(f"width + height is over {self.max_side_sum}")
        if self.min_width is not None and info.width < self.min_width:
            found.append(f"{info.width} pixels wide is under the minimum of {self.min_width}")
        if self.max_width is not None and info.width > self.max_width and not self.reencode:
            found.append(f"{info.width} pixels wide is over the maximum of {self.max_width}")
        if self.min_aspect is not None and info.aspect < self.min_aspect - 0.005:
            found.append(f"aspect ratio {_ratio(info)} is taller than {self.min_aspect:.2f}:1")
        if self.max_aspect is not None and info.aspect > self.max_aspect + 0.005:
            found.append(f"aspect ratio {_ratio(info)} is wider than {self.max_aspect:.2f}:1")
        return found


def _ratio(info: ImageInfo) -> str:
    return f"{info.width}:{info.height} ({info.aspect:.2f}:1)"


# At most this many pixels on the long side after re-encoding: more than any platform
# shows (Bluesky displays up to 2000), so the re-encoded image loses nothing visible.
DISPLAY_SIDE = 2000


@dataclass(frozen=True, slots=True)
class Encoded:
    """The bytes a platform receives."""

    data: bytes
    mime: str
    width: int
    height: int


def encode_for(path: Path, limits: ImageLimits) -> Encoded:
    """The file as it is when the platform takes it; otherwise re-encoded to fit.

    Re-encoding keeps the look at the displayed size: the long side is brought down to
    `DISPLAY_SIDE`, metadata is dropped, and JPEG quality steps down from 90 only as far as
    the byte limit needs (then the image is scaled down further).
    """
    data = path.read_bytes()
    info = inspect(path)
    fits = limits.max_bytes is None or len(data) <= limits.max_bytes
    if (
        fits
        and info.format in limits.formats
        and (limits.max_width is None or info.width <= limits.max_width)
    ):
        return Encoded(data, info.mime, info.width, info.height)
    with Image.open(path) as im:
        im.load()
        image = im.convert("RGB") if im.mode not in ("RGB", "L") else im.copy()
    longest = DISPLAY_SIDE if limits.max_width is None else min(DISPLAY_SIDE, limits.max_width)
    scale = min(1.0, longest / max(image.size))
    max_bytes = limits.max_bytes or 1 << 62
    while True:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        resized = image.resize(size, Image.Resampling.LANCZOS) if scale < 1 else image
        for quality in (90, 85, 80, 75, 70, 60):
            out = io.BytesIO()
            resized.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
            if out.tell() <= max_bytes:
                return Encoded(out.getvalue(), "image/jpeg", *resized.size)
        scale *= 0.8
