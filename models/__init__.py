"""Pure physics and math for causalscope: CTF, motion, dose, the simulator and friends.

Nothing here touches files, Ray, DuckDB or the terminal. This package's ``__init__`` stays
free of torch imports so that light consumers (the dashboard, the config) can import
``models.records``, ``models.units`` and ``models.errors`` without paying for torch.
Import the numeric modules by their own names, e.g. ``from models.ctf import ctf_2d``.
"""
