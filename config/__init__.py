"""Typed settings with commented defaults and microscope presets.

Load order, lowest to highest priority: defaults < preset < settings file < environment
(``CAUSALSCOPE_<SECTION>__<FIELD>``) < explicit overrides. Importing does no I/O; files and the
environment are read by :func:`load_settings`.

>>> settings = load_settings(preset="krios-k3")  # doctest: +SKIP
>>> settings.microscope.voltage_kv  # doctest: +SKIP
300.0
"""

from __future__ import annotations

from causalscope.config._moved import MovedSettingWarning
from causalscope.config.acquisition import StreamSettings, WatcherSettings
from causalscope.config.alerts import AlertSettings
from causalscope.config.instrument import DetectorSettings, MicroscopeSettings
from causalscope.config.processing import (
    CausalSettings,
    CtfSettings,
    GateSettings,
    MotionSettings,
    PickingSettings,
    ProcessingSettings,
)
from causalscope.config.reconstruction import ReconstructionSettings
from causalscope.config.render import default_toml, render_toml
from causalscope.config.scoring import ScoringSettings
from causalscope.config.services import ServeSettings, StoreSettings, TuiSettings
from causalscope.config.settings import Settings, default_settings, load_settings, settings_to_dict
from causalscope.config.simulation import SimulationSettings
from causalscope.config.sources import list_presets, preset_description

__all__ = [
    "AlertSettings",
    "CausalSettings",
    "CtfSettings",
    "DetectorSettings",
    "GateSettings",
    "MicroscopeSettings",
    "MotionSettings",
    "MovedSettingWarning",
    "PickingSettings",
    "ProcessingSettings",
    "ReconstructionSettings",
    "ScoringSettings",
    "ServeSettings",
    "Settings",
    "SimulationSettings",
    "StoreSettings",
    "StreamSettings",
    "TuiSettings",
    "WatcherSettings",
    "default_settings",
    "default_toml",
    "list_presets",
    "load_settings",
    "preset_description",
    "render_toml",
    "settings_to_dict",
]
