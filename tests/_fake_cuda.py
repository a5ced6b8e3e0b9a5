"""CUDA's device rules enforced on a CPU, for code that takes ``device="cuda"``.

Inside :class:`FakeCuda` (a torch function mode), ``torch.cuda.is_available()`` is True and a
tensor made with ``device="cuda"`` (or moved there with ``.to``/``.cuda``, or computed from
such tensors) is a CPU tensor of the marker class :class:`OnDevice`, whose ``.device`` reads
``cuda``. Every torch call is checked as CUDA checks it, and :class:`DeviceError` is raised
where a GPU would raise: a CPU tensor (other than a 0-dim one, which CUDA takes as a scalar)
mixed with device tensors, a device index into a CPU tensor, an advanced-index assignment of
values from the other device, ``.numpy()`` of a device tensor, a CPU generator for sampling on
the device. Pickling a device tensor raises too: a checkpoint must hold CPU tensors, so that it
loads where there is no GPU. The arithmetic is the CPU's, so the results are the CPU path's own
to the last bit, and :attr:`FakeCuda.counts` says how often a device value was read on the host
(``syncs``) or copied to the CPU (``to_cpu``).

It serves code told its device by name and code whose device comes from its inputs (move them
to "cuda" inside the mode) alike. It does not see what only a GPU shows: rounding of cuFFT and
atomic adds, memory, speed (``tests/gpu``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

__all__ = ["DeviceError", "FakeCuda", "OnDevice"]

_CUDA = torch.device("cuda")
_HOST_READS = {
    torch.Tensor.item, torch.Tensor.tolist, torch.Tensor.__bool__, torch.Tensor.__float__,
    torch.Tensor.__int__, torch.Tensor.__index__,
}  # fmt: skip
_VIEWS = ("real", "imag", "mT", "T", "H", "mH")


class OnDevice(torch.Tensor):
    """A CPU tensor that counts as one on the (emulated) GPU."""

    __torch_function__ = torch._C._disabled_torch_function_impl  # type: ignore[assignment]


class DeviceError(RuntimeError):
    """Where CUDA would raise (module docstring)."""


def _on(t: Any) -> bool:
    return isinstance(t, OnDevice)


def _cpu(t: Any) -> Any:
    return t.as_subclass(torch.Tensor) if isinstance(t, OnDevice) else t


def _dev(t: Any) -> Any:
    return t.as_subclass(OnDevice) if isinstance(t, torch.Tensor) and not _on(t) else t


def _names_cuda(device: Any) -> bool | None:
    if device is None:
        return None
    if isinstance(device, torch.Tensor):
        return _on(device)
    return str(device).startswith("cuda")


def _basic(index: Any) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(i is None or i is Ellipsis or isinstance(i, int | slice) for i in items)


class FakeCuda(TorchFunctionMode):
    """The emulation (module docstring); ``counts`` of host reads and copies to the CPU."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = {"syncs": 0, "to_cpu": 0}
        self._saved: dict[str, Callable[..., Any]] = {}

    def __enter__(self) -> FakeCuda:
        patches = {
            "is_available": lambda: True,
            "synchronize": lambda *a, **k: None,
            "max_memory_allocated": lambda *a, **k: 0,
            "reset_peak_memory_stats": lambda *a, **k: None,
        }
        for name, patch in patches.items():
            self._saved[name] = getattr(torch.cuda, name)
            setattr(torch.cuda, name, patch)
        super().__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        for name, original in self._saved.items():
            setattr(torch.cuda, name, original)
        super().__exit__(*exc)

    def __torch_function__(
        self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None
    ) -> Any:
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", str(func))
        if name == "__get__":  # an attribute: .device, .shape, .real, ...
            owner = getattr(getattr(func, "__self__", None), "__name__", None)
            if owner == "device":
                return _CUDA if _on(args[0]) else torch.device("cpu")
            if owner == "is_cuda":
                return _on(args[0])
            value = func(_cpu(args[0]))
            return _dev(value) if owner in _VIEWS and _on(args[0]) else value
        if func in (torch.Tensor.numpy, torch.Tensor.__array__) and _on(args[0]):
            raise DeviceError(f"{name}() of a device tensor")
        if func is torch.Tensor.__reduce_ex__ and _on(args[0]):
            raise DeviceError("a device tensor pickled: a checkpoint must hold CPU tensors")
        if func is torch.Tensor.cpu:
            self.counts["to_cpu"] += int(_on(args[0]))
            return _cpu(args[0]).clone() if _on(args[0]) else args[0]
        if func is torch.Tensor.cuda:
            return args[0] if _on(args[0]) else _dev(args[0].clone())
        if func is torch.Tensor.to:
            return self._to(args, kwargs)
        if func in _HOST_READS:
            self.counts["syncs"] += int(_on(args[0]))
            return func(*tree_map(_cpu, args), **kwargs)
        if func is torch.Tensor.__getitem__:
            return self._getitem(*args)
        if func is torch.Tensor.__setitem__:
            return self._setitem(*args)
        if func is torch.Tensor.copy_:
            self.counts["to_cpu"] += int(_on(args[1]) and not _on(args[0]))
            _cpu(args[0]).copy_(_cpu(args[1]), *args[2:], **kwargs)
            return args[0]
        return self._call(func, name, args, kwargs)

    def _call(self, func: Any, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        tensors = [t for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)]
        device_in = any(_on(t) for t in tensors)
        wanted = _names_cuda(kwargs.get("device"))
        if wanted:
            kwargs["device"] = "cpu"
            if isinstance(kwargs.get("generator"), torch.Generator):
                raise DeviceError(f"{name}: a CPU generator for sampling on the device")
        if wanted is None and (name.startswith("new_") or name.endswith("_like")):
            wanted = _on(args[0])
        if device_in and name not in ("as_tensor", "tensor"):
            _check_mix(name, tensors)
        out = func(*tree_map(_cpu, args), **tree_map(_cpu, kwargs))
        on = bool(wanted) if wanted is not None else device_in
        if device_in and name.endswith("_") and isinstance(args[0], torch.Tensor):
            if not _on(args[0]):
                raise DeviceError(f"{name}: a CPU tensor changed in place from device tensors")
        return tree_map(lambda t: _dev(t) if on and isinstance(t, torch.Tensor) else t, out)

    def _to(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        source, target, rest = args[0], kwargs.pop("device", None), []
        for a in args[1:]:
            if isinstance(a, str | torch.device | torch.Tensor):
                target = a
                if isinstance(a, torch.Tensor):
                    kwargs.setdefault("dtype", a.dtype)
            else:
                rest.append(a)
        wanted = _names_cuda(target)
        on = _on(source) if wanted is None else wanted
        out = _cpu(source).to(*rest, **kwargs)
        if on != _on(source):
            self.counts["to_cpu"] += int(not on)
            out = out.clone() if out is _cpu(source) else out
        return _dev(out) if on else _cpu(out)

    def _getitem(self, source: torch.Tensor, index: Any) -> Any:
        if not _on(source) and any(_on(t) for t in tree_flatten(index)[0]):
            raise DeviceError("a CPU tensor indexed with a device tensor")
        out = _cpu(source)[tree_map(_cpu, index)]
        return _dev(out) if _on(source) else out

    def _setitem(self, target: torch.Tensor, index: Any, value: Any) -> None:
        if not _on(target) and any(_on(t) for t in tree_flatten(index)[0]):
            raise DeviceError("a CPU tensor indexed with a device tensor")
        other = isinstance(value, torch.Tensor) and value.dim() > 0 and _on(value) != _on(target)
        if other and not _basic(index):
            raise DeviceError("an advanced-index assignment of values from the other device")
        _cpu(target)[tree_map(_cpu, index)] = _cpu(value)


def _check_mix(name: str, tensors: list[torch.Tensor]) -> None:
    cpu = [tuple(t.shape) for t in tensors if not _on(t) and t.dim() > 0]
    if cpu:
        raise DeviceError(f"{name}: CPU tensors {cpu[:3]} meet device tensors")
