"""The long-running process: sources, scheduler, session store, file formats and the CLI."""
