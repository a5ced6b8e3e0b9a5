"""The microscope's file formats: movies (MRC, TIFF, EER), gain and defects, EPU XML, SerialEM
mdoc, atomic models and maps, detector MTFs. Readers raise :class:`models.errors.FormatError`
naming the file and the bad value; writers write atomically unless told otherwise.
"""

from causalscope.daemon.formats._common import MOVIE_SUFFIXES, MovieInfo
from causalscope.daemon.formats.ctf_star import write_micrographs_ctf_star
from causalscope.daemon.formats.defects import read_defects, write_defects
from causalscope.daemon.formats.eer import read_eer_movie, write_eer_movie
from causalscope.daemon.formats.epu import find_epu_metadata, read_epu_xml, write_epu_xml
from causalscope.daemon.formats.gain import GAIN_FLIPS, read_gain, transform_gain, write_gain
from causalscope.daemon.formats.mdoc import find_mdoc, read_mdoc, write_mdoc
from causalscope.daemon.formats.motion_star import write_motion_star
from causalscope.daemon.formats.movies import check_complete, movie_info, read_movie
from causalscope.daemon.formats.mrc import MRC_MODES, write_micrograph, write_mrc_movie
from causalscope.daemon.formats.mtf import read_mtf_star
from causalscope.daemon.formats.structure import AtomicStructure, read_map_as_atoms, read_structure
from causalscope.daemon.formats.tiff import write_tiff_movie

__all__ = [
    "GAIN_FLIPS",
    "MOVIE_SUFFIXES",
    "MRC_MODES",
    "AtomicStructure",
    "MovieInfo",
    "check_complete",
    "find_epu_metadata",
    "find_mdoc",
    "movie_info",
    "read_defects",
    "read_eer_movie",
    "read_epu_xml",
    "read_gain",
    "read_map_as_atoms",
    "read_mdoc",
    "read_movie",
    "read_mtf_star",
    "read_structure",
    "transform_gain",
    "write_defects",
    "write_eer_movie",
    "write_epu_xml",
    "write_gain",
    "write_mdoc",
    "write_micrograph",
    "write_micrographs_ctf_star",
    "write_motion_star",
    "write_mrc_movie",
    "write_tiff_movie",
]
