"""Subcommands of the ``causalscope`` CLI.

Each module here is one subcommand. Its module docstring is the subcommand's help (the first
line is the one-line summary) and it defines::

    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...

``run`` returns the process exit status. User mistakes raise
:class:`models.errors.CausalscopeError`; the CLI prints them without a traceback.
"""
