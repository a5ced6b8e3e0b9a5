"""The pipeline bench's memory growth comes from the first and last samples it took, whatever
count of exposures each was taken at (a scheduler step can finish several at once)."""

from __future__ import annotations

import pytest

from causalscope.daemon.bench.pipeline import memory_growth


def test_growth_from_the_first_sample_to_the_last_even_past_the_planned_count() -> None:
    # planned at 20 and 200; a step finished two at once, so the first was taken at 21
    samples = {
        "21": {"daemon_mib": 400.0, "actors_mib": [1000.0, 2000.0]},
        "200": {"daemon_mib": 404.0, "actors_mib": [1010.0, 1980.0]},
    }
    growth = memory_growth(samples)
    assert growth["from_exposure"] == 21
    assert growth["daemon_percent"] == pytest.approx(1.0)
    assert growth["actors_percent"] == pytest.approx([1.0, -1.0])


def test_one_sample_gives_no_growth() -> None:
    assert memory_growth({"20": {"daemon_mib": 400.0, "actors_mib": []}}) == {}
