"""SerialEM ``.mdoc`` metadata via the ``mdocfile`` package: read and write.

An mdoc has global ``key = value`` lines, title lines (``[T = SerialEM: <scope> Camera ->
0:<name> 1:<name> <date>]``) and sections: ``[ZValue = n]`` (tilt series, montage pieces),
``[FrameSet = n]`` (a frame-set mdoc, ``movie.tif.mdoc``) or ``[MontSection = n]``.
SerialEM's values: pixel spacing in Angstrom, stage X/Y/Z in um, ``Defocus`` (the scope's
readout) and ``TargetDefocus`` in um, negative for underfocus; ``ExposureDose`` in e/A^2 (0 when
the dose is not calibrated); ``DoseRate`` in electrons per unbinned pixel per second.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path, PureWindowsPath
from typing import Any

from mdocfile.data_models import Mdoc, MdocGlobalData, MdocSectionData
from pydantic import ValidationError

from causalscope.daemon.formats._common import MOVIE_SUFFIXES, captured_log, file_size, output_path
from causalscope.models.errors import FormatError
from causalscope.models.records import AcquisitionMetadata

__all__ = ["find_mdoc", "read_mdoc", "write_mdoc"]

_DATE_AT_END = re.compile(r"\s+\d{1,2}-[A-Za-z]{3}-\d{2,4}\s+\d{1,2}:\d{2}:\d{2}\s*$")
_DATE_FORMATS = ("%d-%b-%y %H:%M:%S", "%d-%b-%Y %H:%M:%S")
_SECTION_IDS = ("ZValue", "FrameSet", "MontSection")
# Values a [ZValue] section of a frame-set mdoc (continuous tilt series in one movie) takes
# from the [FrameSet] section before it when it does not state them itself.
_INHERITED = (
    "PixelSpacing",
    "Magnification",
    "SpotSize",
    "Defocus",
    "TargetDefocus",
    "ImageShift",
    "StagePosition",
    "StageZ",
    "CameraIndex",
    "SubFramePath",
    "DoseRate",
    "Voltage",
)
# mdocfile renames SerialEM's key; keep SerialEM's spelling in ``extra`` and in written files.
_SERIALEM_SPELLING = {"FrameDosesAndNumbers": "FrameDosesAndNumber"}
# Section fields turned into typed record fields; the rest go to ``extra``.
_CONSUMED = {
    "PixelSpacing",
    "Voltage",
    "ExposureDose",
    "DoseRate",
    "NumSubFrames",
    "ExposureTime",
    "TargetDefocus",
    "ImageShift",
    "StagePosition",
    "StageZ",
    "TiltAngle",
    "Magnification",
    "SpotSize",
    "SubFramePath",
    "DateTime",
}


def _as_text(value: Any) -> str:
    """A parsed mdoc value back in SerialEM's spelling (space-separated numbers, 1/0)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, tuple | list):
        return " ".join(_as_text(v) for v in value)
    return str(value)


def _parse_titles(titles: list[str]) -> tuple[str | None, dict[int, str]]:
    """Microscope name and {camera index: name} from ``T = SerialEM: ...`` titles."""
    microscope: str | None = None
    cameras: dict[int, str] = {}
    for title in titles:
        body = title.strip().strip("[]").strip()
        if not body.startswith("T") or "=" not in body:
            continue
        body = body.split("=", 1)[1].strip()
        if not body.startswith("SerialEM:"):
            continue
        rest = _DATE_AT_END.sub("", body.removeprefix("SerialEM:")).strip()
        scope, _, camera_list = rest.partition("Camera ->")
        microscope = scope.strip() or None
        for index, name in re.findall(r"(\d+):(.*?)(?=\s+\d+:|$)", camera_list.strip()):
            cameras[int(index)] = name.strip()
    return microscope, cameras


def _timestamp(path: Path, text: str | None) -> datetime | None:
    if text is None:
        return None
    compact = " ".join(text.split())
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(compact, fmt)
        except ValueError:
            continue
    raise FormatError("Bad value in mdoc", f"{path}: DateTime = {text!r}", path=path)


