"""A learned particle picker: a small CNN at a canonical particle size, trained by
positive-unlabelled learning from sparse picks, picking by NMS on a probability map.
"""

from causalscope.models.picking.learned.calibration import (
    best_f1,
    calibrate_picker,
    fit_platt,
)
from causalscope.models.picking.learned.holdout import held_out_f1
from causalscope.models.picking.learned.inference import (
    DEFAULT_THRESHOLD,
    peaks_from_probability,
    pick_learned,
    probability_map,
)
from causalscope.models.picking.learned.network import (
    CANONICAL_DIAMETER_PX,
    PickerNet,
    parameter_count,
)
from causalscope.models.picking.learned.preprocess import canonical_micrograph
from causalscope.models.picking.learned.pu import class_prior, nnpu_loss, positive_map
from causalscope.models.picking.learned.training import (
    LabelledMicrograph,
    PickerTrainingReport,
    binned_copies,
    prepare_micrograph,
    train_picker,
    training_rows,
)
from causalscope.models.picking.learned.weights import (
    DEFAULT_PICKER_WEIGHTS,
    default_picker,
    load_picker,
    save_picker,
)

__all__ = [
    "CANONICAL_DIAMETER_PX",
    "DEFAULT_PICKER_WEIGHTS",
    "DEFAULT_THRESHOLD",
    "LabelledMicrograph",
    "PickerNet",
    "PickerTrainingReport",
    "best_f1",
    "binned_copies",
    "calibrate_picker",
    "canonical_micrograph",
    "class_prior",
    "default_picker",
    "fit_platt",
    "held_out_f1",
    "load_picker",
    "nnpu_loss",
    "parameter_count",
    "peaks_from_probability",
    "pick_learned",
    "positive_map",
    "prepare_micrograph",
    "probability_map",
    "save_picker",
    "train_picker",
    "training_rows",
]
