"""The dashboard's widgets: overview, exposure table, details, alerts, causes, plots, pictures,
dialogs."""

from tui.widgets.alerts import AlertsPanel
from tui.widgets.causes import CausesPanel
from tui.widgets.details import DetailsPane
from tui.widgets.dialogs import HelpScreen, ThresholdDialog
from tui.widgets.image import HalfBlockImage, ImagesPanel
from tui.widgets.overview import Overview
from tui.widgets.plots import PlotsPanel
from tui.widgets.table import ExposureTable

__all__ = [
    "AlertsPanel",
    "CausesPanel",
    "DetailsPane",
    "ExposureTable",
    "HalfBlockImage",
    "HelpScreen",
    "ImagesPanel",
    "Overview",
    "PlotsPanel",
    "ThresholdDialog",
]