def _load(path: Path) -> Mdoc:
    file_size(path, "mdoc file")
    try:
        with captured_log("mdocfile"):  # it logs every field it does not model
            mdoc = Mdoc.from_file(str(path))
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"])
        raise FormatError(
            "Bad value in mdoc",
            f"{path}: {field} = {error.get('input')!r} ({error['msg']})",
            path=path,
        ) from exc
    except (ValueError, OSError) as exc:  # UnicodeDecodeError is a ValueError
        raise FormatError(
            "Not a SerialEM mdoc file",
            f"{path}: expected 'key = value' lines and [ZValue = n] sections ({exc})",
            path=path,
        ) from exc
    if not mdoc.section_data:
        raise FormatError(
            "Not a SerialEM mdoc file",
            f"{path} has no [ZValue = n], [FrameSet = n] or [MontSection = n] section",
            path=path,
        )
    return mdoc


def _movie_name(path: Path, values: dict[str, Any], image_file: Path | None) -> str | None:
    sub = values.get("SubFramePath")
    if sub is not None:
        return PureWindowsPath(str(sub)).name
    inner = Path(path.stem)  # movie.tif.mdoc -> movie.tif
    if inner.suffix.lower() in MOVIE_SUFFIXES:
        return inner.name
    return None if image_file is None else image_file.name


def read_mdoc(path: str | Path) -> list[AcquisitionMetadata]:
    """One :class:`AcquisitionMetadata` per section of a SerialEM mdoc, in file order.

    A frame-set mdoc (``movie.tif.mdoc``) gives one record; a tilt series one per tilt. In a
    frame-set mdoc whose [FrameSet] is followed by [ZValue] sub-sections (a continuous tilt
    series in one movie), each sub-section takes the frame set's optics and stage values.

    Conversions: ``TargetDefocus`` (else ``Defocus``) um, negative underfocus -> positive
    underfocus; ``ExposureDose`` 0 (uncalibrated) -> None; ``StagePosition`` + ``StageZ`` ->
    um; ``DateTime`` -> naive datetime (mdoc has no time zone). Other section values, including
    the scope's ``Defocus`` readout, go verbatim into ``extra``.

    Raises
    ------
    FormatError
        Empty, binary, or not an mdoc (no ``key = value`` lines or no section).
    """
    path = Path(path)
    mdoc = _load(path)
    header = mdoc.global_data
    header_extra = header.model_extra or {}
    titles = list(mdoc.titles)
    if "T" in header_extra:  # frame-set mdocs start with an unbracketed title line
        titles.insert(0, f"T = {header_extra['T']}")
    microscope, cameras = _parse_titles(titles)
    frame_set: dict[str, Any] = {}
    records = []
    for section in mdoc.section_data:
        values = {k: v for k, v in section.model_dump().items() if v is not None}
        values.update({k: v for k, v in (section.model_extra or {}).items() if v is not None})
        if section.FrameSet is not None:
            frame_set = values
        elif frame_set:
            values = {**{k: frame_set[k] for k in _INHERITED if k in frame_set}, **values}
        records.append(_record(path, values, header, header_extra, microscope, cameras))
    return records


def _record(
    path: Path,
    values: dict[str, Any],
    header: MdocGlobalData,
    header_extra: dict[str, Any],
    microscope: str | None,
    cameras: dict[int, str],
) -> AcquisitionMetadata:
    def number(key: str) -> float | None:
        value = values.get(key)
        try:
            return None if value is None else float(value)
        except (TypeError, ValueError) as exc:
            raise FormatError("Bad value in mdoc", f"{path}: {key} = {value!r}", path=path) from exc

    target = number("TargetDefocus")
    target = number("Defocus") if target is None else target
    stage, stage_z = values.get("StagePosition"), number("StageZ")
    dose = number("ExposureDose")
    voltage = header.Voltage if header.Voltage is not None else number("Voltage")
    camera_index = values.get("CameraIndex")
    spot = number("SpotSize")
    frames = number("NumSubFrames")
    return AcquisitionMetadata(
        source_path=str(path),
        source_format="mdoc",
        movie_name=_movie_name(path, values, header.ImageFile),
        pixel_size_angstrom=number("PixelSpacing") or header.PixelSpacing,
        voltage_kv=voltage,
        dose_e_per_a2=dose if dose else None,
        dose_rate_e_per_px_per_s=number("DoseRate"),
        n_frames=None if frames is None else int(frames),
        exposure_time_s=number("ExposureTime"),
        target_defocus_um=None if target is None else -target,
        image_shift=values.get("ImageShift"),
        stage_position_um=None
        if stage is None or stage_z is None
        else (float(stage[0]), float(stage[1]), stage_z),
        stage_tilt_deg=number("TiltAngle"),
        magnification=number("Magnification"),
        spot_size=None if spot is None else int(spot),
        camera=None if camera_index is None else cameras.get(int(camera_index)),
        microscope=microscope,
        timestamp=_timestamp(path, values.get("DateTime")),
        extra={
            _SERIALEM_SPELLING.get(k, k): _as_text(v)
            for k, v in values.items()
            if k not in _CONSUMED
        },
    )


