"""The root settings model and how it is loaded.

Load order, lowest to highest priority: the defaults in the models < a preset
(``config/presets/NAME.toml``) < the user's settings file < environment variables
``CAUSALSCOPE_<SECTION>__<FIELD>`` < explicit overrides (command-line options).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from causalscope.config._messages import config_error
from causalscope.config._moved import move_data, move_layers
from causalscope.config.acquisition import StreamSettings, WatcherSettings
from causalscope.config.alerts import AlertSettings
from causalscope.config.instrument import DetectorSettings, MicroscopeSettings
from causalscope.config.processing import ProcessingSettings
from causalscope.config.services import ServeSettings, StoreSettings, TuiSettings
from causalscope.config.simulation import SimulationSettings
from causalscope.config.sources import (
    ENV_NESTED_DELIMITER,
    ENV_PREFIX,
    Layer,
    environment_layer,
    file_layer,
    merge_layers,
    override_layer,
    preset_layer,
)

__all__ = ["Settings", "default_settings", "load_settings", "settings_to_dict"]

# Set while load_settings validates: it has read the environment itself (to name variables in
# errors), so pydantic-settings must not read it a second time.
_ENVIRONMENT_READ: ContextVar[bool] = ContextVar("causalscope_environment_read", default=False)


class Settings(BaseSettings):
    """Every setting of causalscope, by section.

    ``Settings()`` gives the defaults updated from ``CAUSALSCOPE_...`` environment variables;
    :func:`load_settings` adds presets, a settings file and overrides, and clear errors.
    """

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        case_sensitive=False,
        extra="forbid",
        frozen=True,
    )

    microscope: MicroscopeSettings = Field(
        default_factory=MicroscopeSettings, description="The microscope's optics."
    )
    detector: DetectorSettings = Field(
        default_factory=DetectorSettings, description="The detector and its corrections."
    )
    watcher: WatcherSettings = Field(
        default_factory=WatcherSettings, description="The directory watcher."
    )
    stream: StreamSettings = Field(
        default_factory=StreamSettings, description="The ZeroMQ frame stream."
    )
    processing: ProcessingSettings = Field(
        default_factory=ProcessingSettings, description="Per-exposure processing."
    )
    store: StoreSettings = Field(default_factory=StoreSettings, description="The session store.")
    alerts: AlertSettings = Field(
        default_factory=AlertSettings, description="Alerts for the operator."
    )
    tui: TuiSettings = Field(default_factory=TuiSettings, description="The terminal dashboard.")
    serve: ServeSettings = Field(default_factory=ServeSettings, description="The HTTP API.")
    simulation: SimulationSettings = Field(
        default_factory=SimulationSettings, description="The simulator (the fake microscope)."
    )

    @model_validator(mode="before")
    @classmethod
    def _moved_settings(cls, data: Any) -> Any:
        """Settings given in their old table (``[tui]`` thresholds) go to their new one."""
        return move_data(data) if isinstance(data, Mapping) else data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Keyword arguments, then the environment; no .env or secrets files."""
        if _ENVIRONMENT_READ.get():
            return (init_settings,)
        return (init_settings, env_settings)


def _validate(layers: list[Layer]) -> Settings:
    layers = move_layers(layers)
    token = _ENVIRONMENT_READ.set(True)
    try:
        return Settings.model_validate(merge_layers(layers))
    except ValidationError as error:
        raise config_error(error, layers, Settings) from error
    finally:
        _ENVIRONMENT_READ.reset(token)


def default_settings() -> Settings:
    """The built-in defaults, ignoring the environment."""
    return _validate([])


def load_settings(
    config_file: str | Path | None = None,
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Resolve the settings: defaults < preset < file < environment < overrides.

    Parameters
    ----------
    config_file
        The user's settings file (TOML); it needs only the settings it changes.
    preset
        Name of a built-in microscope preset (see :func:`config.list_presets`).
    overrides
        Highest-priority values, as nested dicts (``{"microscope": {"voltage_kv": 200}}``)
        or dotted keys (``{"microscope.voltage_kv": 200}``); merged deeply.

    Raises
    ------
    ConfigError
        A file or preset is missing or not valid TOML, or a value has the wrong type, unit or
        range; the message names its origin, the dotted setting and the value.

    Warns
    -----
    MovedSettingWarning
        A setting is given in its old table (an alert threshold under ``[tui]``); it is used
        from its new one (``[alerts]``).
    """
    layers: list[Layer] = []
    if preset is not None:
        layers.append(preset_layer(preset))
    if config_file is not None:
        layers.append(file_layer(config_file))
    layers.append(environment_layer(os.environ))
    if overrides:
        layers.append(override_layer(overrides))
    return _validate(layers)


def settings_to_dict(settings: Settings) -> dict[str, Any]:
    """The settings as JSON-compatible nested dicts (paths as text), for the session record.

    ``Settings.model_validate(settings_to_dict(s)) == s``.
    """
    return settings.model_dump(mode="json")
