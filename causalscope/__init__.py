"""causalscope: live cryo-EM processing with a causal model of image quality.

The package's parts are the repository's top-level folders, installed under this name:
``causalscope.daemon`` (watcher, scheduler, store, CLI), ``causalscope.actors`` (Ray actors),
``causalscope.models`` (the numerics), ``causalscope.tui`` (the dashboard) and
``causalscope.config`` (settings).
"""

import os

# OpenMP threads that wait for work yield their core instead of spinning on it. A microscope
# PC runs other programs, and the live pipeline runs several processes of its own; with the
# default (spinning) waits, torch's two threads ran 1024^2 x 20 motion correction 3x slower
# next to busy processes than with yielding ones, which cost 10-25 % on an idle machine (the
# README's speed section). Must be set before torch loads OpenMP; a value the user sets wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
