"""EPU's per-exposure XML (a serialised ``Fei.SharedObjects.MicroscopeImage``): read and write.

EPU writes ``FoilHole_<hole>_Data_<template>_<n>_<YYYYMMDD>_<HHMMSS>.xml`` beside each movie in
``Images-Disc<k>/GridSquare_<square>/Data/``. Values are SI (metres, volts, radians); the
``CustomData`` dictionary holds ``DoseOnCamera`` (total dose, e/A^2) and ``AppliedDefocus``
(the defocus EPU set for the exposure, metres, negative for underfocus).
"""

from __future__ import annotations

import math
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from xml.sax.saxutils import escape

from causalscope.daemon.formats._common import file_size, output_path
from causalscope.models.errors import FormatError
from causalscope.models.records import AcquisitionMetadata

__all__ = ["find_epu_metadata", "read_epu_xml", "write_epu_xml"]

_NS_SHARED = "http://schemas.datacontract.org/2004/07/Fei.SharedObjects"
_NS_ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
_NS_TYPES = "http://schemas.datacontract.org/2004/07/Fei.Types"
_NS_XSD = "http://www.w3.org/2001/XMLSchema"
_NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
_NS_OMP = "http://schemas.datacontract.org/2004/07/Fei.Applications.Common.Omp.Interface"
_NIL = f"{{{_NS_XSI}}}nil"
# CustomData keys turned into typed fields (everything else goes to ``extra`` verbatim).
_CONSUMED = {"DoseOnCamera", "AppliedDefocus", "DetectorCommercialName"}
_MOVIE_SUFFIX = re.compile(r"_(fractions|eer)$", re.IGNORECASE)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _find(elem: ET.Element | None, *names: str) -> ET.Element | None:
    """Descend by local names (EPU mixes several namespaces); None when any step is missing."""
    for name in names:
        if elem is None:
            return None
        elem = next((child for child in elem if _local(child.tag) == name), None)
    return elem


def _text(elem: ET.Element | None, *names: str) -> str | None:
    found = _find(elem, *names)
    if found is None or found.get(_NIL) == "true" or found.text is None:
        return None
    text = found.text.strip()
    return text or None


def _float(path: Path, elem: ET.Element | None, *names: str) -> float | None:
    text = _text(elem, *names)
    if text is None:
        return None
    try:
        return float(text)
    except ValueError as exc:
        raise FormatError(
            "Bad value in EPU XML", f"{path}: {'/'.join(names)} = {text!r}", path=path
        ) from exc


def _key_values(elem: ET.Element | None) -> dict[str, ET.Element]:
    """An EPU ``KeyValueOfstringanyType`` list as {key: value element}."""
    out: dict[str, ET.Element] = {}
    for item in elem if elem is not None else []:
        key, value = _text(item, "Key"), _find(item, "Value")
        if key is not None and value is not None:
            out[key] = value
    return out


def _parse(path: Path) -> ET.Element:
    file_size(path, "EPU XML")
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise FormatError("Not an XML file", f"{path}: {exc}", path=path) from exc
    except OSError as exc:
        raise FormatError("Unreadable EPU XML", f"{path}: {exc}", path=path) from exc
    if root.tag != f"{{{_NS_SHARED}}}MicroscopeImage":
        raise FormatError(
            "Not an EPU XML file",
            f"{path}: root element is {root.tag!r}; EPU writes <MicroscopeImage> in the "
            f"{_NS_SHARED} namespace",
            path=path,
        )
    return root


def _timestamp(path: Path, text: str | None) -> datetime | None:
    if text is None:
        return None
    # .NET writes 7 fractional digits; keep microseconds.
    trimmed = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        return datetime.fromisoformat(trimmed)
    except ValueError as exc:
        raise FormatError(
            "Bad value in EPU XML", f"{path}: acquisitionDateTime = {text!r}", path=path
        ) from exc


def _pair(path: Path, elem: ET.Element | None, name: str) -> tuple[float, float] | None:
    x, y = _float(path, elem, name, "_x"), _float(path, elem, name, "_y")
    return None if x is None or y is None else (x, y)


def _dose(
    custom_float: Callable[[str], float | None], custom: dict[str, ET.Element]
) -> float | None:
    """Total dose in e/A^2: ``DoseOnCamera``, else the detector's ``Detectors[name].TotalDose``.

    (The ``Dose`` key is in electrons per m^2 and disagrees with both in the real files, so it
    stays in ``extra``.)
    """
    dose = custom_float("DoseOnCamera")
    if dose is None:
        key = next((k for k in custom if re.fullmatch(r"Detectors\[.+\]\.TotalDose", k)), None)
        dose = None if key is None else custom_float(key)
    return dose


