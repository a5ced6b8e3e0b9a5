"""Fixtures shared by the whole test suite."""

from __future__ import annotations

import importlib.abc
import sys
from pathlib import Path

import pytest

_FOLDERS = frozenset({"daemon", "actors", "models", "tui", "config"})


class _OnlyAsCausalscope(importlib.abc.MetaPathFinder):
    """The tests run from the repository root, where the package's folders could be imported
    under their folder names, as no installed copy can: refuse that, so such a name in the
    code (``resources.files("models")``) fails here as it would for a user."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> None:
        if fullname.partition(".")[0] in _FOLDERS:
            raise ModuleNotFoundError(
                f"No module named {fullname!r} (import it as causalscope.{fullname})",
                name=fullname,
            )
        return None


sys.meta_path.insert(0, _OnlyAsCausalscope())


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` beside the repository root; skips the test when it is absent."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    if not path.is_dir():
        pytest.skip("../shared/data is absent: real-data test skipped")
    return path


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Torch on one thread in the test process: it shares the machine's cores with the Ray
    workers and the commands the tests start, and two oversubscribed threads there run many
    times slower than one. Tests that measure threading set their own and put it back."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def _ray_at_exit():
    """Shut down whatever Ray cluster is up when the session ends."""
    yield
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_cluster(_ray_at_exit):
    """One local Ray cluster (2 CPUs) for every test that needs real actors: started once, and
    again for the next module after a module that needed a cluster of its own (several nodes)
    shut it down."""
    import ray

    if not ray.is_initialized():
        from causalscope.daemon.workers import start_ray

        # a new cluster of our own, as the daemon starts it (its processes with one C heap)
        start_ray(num_cpus=2, log_to_terminal=False)
    return ray
