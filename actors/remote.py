"""The actor classes, wrapped once: plain workers become Ray actors here and nowhere else."""

from __future__ import annotations

import ray

from causalscope.actors.causal import CausalPriorWorker
from causalscope.actors.denoiser import DenoiserTrainer
from causalscope.actors.evaluation import SessionEvaluator
from causalscope.actors.exposure import ExposureWorker
from causalscope.actors.picker_trainer import PickerTrainer

__all__ = [
    "CausalPriorActor",
    "DenoiserTrainerActor",
    "EvaluatorActor",
    "ExposureActor",
    "PickerTrainerActor",
]

#: One per GPU (asking for 0.75 of it: the session evaluator's share fits beside it,
#: :mod:`daemon.placement`) or per CPU share; the scheduler sets the resources with
#: ``.options`` and replaces an actor that dies itself (so ``max_restarts`` stays 0: a restarted
#: actor would silently rerun the exposure that killed it). Its process needs one C heap from
#: its start (:func:`daemon.workers.start_ray`, :class:`daemon.workers.RayWorkerPool`).
ExposureActor = ray.remote(max_restarts=0)(ExposureWorker)

#: One per session: fine-tunes the denoiser on the session's own half sums, in the background.
DenoiserTrainerActor = ray.remote(max_restarts=0)(DenoiserTrainer)

#: One per session with picker labels: fine-tunes the learned picker, judged on the labels.
PickerTrainerActor = ray.remote(max_restarts=0)(PickerTrainer)

#: One per session: learns the causal model from each committed exposure, in commit order.
CausalPriorActor = ray.remote(max_restarts=0)(CausalPriorWorker)

#: One per session: the running 2D classes and 3D map, fed each committed exposure's particles.
EvaluatorActor = ray.remote(max_restarts=0)(SessionEvaluator)