def find_mdoc(movie_path: str | Path) -> Path | None:
    """The mdoc of a movie: ``movie.tif.mdoc`` (SerialEM's frame-set mdoc) or ``movie.mdoc``."""
    movie = Path(movie_path)
    for candidate in (movie.with_name(movie.name + ".mdoc"), movie.with_suffix(".mdoc")):
        if candidate.is_file():
            return candidate
    return None


def _section(index: int, md: AcquisitionMetadata) -> MdocSectionData:
    fields: dict[str, Any] = {
        k: v for k, v in md.extra.items() if k not in _SECTION_IDS and k not in _CONSUMED
    }
    if "FrameDosesAndNumber" in fields:
        fields["FrameDosesAndNumbers"] = fields.pop("FrameDosesAndNumber")
    if md.target_defocus_um is not None:
        fields["TargetDefocus"] = -md.target_defocus_um
        fields.setdefault("Defocus", -md.target_defocus_um)
    if md.stage_position_um is not None:
        fields["StagePosition"] = md.stage_position_um[:2]
        fields["StageZ"] = md.stage_position_um[2]
    if md.camera is not None:
        fields["CameraIndex"] = 0
    if md.timestamp is not None:
        fields["DateTime"] = md.timestamp.strftime("%d-%b-%Y  %H:%M:%S")
    fields.update(
        {
            k: v
            for k, v in {
                "TiltAngle": md.stage_tilt_deg,
                "Magnification": md.magnification,
                "ExposureDose": md.dose_e_per_a2,
                "DoseRate": md.dose_rate_e_per_px_per_s,
                "PixelSpacing": md.pixel_size_angstrom,
                "SpotSize": md.spot_size,
                "ImageShift": md.image_shift,
                "ExposureTime": md.exposure_time_s,
                "SubFramePath": md.movie_name,
                "NumSubFrames": md.n_frames,
            }.items()
            if v is not None
        }
    )
    return MdocSectionData(ZValue=index, **fields)


def write_mdoc(
    path: str | Path, records: Sequence[AcquisitionMetadata], *, atomic: bool = True
) -> Path:
    """Write records as a SerialEM mdoc, one ``[ZValue = i]`` section each (via ``mdocfile``).

    Pixel size and voltage go in the header (they must agree across records); microscope and
    camera in the title line ``[T = SerialEM: <microscope>  Camera -> 0:<camera>]``; the
    movie name as ``SubFramePath``; defocus as ``TargetDefocus`` (and ``Defocus`` unless
    ``extra`` has one), negative for underfocus; ``extra`` values verbatim.
    """
    path = Path(path)
    if not records:
        raise ValueError("write_mdoc needs at least one record")
    for name in ("pixel_size_angstrom", "voltage_kv", "microscope", "camera"):
        if len({getattr(r, name) for r in records}) > 1:
            raise ValueError(f"records disagree on {name}; one mdoc holds one setting")
    first = records[0]
    title = f"SerialEM: {first.microscope or ''}"
    if first.camera is not None:
        title += f"  Camera -> 0:{first.camera}"
    mdoc = Mdoc(
        titles=[f"[T = {title}]"],
        global_data=MdocGlobalData(
            PixelSpacing=first.pixel_size_angstrom, Voltage=first.voltage_kv
        ),
        section_data=[_section(i, r) for i, r in enumerate(records)],
    )
    with output_path(path, atomic=atomic) as target:
        text = mdoc.to_string().replace("\nFrameDosesAndNumbers =", "\nFrameDosesAndNumber =")
        target.write_text(text + "\n", encoding="utf-8")
    return path
