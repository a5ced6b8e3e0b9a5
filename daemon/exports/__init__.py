"""A session's files for other programs: RELION STAR files and cryoSPARC ``.cs`` files.

:func:`exported` lists the exposures to write, :func:`shift_groups` their beam/image-shift
groups; :mod:`.relion` and :mod:`.cryosparc` write the files (pandas, starfile and
cryosparc-tools are imported only there).
"""

from causalscope.daemon.exports._rows import (
    EXPORTED_SQL,
    SELECTED_SQL,
    Exported,
    accepted_particles,
    exported,
    shift_groups,
)

__all__ = [
    "EXPORTED_SQL",
    "SELECTED_SQL",
    "Exported",
    "accepted_particles",
    "exported",
    "shift_groups",
]