def _stage_um(stage_m: list[float | None]) -> tuple[float, float, float] | None:
    x, y, z = stage_m
    if x is None or y is None or z is None:
        return None
    return (x * 1e6, y * 1e6, z * 1e6)


def _beside_movie(path: Path) -> str | None:
    for suffix in ("_fractions.tiff", "_Fractions.mrc", "_fractions.mrc", "_EER.eer", ".tiff"):
        candidate = path.with_name(path.stem + suffix)
        if candidate.exists():
            return candidate.name
    return None


def read_epu_xml(path: str | Path) -> AcquisitionMetadata:
    """Read one EPU ``MicroscopeImage`` XML into an :class:`AcquisitionMetadata`.

    Units: pixel size m -> Angstrom; voltage V -> kV; ``AppliedDefocus`` m (negative
    underfocus) -> positive um underfocus; stage X/Y/Z m -> um and alpha (A) rad -> deg;
    ``DoseOnCamera`` is already the exposure's total dose in e/A^2. Beam and image shift are
    EPU's own units. Grid square and foil hole come from the path (``GridSquare_<n>`` folder,
    ``FoilHole_<n>_Data_...`` name); ``movie_name`` from a movie found beside the XML.

    Raises
    ------
    FormatError
        Empty file, not XML, not EPU's ``MicroscopeImage``, or a value that is not a number.
    """
    path = Path(path)
    root = _parse(path)
    custom = _key_values(_find(root, "CustomData"))
    scope = _find(root, "microscopeData")
    camera = _find(scope, "acquisition", "camera")
    optics = _find(scope, "optics")
    position = _find(scope, "stage", "Position")
    fractionation = _key_values(_find(camera, "CameraSpecificInput")).get("FractionationSettings")

    def custom_float(key: str) -> float | None:
        return _float(path, custom.get(key)) if key in custom else None

    pixel_m = _float(path, root, "SpatialScale", "pixelSize", "x", "numericValue")
    voltage_v = _float(path, scope, "gun", "AccelerationVoltage")
    defocus_m = custom_float("AppliedDefocus")
    n_fractions = _float(path, fractionation, "NumberOffractions")
    stage = [_float(path, position, axis) for axis in ("X", "Y", "Z")]
    alpha_rad = _float(path, position, "A")
    magnification = _float(path, optics, "TemMagnification", "NominalMagnification")
    spot = _float(path, optics, "SpotIndex")
    square = next((m for p in path.parts if (m := re.fullmatch(r"GridSquare_(\d+)", p))), None)
    hole = re.match(r"FoilHole_(\d+)_", path.name)
    extra = {
        key: text
        for key, value in custom.items()
        if key not in _CONSUMED and (text := _text(value)) is not None
    }
    return AcquisitionMetadata(
        source_path=str(path),
        source_format="epu",
        movie_name=_beside_movie(path),
        pixel_size_angstrom=None if pixel_m is None else pixel_m * 1e10,
        voltage_kv=None if voltage_v is None else voltage_v / 1e3,
        dose_e_per_a2=_dose(custom_float, custom),
        n_frames=None if n_fractions is None else int(n_fractions),
        exposure_time_s=_float(path, camera, "ExposureTime"),
        target_defocus_um=None if defocus_m is None else -defocus_m * 1e6,
        beam_shift=_pair(path, optics, "BeamShift"),
        image_shift=_pair(path, optics, "ImageShift"),
        stage_position_um=_stage_um(stage),
        stage_tilt_deg=None if alpha_rad is None else math.degrees(alpha_rad),
        magnification=magnification,
        spot_size=None if spot is None else int(spot),
        camera=_text(custom.get("DetectorCommercialName")) or _text(camera, "Name"),
        microscope=_text(scope, "instrument", "InstrumentModel"),
        timestamp=_timestamp(path, _text(scope, "acquisition", "acquisitionDateTime")),
        grid_square=square.group(1) if square else None,
        foil_hole=hole.group(1) if hole else None,
        extra=extra,
    )


def find_epu_metadata(movie_path: str | Path) -> Path | None:
    """The EPU XML of a movie, or None when there is none (yet).

    EPU writes ``X.xml`` beside ``X_fractions.tiff``, ``X_Fractions.mrc`` or ``X_EER.eer``.
    """
    movie = Path(movie_path)
    base = _MOVIE_SUFFIX.sub("", movie.stem)
    for candidate in (movie.with_name(base + ".xml"), movie.with_suffix(".xml")):
        if candidate.is_file():
            return candidate
    return None


def _element(tag: str, value: object | None, attrs: str = "") -> str:
    if value is None:
        return ""
    text = repr(value) if isinstance(value, float) else str(value)
    return f"<{tag}{attrs}>{escape(text)}</{tag}>"


