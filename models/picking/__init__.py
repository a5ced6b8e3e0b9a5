"""Particle picking: blobs (difference of Gaussians), templates (normalised cross-correlation),
extraction of normalised boxes, and matching picks against known positions.
"""

from causalscope.models.picking.blob import blob_response, pick_blobs
from causalscope.models.picking.extract import extract_particles, normalise_particles
from causalscope.models.picking.matching import PickMatch, match_picks
from causalscope.models.picking.picks import Picks
from causalscope.models.picking.template import (
    pick_template,
    project_templates,
    template_correlation,
)

__all__ = [
    "PickMatch",
    "Picks",
    "blob_response",
    "extract_particles",
    "match_picks",
    "normalise_particles",
    "pick_blobs",
    "pick_template",
    "project_templates",
    "template_correlation",
]
