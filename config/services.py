"""Settings of the session store, the terminal dashboard and the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints, model_validator

from causalscope.config._common import EMPTY_IS_NONE, OptionalPath, Section, ZmqAddress

__all__ = ["ServeSettings", "StoreSettings", "TuiSettings"]

_SessionName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]


class StoreSettings(Section):
    """The session store: one DuckDB file per session, and the endpoints that publish it."""

    directory: Path = Field(Path("sessions"), description="Folder that holds the sessions.")
    session_name: Annotated[_SessionName | None, EMPTY_IS_NONE] = Field(
        None,
        description="Session name (letters, digits, '.', '_', '-'); unset = date and time.",
        examples=["2024-05-01_apoferritin"],
    )
    publish_address: ZmqAddress = Field(
        "tcp://127.0.0.1:5556",
        description="PUB endpoint on which committed rows are published (port 0: any free port).",
    )
    query_address: ZmqAddress = Field(
        "tcp://127.0.0.1:5557",
        description="Read-only query endpoint for the dashboard and `causalscope query`.",
    )
    control_address: ZmqAddress = Field(
        "tcp://127.0.0.1:5558",
        description=(
            "Operator actions (label, pause, thresholds) from the dashboard; every request "
            "needs the session's token (in SESSION.endpoints.json, readable by its owner only)."
        ),
    )
    memory_limit_mb: int = Field(
        256,
        ge=16,
        le=1_048_576,
        description=(
            "Memory the session database (DuckDB) may hold: its cache of the file, the commits "
            "not yet written into it, the queries; beyond it DuckDB reads the file again or "
            "spills to SESSION.duckdb.tmp. Unbounded, DuckDB would cache the whole growing file "
            "(up to 80% of the machine's memory)."
        ),
    )

    @model_validator(mode="after")
    def _addresses_differ(self) -> StoreSettings:
        named = {
            "publish_address": self.publish_address,
            "query_address": self.query_address,
            "control_address": self.control_address,
        }
        seen: dict[str, str] = {}
        for name, address in named.items():
            if address.endswith(":0"):  # each bind picks its own free port
                continue
            if address in seen:
                raise ValueError(
                    f"{seen[address]} and {name} are both {address!r}; "
                    "they must be different endpoints"
                )
            seen[address] = name
        return self


class TuiSettings(Section):
    """The terminal dashboard: refresh rate and theme (its threshold lines are in [alerts])."""

    refresh_hz: float = Field(4.0, gt=0, le=60, description="Screen updates per second.")
    theme: str = Field("textual-dark", min_length=1, description="Textual colour theme.")


class ServeSettings(Section):
    """The HTTP API for session summaries (Ray Serve)."""

    enabled: bool = Field(False, description="Start the HTTP API with the daemon.")
    host: str = Field(
        "127.0.0.1", min_length=1, description="Address to bind; 0.0.0.0 exposes it to the network."
    )
    port: int = Field(8000, ge=1, le=65535, description="TCP port to bind.")
    token_file: OptionalPath = Field(
        None,
        description=(
            "File holding the API's token (every request then needs 'Authorization: Bearer "
            "TOKEN'); required to bind anything but a loopback address."
        ),
    )
