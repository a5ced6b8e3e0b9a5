"""The ``causalscope`` command line: one entry point, one module per subcommand.

Subcommand modules live in :mod:`daemon.commands`; they import heavy libraries (torch, Ray)
inside ``run`` so that ``causalscope --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import TextIO

from causalscope.models.errors import CausalscopeError

# (subcommand, module under daemon.commands); the order is the order of --help.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("demo", "demo"),
    ("watch", "watch"),
    ("simulate", "simulate"),
    ("process", "process"),
    ("ctf", "ctf"),
    ("score", "score"),
    ("index", "index"),
    ("bench", "bench"),
    ("train-denoiser", "train_denoiser"),
    ("pick", "pick"),
    ("classes", "classes"),
    ("reconstruct", "reconstruct"),
    ("train-picker", "train_picker"),
    ("inspect", "inspect"),
    ("summary", "summary"),
    ("report", "report"),
    ("causal", "causal"),
    ("query", "query"),
    ("export", "export"),
    ("tui", "tui"),
    ("serve", "serve"),
    ("config", "config_cmd"),
)


def _load(module_name: str) -> ModuleType:
    return importlib.import_module(f"causalscope.daemon.commands.{module_name}")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="causalscope",
        description="Live cryo-EM processing with a causal model of image quality.",
    )
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="settings file (TOML); see `causalscope config default` for every setting",
    )
    parser.add_argument(
        "--preset",
        metavar="NAME",
        help="microscope preset applied before the settings file (`causalscope config presets`)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS:
        module = _load(module_name)
        doc = (module.__doc__ or name).strip()
        summary = doc.splitlines()[0]
        sub_parser = sub.add_parser(
            name,
            help=summary,
            description=doc,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub_parser)
        sub_parser.set_defaults(_module=module)
    return parser


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Our own warnings (e.g. a setting in its old table) as one line for the operator, without
    the source location Python adds; anything else as Python prints it."""
    if category.__module__.startswith("causalscope."):
        print(f"causalscope: warning: {message}", file=file or sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning


def print_error(error: CausalscopeError) -> None:
    """The user's error as the CLI reports it on stderr: its title, then what was wrong."""
    print(f"causalscope: error: {error.title}", file=sys.stderr)
    print(f"  {error.message}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit status (2 for a user error, never a traceback)."""
    warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    args._argv = list(sys.argv[1:] if argv is None else argv)  # for `watch --supervise`
    try:
        status: int = args._module.run(args)
    except CausalscopeError as error:
        print_error(error)
        return 2
    except KeyboardInterrupt:
        print("causalscope: interrupted", file=sys.stderr)
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
