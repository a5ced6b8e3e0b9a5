"""The microscope's file formats: movies (MRC, TIFF, EER), gain and defects, EPU XML, SerialEM
mdoc, atomic models and maps, detector MTFs. Readers raise :class:`models.errors.FormatError`
naming the file and the bad value; writers write atomically unless told otherwise.
"""

from daemon.formats._common import MOVIE_SUFFIXES, MovieInfo
from daemon.formats.ctf_star import write_micrographs_ctf_star
from daemon.formats.defects import read_defects, write_defects
from daemon.formats.eer import read_eer_movie, write_eer_movie
from daemon.formats.epu import find_epu_metadata, read_epu_xml, write_epu_xml
from daemon.formats.gain import GAIN_FLIPS, read_gain, transform_gain, write_gain
from daemon.formats.mdoc import find_mdoc, read_mdoc, write_mdoc
from daemon.formats.motion_star import write_motion_star
from daemon.formats.movies import check_complete, movie_info, read_movie
from daemon.formats.mrc import MRC_MODES, write_mrc_movie
from daemon.formats.mtf import read_mtf_star
from daemon.formats.structure import AtomicStructure, read_map_as_atoms, read_structure
from daemon.formats.tiff import write_tiff_movie

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
    "write_micrographs_ctf_star",
    "write_motion_star",
    "write_mrc_movie",
    "write_tiff_movie",
]