def _custom(key: str, value: object | None, xsd_type: str) -> str:
    if value is None:
        return ""
    inner = _element("a:Value", value, f' xmlns:b="{_NS_XSD}" i:type="b:{xsd_type}"')
    item = f"<a:Key>{escape(key)}</a:Key>{inner}"
    return f"<a:KeyValueOfstringanyType>{item}</a:KeyValueOfstringanyType>"


def _xy(tag: str, pair: tuple[float, float] | None) -> str:
    if pair is None:
        return ""
    body = _element("a:_x", float(pair[0])) + _element("a:_y", float(pair[1]))
    return f'<{tag} xmlns:a="{_NS_TYPES}">{body}</{tag}>'


def write_epu_xml(path: str | Path, metadata: AcquisitionMetadata, *, atomic: bool = True) -> Path:
    """Write a minimal EPU ``MicroscopeImage`` XML that :func:`read_epu_xml` reads back.

    Only the elements EPU carries and the reader uses are written (values in EPU's SI units);
    ``extra`` goes into ``CustomData`` as strings. Grid square and foil hole are not stored:
    EPU encodes them in the path, so choose ``path`` accordingly.
    """
    path = Path(path)
    md = metadata
    m = 1e-6  # um -> m
    custom = (
        _custom("DoseOnCamera", md.dose_e_per_a2, "double")
        + _custom(
            "AppliedDefocus",
            None if md.target_defocus_um is None else -md.target_defocus_um * m,
            "double",
        )
        + _custom("DetectorCommercialName", md.camera, "string")
        + "".join(_custom(k, v, "string") for k, v in md.extra.items())
    )
    pixel = None if md.pixel_size_angstrom is None else md.pixel_size_angstrom * 1e-10
    scale = (
        ""
        if pixel is None
        else "<SpatialScale><pixelSize>"
        + f"<x>{_element('numericValue', pixel)}</x><y>{_element('numericValue', pixel)}</y>"
        + "</pixelSize></SpatialScale>"
    )
    fraction = (
        ""
        if md.n_frames is None
        else f'<CameraSpecificInput xmlns:a="{_NS_ARRAYS}"><a:KeyValueOfstringanyType>'
        + "<a:Key>FractionationSettings</a:Key>"
        + f'<a:Value xmlns:b="{_NS_OMP}" i:type="b:EquidistantFractionation">'
        + f"<b:NumberOffractions>{int(md.n_frames)}</b:NumberOffractions></a:Value>"
        + "</a:KeyValueOfstringanyType></CameraSpecificInput>"
    )
    stamp = None if md.timestamp is None else md.timestamp.isoformat()
    acquisition = (
        _element("acquisitionDateTime", stamp)
        + f"<camera>{fraction}{_element('ExposureTime', md.exposure_time_s)}"
        + f"{_element('Name', md.camera)}</camera>"
    )
    stage = ""
    if md.stage_position_um is not None or md.stage_tilt_deg is not None:
        x, y, z = md.stage_position_um or (None, None, None)
        stage = (
            "<stage><Position>"
            + _element("A", None if md.stage_tilt_deg is None else math.radians(md.stage_tilt_deg))
            + "".join(
                _element(k, None if v is None else v * m)
                for k, v in zip("XYZ", (x, y, z), strict=True)
            )
            + "</Position></stage>"
        )
    magnification = (
        ""
        if md.magnification is None
        else f"<TemMagnification>{_element('NominalMagnification', md.magnification)}"
        "</TemMagnification>"
    )
    optics = (
        _xy("BeamShift", md.beam_shift)
        + _xy("ImageShift", md.image_shift)
        + _element("SpotIndex", md.spot_size)
        + magnification
    )
    voltage = None if md.voltage_kv is None else md.voltage_kv * 1e3
    body = (
        f'<MicroscopeImage xmlns="{_NS_SHARED}" xmlns:i="{_NS_XSI}">'
        f"<name>causalscope</name><uniqueID>{uuid.uuid4()}</uniqueID>"
        f'<CustomData xmlns:a="{_NS_ARRAYS}">{custom}</CustomData>{scale}'
        f"<microscopeData><acquisition>{acquisition}</acquisition>"
        f"<gun>{_element('AccelerationVoltage', voltage)}</gun>"
        f"<instrument>{_element('InstrumentModel', md.microscope)}</instrument>"
        f"<optics>{optics}</optics>{stage}</microscopeData></MicroscopeImage>"
    )
    with output_path(path, atomic=atomic) as target:
        target.write_text('<?xml version="1.0" encoding="utf-8"?>\n' + body, encoding="utf-8")
    return path
