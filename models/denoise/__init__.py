"""Noise2Noise denoising of micrographs: a compact U-Net trained on even/odd half sums.

- :class:`UNet`, :func:`parameter_count` (:mod:`.unet`)
- :func:`denoise`, :func:`denoise_half_sums` (tiled, bounded memory; :mod:`.inference`)
- :func:`train_noise2noise`, :func:`noise2noise_step`, :class:`TrainingReport` (:mod:`.training`)
- :func:`save_weights`, :func:`load_weights`, :func:`default_model` (:mod:`.weights`)
"""

from causalscope.models.denoise.inference import denoise, denoise_half_sums, robust_normalisation
from causalscope.models.denoise.training import (
    TrainingReport,
    noise2noise_step,
    normalised_pair,
    random_crops,
    train_noise2noise,
)
from causalscope.models.denoise.unet import UNet, parameter_count
from causalscope.models.denoise.weights import (
    DEFAULT_WEIGHTS,
    default_model,
    load_weights,
    save_weights,
)

__all__ = [
    "DEFAULT_WEIGHTS",
    "TrainingReport",
    "UNet",
    "default_model",
    "denoise",
    "denoise_half_sums",
    "load_weights",
    "noise2noise_step",
    "normalised_pair",
    "parameter_count",
    "random_crops",
    "robust_normalisation",
    "save_weights",
    "train_noise2noise",
]
