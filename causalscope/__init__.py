"""causalscope: live cryo-EM processing with a causal model of image quality.

The package's parts are the repository's top-level folders, installed under this name:
``causalscope.daemon`` (watcher, scheduler, store, CLI), ``causalscope.actors`` (Ray actors),
``causalscope.models`` (the numerics), ``causalscope.tui`` (the dashboard) and
``causalscope.config`` (settings).
"""
