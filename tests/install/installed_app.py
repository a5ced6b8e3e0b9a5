"""Run from an environment where causalscope is installed from its wheel (not from the source
tree): writes a finished one-run session, opens it in the dashboard with Textual's pilot and
checks that the dashboard's stylesheet, found as package data, was applied.

Usage: python installed_app.py WORKDIR   (prints 'dashboard ok' and exits 0, or raises)
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path


async def _drive(database: Path) -> None:
    from causalscope.config import load_settings
    from causalscope.tui.app import Dashboard, make_app
    from causalscope.tui.source import RecordedSource

    app = make_app(load_settings(None, None), RecordedSource.open(database))
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause(0.5)
        assert isinstance(app, Dashboard)
        stylesheet = Path(str(app.CSS_PATH))
        loaded = [str(key[0]) for key in app.stylesheet.source]
        assert any(Path(k).name == "app.tcss" for k in loaded), loaded
        assert "site-packages" in str(stylesheet), f"stylesheet from {stylesheet}"
    print("dashboard ok", stylesheet)


def main() -> None:
    import causalscope
    from causalscope.daemon.store import SessionStore

    if "site-packages" not in str(Path(causalscope.__file__).resolve()):
        raise SystemExit(f"causalscope imported from {causalscope.__file__}, not an install")
    workdir = Path(sys.argv[1])
    database = workdir / "session.duckdb"
    with SessionStore(database):
        pass
    asyncio.run(_drive(database))


if __name__ == "__main__":
    main()
