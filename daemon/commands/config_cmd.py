"""Show, check and write settings.

Actions:
  default         print every setting with its default and description (a settings file to edit)
  show [FILE] [--json]
                  print the resolved settings (after --preset, --config or FILE, and
                  CAUSALSCOPE_ variables) as TOML or JSON
  presets         list the microscope presets
  check FILE      validate a settings file (with --preset if given) and print "ok"

Load order, later wins: defaults < --preset < --config FILE < environment variables
CAUSALSCOPE_<TABLE>__<SETTING> (e.g. CAUSALSCOPE_MICROSCOPE__VOLTAGE_KV=200).
"""

from __future__ import annotations

import argparse
import json

from causalscope.models.errors import InputError

ACTIONS = ("default", "show", "presets", "check")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the action, the file for ``check`` and ``--json`` for ``show``."""
    parser.add_argument("action", choices=ACTIONS, help="what to do (see above)")
    parser.add_argument(
        "file", nargs="?", metavar="FILE", help="settings file for `check` and `show` (or --config)"
    )
    parser.add_argument("--json", action="store_true", help="`show`: print JSON, not TOML")


def run(args: argparse.Namespace) -> int:
    """Carry out the action; settings errors propagate as ConfigError."""
    from causalscope import config

    preset: str | None = getattr(args, "preset", None)
    config_file: str | None = args.file or getattr(args, "config", None)
    if args.action == "default":
        print(config.default_toml(), end="")
    elif args.action == "presets":
        names = config.list_presets()
        width = max(len(name) for name in names)
        for name in names:
            print(f"{name:<{width}}  {config.preset_description(name)}")
    elif args.action == "show":
        settings = config.load_settings(config_file, preset=preset)
        if args.json:
            print(json.dumps(config.settings_to_dict(settings), indent=2))
        else:
            print(config.render_toml(settings, comments=False), end="")
    else:
        if config_file is None:
            raise InputError("No file to check", "usage: causalscope config check FILE")
        config.load_settings(config_file, preset=preset)
        print("ok")
    return 0
