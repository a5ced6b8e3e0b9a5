"""Streaming 2D classification of particle images (in-plane rotations, shifts, CTF).

Use::

    model = Class2D(box_px=128, pixel_size_angstrom=1.5, settings=Class2DSettings(n_classes=50))
    ctf = ParticleCtfs(defocus_u, defocus_v, angle_deg, voltage_kv=300.0,
                      spherical_aberration_mm=2.7, amplitude_contrast=0.07,
                      pixel_size_angstrom=1.5, phase_flipped=True)
    batch_assignment = model.partial_fit(images, ctf, ids)   # per new batch: (m, box, box)
    everything = model.reassign_all()                        # a full pass, when wanted
    metrics = class_metrics(model, everything, particle_diameter_angstrom=150.0)
    keep = select_classes(metrics, threshold=0.5, manual={3: False})
    kept_particles = keep[everything.class_index] & ~everything.outlier

Particles that arrive before the classes exist (fewer than ``start_after`` stored) are
returned with class -1; the first full pass assigns them. :meth:`Class2D.averages` gives the
class averages on the binned working grid (``model.grid.pixel_size_angstrom``). The binned
particle images are kept in host memory unless ``Class2D(..., store=...)`` is given another
:class:`RowStore` (the live evaluator keeps them in a file).
"""

from causalscope.models.classification._tensors import MemoryRows, RowStore
from causalscope.models.classification.averages import (
    frc_first_crossing_angstrom,
    half_set_frc,
    snr_from_frc,
    wiener_average,
)
from causalscope.models.classification.class2d import Assignment, Class2D, Class2DSettings
from causalscope.models.classification.metrics import (
    ClassMetrics,
    class_metrics,
    junk_components,
    select_classes,
)
from causalscope.models.reconstruction.particle_ctf import ParticleCtfs
from causalscope.models.reconstruction.resample import fourier_crop

__all__ = [
    "Assignment",
    "Class2D",
    "Class2DSettings",
    "ClassMetrics",
    "MemoryRows",
    "ParticleCtfs",
    "RowStore",
    "class_metrics",
    "fourier_crop",
    "frc_first_crossing_angstrom",
    "half_set_frc",
    "junk_components",
    "select_classes",
    "snr_from_frc",
    "wiener_average",
]
