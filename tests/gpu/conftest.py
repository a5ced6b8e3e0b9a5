"""The CUDA checks: each test here runs a stage on the GPU and on the CPU and compares them
within a stated tolerance. Where no CUDA device is visible they skip and say so; everything
they check also runs on the CPU in the rest of the suite."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import torch

    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="no CUDA device visible: the CPU path is tested elsewhere")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
