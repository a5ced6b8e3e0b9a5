"""Pictures in the terminal: each character cell shows two pixels with a half block (▀).

The micrograph panel shows the exposure's picks picture when it has one (the restored
micrograph, each pick circled green, the areas not picked in tinted orange; in colour), else
its plain micrograph."""

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
KINDS = {
    "micrograph": "thumbnail",
    "power_spectrum": "power_spectrum_thumbnail",
    "picks": "picks_thumbnail",
}
#: what each panel shows, in order of preference (the picks picture is the micrograph's)
PANELS = {"micrograph": ("picks", "micrograph"), "power_spectrum": ("power_spectrum",)}
#: the micrograph panel's title says what the colours mean
PICKS_LEGEND = "picks green, not picked orange"


def load_thumbnail(source: SessionSource, row: Mapping[str, Any], kind: str) -> np.ndarray:
    """The exposure's PNG of ``kind`` (:data:`KINDS`) as a uint8 ``(h, w)`` grey or
    ``(h, w, 3)`` colour array: the file when it is here, else asked of the session
    (``thumbnail`` action). Raises ControlError or OSError when neither works."""
    outputs = row.get("outputs") if isinstance(row.get("outputs"), Mapping) else {}
    assert isinstance(outputs, Mapping)
    path = outputs.get(KINDS[kind])
    data: bytes | None = None
    if isinstance(path, str) and Path(path).is_file():
        data = Path(path).read_bytes()
    if data is None:
        reply = source.act("thumbnail", exposure_id=str(row["exposure_id"]), kind=kind)
        data = base64.b64decode(str(reply["png_base64"]))
    return _decode(data)


def _decode(png: bytes) -> np.ndarray:
    """A PNG as uint8 ``(h, w)`` grey or ``(h, w, 3)`` colour (alpha dropped)."""
    import imagecodecs

    image = np.asarray(imagecodecs.png_decode(png))
    if image.ndim == 3:
        image = image[..., :3] if image.shape[-1] >= 3 else image[..., 0]
    return np.asarray(image, dtype=np.uint8)


def _grey(png: bytes) -> np.ndarray:
    """A PNG as a uint8 ``(h, w)`` array (the luminance of a colour one)."""
    image = _decode(png)
    return image.mean(axis=-1).astype(np.uint8) if image.ndim == 3 else image


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
    """Box-average ``(h, w)`` or ``(h, w, 3)`` ``image`` to fit ``width`` x ``height``
    pixels, aspect kept."""
    h, w = image.shape[:2]
    scale = min(width / w, height / h)
    tw, th = max(1, min(width, round(w * scale))), max(1, min(height, round(h * scale)))
    rows = np.linspace(0, h, th + 1).astype(int)
    cols = np.linspace(0, w, tw + 1).astype(int)
    data = image.astype(np.float32)
    # sum over each target cell's block of source pixels, then divide by its size
    summed = np.add.reduceat(np.add.reduceat(data, rows[:-1], axis=0), cols[:-1], axis=1)
    sizes = np.outer(np.maximum(np.diff(rows), 1), np.maximum(np.diff(cols), 1))
    if summed.ndim == 3:
        sizes = sizes[:, :, None]
    return np.clip(summed / sizes, 0, 255).astype(np.uint8)


@lru_cache(maxsize=65536)
def _style(top: int | tuple[int, int, int], bottom: int | tuple[int, int, int]) -> Style:
    def colour(value: int | tuple[int, int, int]) -> Color:
        return Color.from_rgb(*value) if isinstance(value, tuple) else Color.from_rgb(*(value,) * 3)

    return Style(color=colour(top), bgcolor=colour(bottom))


class HalfBlocks:
    """A Rich renderable: a grey ``(h, w)`` or colour ``(h, w, 3)`` picture, two pixels per
    character cell, centred."""

    def __init__(self, image: np.ndarray) -> None:
        self.image = image

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        height = options.height or max(1, width // 2)
        picture = fit_image(self.image, width, 2 * height)
        if picture.shape[0] % 2:
            picture = np.concatenate([picture, np.zeros_like(picture[:1])])
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
            pairs = zip(_cells(top), _cells(bottom), strict=True)
            for t, b in pairs:
                yield Segment("▀", _style(t, b))
            yield Segment(" " * (width - pad_left - picture.shape[1]))
            yield Segment.line()
        for _ in range(height - pad_top - rows):
            yield blank
            yield Segment.line()


def _cells(row: np.ndarray) -> list[Any]:
    """A picture row's pixels as ints (grey) or ``(r, g, b)`` tuples (colour), hashable."""
    return [tuple(p) for p in row.tolist()] if row.ndim == 2 else row.tolist()


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
        panel = "power_spectrum" if message.kind == "power_spectrum" else "micrograph"
        if message.kind == "picks":
            title = f"micrograph {short_id(message.exposure_id, 20)} | {PICKS_LEGEND}"
        elif message.kind == "micrograph":
            title = f"micrograph {short_id(message.exposure_id, 20)}"
        else:
            title = "power spectrum | CTF fit"
        widget = self.query_one(f"#image-{panel}", HalfBlockImage)
        widget.show(message.image, title, message.error)


def load_thumbnails(source: SessionSource, row: Mapping[str, Any]) -> Iterator[ThumbnailLoaded]:
    """Each panel's picture of the exposure (the first of :data:`PANELS`' kinds that loads),
    or the reason the last one could not be."""
    from causalscope.daemon.client import CausalscopeError

    eid = str(row["exposure_id"])
    for kinds in PANELS.values():
        text = ""
        for kind in kinds:
            try:
                image = load_thumbnail(source, row, kind)
            except (CausalscopeError, OSError, ValueError, KeyError) as error:
                text = error.message if isinstance(error, CausalscopeError) else str(error)
            else:
                yield ThumbnailLoaded(eid, kind, image)
                break
        else:
            yield ThumbnailLoaded(eid, kinds[-1], None, text)
