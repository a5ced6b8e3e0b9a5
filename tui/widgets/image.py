"""Pictures in the terminal: each character cell shows two pixels with a half block (▀)."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.color import Color
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widget import Widget

from causalscope.tui.format import short_id
from causalscope.tui.messages import ThumbnailLoaded

if TYPE_CHECKING:
    from causalscope.tui.source import SessionSource

__all__ = [
    "KINDS",
    "HalfBlockImage",
    "HalfBlocks",
    "ImagesPanel",
    "fit_image",
    "load_class_gallery",
    "load_thumbnail",
    "load_thumbnails",
]

#: Picture kinds: control action's ``kind`` -> the exposure's ``outputs`` key.
KINDS = {"micrograph": "thumbnail", "power_spectrum": "power_spectrum_thumbnail"}


def load_thumbnail(source: SessionSource, row: Mapping[str, Any], kind: str) -> np.ndarray:
    """The exposure's PNG as a uint8 ``(h, w)`` array: the file when it is here, else asked of
    the session (``thumbnail`` action). Raises ControlError or OSError when neither works."""
    outputs = row.get("outputs") if isinstance(row.get("outputs"), Mapping) else {}
    assert isinstance(outputs, Mapping)
    path = outputs.get(KINDS[kind])
    data: bytes | None = None
    if isinstance(path, str) and Path(path).is_file():
        data = Path(path).read_bytes()
    if data is None:
        reply = source.act("thumbnail", exposure_id=str(row["exposure_id"]), kind=kind)
        data = base64.b64decode(str(reply["png_base64"]))
    return _grey(data)


def _grey(png: bytes) -> np.ndarray:
    """A PNG as a uint8 ``(h, w)`` array (the luminance of a colour one)."""
    import imagecodecs

    image = np.asarray(imagecodecs.png_decode(png))
    if image.ndim == 3:  # grey+alpha or RGB: show the luminance
        image = image[..., :3].mean(axis=-1) if image.shape[-1] >= 3 else image[..., 0]
    return np.asarray(image, dtype=np.uint8)


def load_class_gallery(source: SessionSource, class_set: Mapping[str, Any]) -> list[np.ndarray]:
    """The class set's averages, one uint8 picture per class: cut from its gallery PNG, the
    file when it is here, else asked of the session (``thumbnail`` action, kind
    ``class_gallery``). Raises ControlError, OSError or ValueError when neither works, or when
    the session's latest gallery is of another update than ``class_set``'s."""
    from causalscope.daemon.client.gallery import gallery_tiles

    version = int(class_set["version"])
    path = class_set.get("gallery_path")
    if isinstance(path, str) and Path(path).is_file():
        data = Path(path).read_bytes()
    else:
        reply = source.act("thumbnail", kind="class_gallery")
        if reply.get("version", version) != version:
            raise ValueError(f"the session sent the gallery of update {reply.get('version')}")
        data = base64.b64decode(str(reply["png_base64"]))
    return gallery_tiles(_grey(data), int(class_set["n_classes"]))


def fit_image(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Box-average ``(h, w)`` ``image`` to fit ``width`` x ``height`` pixels, aspect kept."""
    h, w = image.shape
    scale = min(width / w, height / h)
    tw, th = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    rows = np.linspace(0, h, th + 1).astype(int)
    cols = np.linspace(0, w, tw + 1).astype(int)
    data = image.astype(np.float32)
    # sum over each target cell's block of source pixels, then divide by its size
    summed = np.add.reduceat(np.add.reduceat(data, rows[:-1], axis=0), cols[:-1], axis=1)
    sizes = np.outer(np.maximum(np.diff(rows), 1), np.maximum(np.diff(cols), 1))
    return np.clip(summed / sizes, 0, 255).astype(np.uint8)


@lru_cache(maxsize=65536)
def _style(top: int, bottom: int) -> Style:
    grey = Color.from_rgb
    return Style(color=grey(top, top, top), bgcolor=grey(bottom, bottom, bottom))


class HalfBlocks:
    """A Rich renderable: a grey picture, two pixels per character cell, centred."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        height = options.height or max(1, width // 2)
        picture = fit_image(self.image, width, 2 * height)
        if picture.shape[0] % 2:
            picture = np.vstack([picture, np.zeros((1, picture.shape[1]), np.uint8)])
        pad_left = (width - picture.shape[1]) // 2
        rows = picture.shape[0] // 2
        pad_top = (height - rows) // 2
        blank = Segment(" " * width)
        for _ in range(pad_top):
            yield blank
            yield Segment.line()
        for r in range(rows):
            top, bottom = picture[2 * r], picture[2 * r + 1]
            yield Segment(" " * pad_left)
            for t, b in zip(top.tolist(), bottom.tolist(), strict=True):
                yield Segment("▀", _style(t, b))
            yield Segment(" " * (width - pad_left - picture.shape[1]))
            yield Segment.line()
        for _ in range(height - pad_top - rows):
            yield blank
            yield Segment.line()


class HalfBlockImage(Widget):
    """A picture drawn with half blocks, or a line saying why there is none."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.image: np.ndarray | None = None
        self.note = "no picture yet"

    def show(self, image: np.ndarray | None, title: str, note: str = "") -> None:
        """Show ``image`` (None: show ``note``) under ``title``."""
        self.image = image
        self.note = note or "no picture"
        self.border_title = title
        self.refresh()

    def render(self) -> RenderableType:
        if self.image is None:
            return Text(self.note, style="dim", justify="center")
        return HalfBlocks(self.image)


class ImagesPanel(Horizontal, can_focus=False):
    """The selected (by default the latest) micrograph and its power spectrum with the fit."""

    def compose(self) -> ComposeResult:
        yield HalfBlockImage(id="image-micrograph")
        yield HalfBlockImage(id="image-power_spectrum")

    def on_mount(self) -> None:
        self.query_one("#image-micrograph", HalfBlockImage).border_title = "micrograph"
        spectrum = self.query_one("#image-power_spectrum", HalfBlockImage)
        spectrum.border_title = "power spectrum | CTF fit"

    def show_loaded(self, message: ThumbnailLoaded) -> None:
        """Draw a fetched picture (or why there is none) in its place."""
        if message.kind == "micrograph":
            title = f"micrograph {short_id(message.exposure_id, 20)}"
        else:
            title = "power spectrum | CTF fit"
        widget = self.query_one(f"#image-{message.kind}", HalfBlockImage)
        widget.show(message.image, title, message.error)


def load_thumbnails(source: SessionSource, row: Mapping[str, Any]) -> Iterator[ThumbnailLoaded]:
    """Each kind of the exposure's pictures, loaded or with the reason it could not be."""
    from causalscope.daemon.client import CausalscopeError

    eid = str(row["exposure_id"])
    for kind in KINDS:
        try:
            image = load_thumbnail(source, row, kind)
        except (CausalscopeError, OSError, ValueError, KeyError) as error:
            text = error.message if isinstance(error, CausalscopeError) else str(error)
            yield ThumbnailLoaded(eid, kind, None, text)
        else:
            yield ThumbnailLoaded(eid, kind, image)
