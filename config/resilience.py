"""Settings of how the daemon stays up: memory awareness and the handling of failed workers."""

from __future__ import annotations

from pydantic import Field

from causalscope.config._common import Section

__all__ = ["ResilienceSettings"]


class ResilienceSettings(Section):
    """Staying up: memory pressure, crashed workers, and when to give up on an exposure."""

    min_free_memory_fraction: float = Field(
        0.10,
        ge=0,
        lt=1,
        description=(
            "When less than this share of the node's memory is free, work in flight drops to "
            "one exposure (before Ray's own memory monitor has to kill a worker); full speed "
            "returns by itself once memory is free again."
        ),
    )
    worker_memory_limit_mb: int = Field(
        8192,
        ge=0,
        description=(
            "A worker whose resident memory is above this is replaced between exposures (0: never)."
        ),
    )
    memory_check_s: float = Field(
        1.0, gt=0, le=3600, description="Seconds between readings of the node's memory."
    )
    out_of_memory_slowdown_s: float = Field(
        120.0,
        ge=0,
        le=86400,
        description=(
            "After Ray killed a worker for memory, work in flight stays at one exposure this long."
        ),
    )
    max_attempts: int = Field(
        3,
        ge=1,
        le=100,
        description=(
            "Processing attempts of one exposure whose workers keep failing before it is "
            "quarantined (counted in the session database, so a restart keeps the count)."
        ),
    )
    pause_after_failures: int = Field(
        4,
        ge=2,
        le=1000,
        description=(
            "Consecutive worker failures, on more than one exposure and with no exposure "
            "finishing in between, that pause processing: the fault is not the data's."
        ),
    )
    failure_pause_s: float = Field(
        30.0,
        gt=0,
        le=86400,
        description=(
            "First pause after every exposure failed; then one exposure is tried, and the "
            "pause doubles (up to 10 minutes) while it fails too."
        ),
    )
    daemon_restart_pause_s: float = Field(
        2.0,
        gt=0,
        le=3600,
        description=(
            "`watch --supervise`: seconds before the session process is started again after it "
            "died; doubles (up to 5 minutes) while it keeps dying within a minute."
        ),
    )
    daemon_restarts_per_hour: int = Field(
        10,
        ge=1,
        le=1000,
        description=(
            "`watch --supervise`: restarts of the session process allowed in an hour before the "
            "supervisor gives up with a message."
        ),
    )
