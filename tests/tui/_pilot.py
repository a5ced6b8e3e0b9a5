"""Helpers for driving the dashboard in tests: wait until its background work is done."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget
from textual.worker import WorkerCancelled, WorkerFailed

from causalscope.tui.app import Dashboard


async def settle(
    pilot: Pilot[None], groups: Iterable[str] = ("images", "gallery", "actions")
) -> None:
    """Wait for the history, the pictures and the actions in flight, then for the screen."""
    app = pilot.app
    assert isinstance(app, Dashboard)
    for _ in range(250):
        if app.history_loaded.is_set():
            break
        await asyncio.sleep(0.02)
    await pilot.pause(0.2)  # the pictures are fetched 0.15 s after the cursor stops
    wanted = set(groups)
    for worker in [w for w in app.workers if w.group in wanted]:
        try:
            await worker.wait()
        except (WorkerCancelled, WorkerFailed):
            pass
    await pilot.pause()
    await pilot.wait_for_scheduled_animations()
    await pilot.pause()


async def press(pilot: Pilot[None], *keys: str) -> None:
    """Press keys, then :func:`settle`."""
    await pilot.press(*keys)
    await settle(pilot)


def shown_text(widget: Widget) -> str:
    """The text a (non-container) widget draws at its current size, lines joined by newlines."""
    width, height = widget.size
    return "\n".join(
        strip.text.rstrip() for strip in widget.render_lines(Region(0, 0, width, height))
    )
