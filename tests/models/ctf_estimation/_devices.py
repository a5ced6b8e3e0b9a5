"""Device discipline checked on a CPU: tensors marked as living on an accelerator.

:class:`EmulatedAccelerator` is a torch function mode. Tensors passed to :meth:`put` count as
accelerator tensors, and so does everything computed from them, everything made with
``device=`` one of their ``.device`` objects, and ``.to()`` of such a device or tensor. Every
other tensor made from nothing (``torch.tensor``, ``torch.arange`` without ``device=``) counts
as a CPU tensor. An operation that mixes the two (other than with a 0-dim CPU tensor, which CUDA
accepts as a scalar, or a CPU index into an accelerator tensor) or ``.numpy()`` of an
accelerator tensor is recorded, as CUDA would raise there.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

_TAG = "_emulated_accelerator"
_INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__}
_DEVICE = torch.Tensor.device.__get__  # a method-wrapper: compare with ==, not is


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def on_accelerator(tensor: torch.Tensor) -> bool:
    """Whether ``tensor`` counts as an accelerator tensor."""
    return bool(getattr(tensor, _TAG, False))


class EmulatedAccelerator(TorchFunctionMode):
    """Records where code would mix devices on a GPU (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self._devices: list[torch.device] = []  # held, so that their ids stay unique
        self.violations: list[str] = []

    def put(self, tensor: torch.Tensor) -> torch.Tensor:
        """Mark ``tensor`` as an accelerator tensor; returns it."""
        setattr(tensor, _TAG, True)
        return tensor

    def _names_accelerator(self, value: Any) -> bool:
        if isinstance(value, torch.device):
            return any(value is known for known in self._devices)
        return isinstance(value, torch.Tensor) and on_accelerator(value)

    def _record(self, func: Any, why: str) -> None:
        stack = [f for f in traceback.extract_stack() if "causalscope" in f.filename]
        where = f"{stack[-1].filename}:{stack[-1].lineno}" if stack else "?"
        self.violations.append(f"{where}: {getattr(func, '__name__', func)}: {why}")

    def _target(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
        """Whether the result lives on the accelerator."""
        if "device" in kwargs:
            return self._names_accelerator(kwargs["device"])
        if func is torch.Tensor.to:
            moves = [*args[1:], *kwargs.values()]
            if any(isinstance(a, (torch.device, str, torch.Tensor)) for a in moves):
                return any(self._names_accelerator(a) for a in moves)
        if func is torch.Tensor.cpu:
            return False
        return any(on_accelerator(t) for t in _tensors((args, kwargs)))

    def _check(self, func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if func is torch.Tensor.to or func is torch.Tensor.cpu or "device" in kwargs:
            return
        if func is torch.Tensor.numpy and on_accelerator(args[0]):
            self._record(func, ".numpy() of an accelerator tensor")
            return
        operands = list(_tensors((args, kwargs)))
        if func in _INDEXING and on_accelerator(args[0]):
            index = set(map(id, _tensors(args[1])))
            operands = [t for t in operands if id(t) not in index]
        mixed = [t for t in operands if not on_accelerator(t) and t.ndim > 0]
        if mixed and any(on_accelerator(t) for t in operands):
            shapes = [tuple(t.shape) for t in mixed]
            self._record(func, f"CPU tensor(s) of shape {shapes} meet accelerator tensors")

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        if func == _DEVICE:
            if on_accelerator(args[0]):
                self._devices.append(result)
            return result
        self._check(func, args, kwargs)
        target = self._target(func, args, kwargs)
        if func in (torch.Tensor.to, torch.Tensor.cpu) and on_accelerator(result) != target:
            # on the CPU a move returns its input itself: an alias can carry the other mark
            result = result.view(result.shape)
        if target:
            for tensor in _tensors(result):
                setattr(tensor, _TAG, True)
        return result
