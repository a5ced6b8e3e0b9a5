"""Settings of the learned picker's fine-tuning during a session."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator

from causalscope.config._common import OptionalPath, Section

__all__ = ["PickerTuningSettings"]


class PickerTuningSettings(Section):
    """Fine-tuning the learned picker on the operator's labels, judged on held-back rows."""

    labels: OptionalPath = Field(
        None,
        description=(
            "Folder of the operator's picks, one coordinate file per exposure (RELION STAR or "
            "CSV, pixels of its dose-weighted sum, every particle on it), named after the "
            "exposure (<exposure>.star, <exposure>_manualpick.star, <exposure>.csv); read as "
            "files appear. Each new file starts a fine-tuning round; the fine-tuned picker is "
            "used only while its F1 on the labels' held-back rows is above the shipped "
            "picker's. Empty: no fine-tuning."
        ),
    )
    steps: int = Field(300, ge=1, le=100_000, description="Training steps per round.")
    self_training: bool = Field(
        False,
        description=(
            "Also train on the session's own confident picks (with labels only, which judge "
            "the result); measured on EMPIAR-10059 it lowered F1 (0.773 -> 0.761)."
        ),
    )
    confident: float = Field(
        0.9, gt=0, lt=1, description="Self-training: the lowest probability of a pick used."
    )
    from_classes: bool = Field(
        True,
        description=(
            "Also train on the picks the session's 2D classes sort (with labels only, which "
            "judge the result): those in selected classes as particles, those excluded as "
            "known junk; taken at 50 selected particles, again each time they grow by a "
            "quarter. Simulated, with aggregates: F1 in clean ice 0.94 / 0.93 with the labels "
            "alone, 0.97 / 0.99 with the classes (bench picking --from-classes)."
        ),
    )

    @field_validator("labels")
    @classmethod
    def _labels_is_a_folder(cls, value: Path | None) -> Path | None:
        # absolute, so that the trainer started in another folder (Ray) reads the same files
        if value is None:
            return None
        path = value.expanduser().absolute()
        if path.exists() and not path.is_dir():
            raise ValueError(f"picker labels {str(path)!r} is not a folder")
        return path
