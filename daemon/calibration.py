"""The session's detector calibration: the configured gain and defects, or a gain reference that
the microscope left in the watched folder.

A gain reference beside the movies (``watcher.gain_patterns``: EPU's Falcon ``*.gain``, a Gatan
``gain*.tif``, a ``*gain*.mrc``) reaches the scheduler as a :class:`GainFound` event. It is used
when the settings name no gain (``detector.gain_reference``) and its shape, after the configured
``gain_rotation`` and ``gain_flip``, matches the movies; otherwise an alert says why it is not.
The calibration is made once, when the first movie is ready: a gain that appears later is
reported and not used, so a session never mixes gain-corrected and uncorrected exposures.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from causalscope.daemon.alerts import Alert
from causalscope.models.errors import FormatError

if TYPE_CHECKING:
    from causalscope.actors.exposure import DetectorCalibration
    from causalscope.config import Settings

__all__ = ["GainChoice"]

_ADVICE = (
    "If the movies need this gain, set detector.gain_reference to it (with gain_rotation and "
    "gain_flip as the detector needs) and start a new session."
)


def _size(shape: tuple[int, ...]) -> str:
    return f"{shape[-1]}x{shape[-2]} px"


def _fits(gain: tuple[int, ...], frames: tuple[int, int], upsampling: int) -> bool:
    """Whether a gain of shape ``gain`` serves frames of shape ``frames`` (EER: enlarged)."""
    return tuple(gain) == frames or (
        upsampling > 1 and (gain[0] * upsampling, gain[1] * upsampling) == frames
    )


class GainChoice:
    """Chooses the session's gain: the configured one, else the one found in the watched folder.

    Parameters
    ----------
    settings
        Resolved settings (``detector``: the configured gain, defects and orientation).
    alert
        Told of each warning (a gain that is not used, and why).
    note
        Told, in words, which found gain is used or ignored (for the session's log).
    """

    def __init__(
        self,
        settings: Settings,
        *,
        alert: Callable[[Alert], None],
        note: Callable[[str], None],
    ) -> None:
        self._settings = settings
        self._alert = alert
        self._note = note
        self._found: list[Path] = []
        self._made = False

    @property
    def found(self) -> tuple[Path, ...]:
        """The gain references found in the watched folder so far."""
        return tuple(self._found)

    def offer(self, path: Path) -> None:
        """A gain reference appeared in the watched folder."""
        configured = self._settings.detector.gain_reference
        if configured is not None and _same_file(Path(configured), path):
            return
        if path in self._found:
            return
        self._found.append(path)
        if configured is not None:
            self._note(
                f"gain reference {path} in the watched folder is not used: "
                f"detector.gain_reference names {configured}"
            )
        elif self._made:
            self._warn(
                "gain_reference_late",
                f"Gain reference {path} appeared in the watched folder after processing began "
                "without it; it is not used in this session",
            )

    def calibration(self, frame_shape: tuple[int, int], upsampling: int) -> DetectorCalibration:
        """The calibration for frames of ``frame_shape`` (``(h, w)`` as rendered).

        Raises
        ------
        FormatError
            The configured gain or defects are unreadable or do not fit the frames (the
            scheduler quarantines the movie; a found gain never raises, it is reported).
        """
        from causalscope.daemon.exposures import load_calibration

        settings = self._settings
        calibration = load_calibration(settings, frame_shape, upsampling=upsampling)
        self._made = True
        if settings.detector.gain_reference is not None or not self._found:
            return calibration
        if len(self._found) > 1:
            names = ", ".join(str(p) for p in self._found)
            self._warn(
                "gain_reference_ambiguous",
                f"{len(self._found)} gain references are in the watched folder ({names}); "
                "none is used, since which one belongs to these movies cannot be told",
            )
            return calibration
        path = self._found[0]
        if not self._check(path, frame_shape, upsampling):
            return calibration
        detector = settings.detector.model_copy(update={"gain_reference": path})
        with_gain = settings.model_copy(update={"detector": detector})
        self._note(
            f"gain reference {path} from the watched folder is used (detector.gain_reference "
            "is not set)"
        )
        return load_calibration(with_gain, frame_shape, upsampling=upsampling)

    def _check(self, path: Path, frame_shape: tuple[int, int], upsampling: int) -> bool:
        """Whether the found gain is readable and fits the frames; warns when it is not."""
        from causalscope.daemon import formats

        detector = self._settings.detector
        try:
            raw = formats.read_gain(path)
        except FormatError as error:
            self._warn(
                "gain_reference_unusable",
                f"Gain reference {path} in the watched folder cannot be used ({error.message}); "
                "the movies are processed without gain correction",
            )
            return False
        gain = formats.transform_gain(raw, rotation=detector.gain_rotation, flip=detector.gain_flip)
        if _fits(gain.shape, frame_shape, upsampling):
            return True
        oriented = detector.gain_rotation != 0 or detector.gain_flip != "none"
        after = " after detector.gain_rotation and gain_flip" if oriented else ""
        hint = (
            "; turned by 90 degrees it would fit: check detector.gain_rotation"
            if _fits(gain.shape[::-1], frame_shape, upsampling)
            else ""
        )
        self._warn(
            "gain_reference_mismatch",
            f"Gain reference {path} in the watched folder is {_size(gain.shape)}{after} but "
            f"the movies are {_size(frame_shape)}; it is not used and the movies are processed "
            f"without gain correction{hint}",
        )
        return False

    def _warn(self, code: str, message: str) -> None:
        self._alert(Alert(code=code, severity="warn", message=message, advice=_ADVICE))


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return a == b
