"""The actor classes, wrapped once: plain workers become Ray actors here and nowhere else."""

from __future__ import annotations

import ray

from actors.exposure import ExposureWorker

__all__ = ["ExposureActor"]

#: One per GPU (``num_gpus=1``) or per CPU share; the scheduler sets the resources with
#: ``.options`` and replaces an actor that dies itself (so ``max_restarts`` stays 0: a restarted
#: actor would silently rerun the exposure that killed it).
ExposureActor = ray.remote(max_restarts=0)(ExposureWorker)
