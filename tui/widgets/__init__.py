"""The dashboard's widgets: overview, exposure table, details, alerts, causes, plots, pictures,
the running reconstructions, dialogs."""

from causalscope.tui.widgets.alerts import AlertsPanel
from causalscope.tui.widgets.causes import CausesPanel
from causalscope.tui.widgets.details import DetailsPane
from causalscope.tui.widgets.dialogs import HelpScreen, ThresholdDialog
from causalscope.tui.widgets.image import HalfBlockImage, ImagesPanel
from causalscope.tui.widgets.overview import Overview
from causalscope.tui.widgets.plots import PlotsPanel
from causalscope.tui.widgets.reconstruction import ReconstructionPanel
from causalscope.tui.widgets.table import ExposureTable

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
    "ReconstructionPanel",
    "ThresholdDialog",
]
