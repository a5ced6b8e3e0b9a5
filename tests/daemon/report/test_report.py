"""`causalscope report`: one self-contained HTML page, checked against the session it reads and
opened in a real headless Chromium (no console errors, no requests, the plots drawn)."""

from __future__ import annotations

import re
from pathlib import Path

import duckdb
import numpy as np
import pytest

from causalscope.daemon.bench.report import make_report_session
from causalscope.daemon.cli import main
from causalscope.daemon.formats.png import read_png
from causalscope.daemon.report import render_report
from causalscope.daemon.report.data import N_WORST, THUMBNAIL_PX
from causalscope.daemon.store.summary import DISTRIBUTION_LABELS
from tests.daemon._browser import Page, find_chromium

N = 40


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 40-exposure session written through the store, and its report written by the CLI."""
    folder = tmp_path_factory.mktemp("report")
    session = folder / "s.duckdb"
    make_report_session(session, N, seed=1)
    out = folder / "report.html"
    assert main(["report", str(session), "-o", str(out)]) == 0
    return session, out


def test_the_report_shows_the_sessions_numbers(report: tuple[Path, Path]) -> None:
    session, out = report
    text = out.read_text()
    with duckdb.connect(str(session), read_only=True) as db:
        done, usable = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE gate_status != 'fail') FROM exposures "
            "WHERE state = 'done'"
        ).fetchone()
        top = db.execute("SELECT cause FROM latest_causes WHERE observed ORDER BY rank").fetchall()
        worst = db.execute(
            "SELECT subject FROM scores WHERE kind = 'exposure' AND recommendation != 'accept' "
            "ORDER BY hyperscore, subject LIMIT ?",
            [N_WORST],
        ).fetchall()
    verdict = re.search(r'<div class="verdict \w+" id="verdict">(.*?)</div>', text)
    assert verdict is not None
    assert f"{usable} of {done} exposures usable" in verdict.group(1)
    assert f"biggest cause of lost resolution: {top[0][0]}" in verdict.group(1)
    # one dot per exposure in each plot over time (every exposure has every value here)
    over = text.split('id="over-time"')[1].split('id="histograms"')[0]
    plots = over.split("<svg")[1:]
    assert len(plots) == len(DISTRIBUTION_LABELS)
    for plot in plots:
        assert plot.count("<circle") == done
    # the causes in the model's order, each with an error bar
    causes = text.split('id="causes"')[1].split('id="worst"')[0]
    listed = re.findall(r"<li><b>\d+\. (\w+)</b>", causes)
    assert listed == [c for (c,) in top]
    assert causes.count('class="error"') == len(top)
    # the worst exposures in the scores' order, each with its two thumbnails
    shown = re.findall(r'<div class="worst">.*?<b>(.*?)</b>', text)
    assert shown == [s for (s,) in worst]
    worst_section = text.split('id="worst"')[1].split('id="classes"')[0]
    assert worst_section.count('<img src="data:image/png;base64,') == 2 * len(worst)
    assert "Settings" in text and "bench" in text  # the run's command line


def test_the_report_shows_the_classes_and_the_map(report: tuple[Path, Path]) -> None:
    session, out = report
    text = out.read_text()
    with duckdb.connect(str(session), read_only=True) as db:
        maps = db.execute(
            "SELECT particles, resolution_angstrom FROM reconstructions ORDER BY version"
        ).fetchall()
        n_classes, selected = db.execute(
            "SELECT count(*), count(*) FILTER (WHERE selected) FROM classes "
            "WHERE version = (SELECT max(version) FROM class_sets)"
        ).fetchone()
    assert len(maps) >= 2
    classes = text.split('id="classes"')[1].split('id="maps"')[0]
    assert f"{selected} of {n_classes} classes selected" in classes
    assert classes.count("<tr><td") == n_classes
    assert 'alt="2D class averages"' in classes
    section = text.split('id="maps"')[1].split('id="settings"')[0]
    assert f"(FSC 0.143): {maps[-1][1]:.1f}" in section
    fsc, growth = section.split("<svg")[1:]
    assert 'class="threshold"' in fsc  # the 0.143 line
    assert growth.count("<circle") == len(maps)  # one point per update with a map
    assert f"({maps[-1][0]} particles)" in fsc


def test_thumbnails_are_binned_and_nothing_is_fetched(report: tuple[Path, Path]) -> None:
    import base64

    _, out = report
    text = out.read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    image = np.frombuffer(base64.b64decode(uris[0]), dtype=np.uint8)
    tmp = out.with_name("first.png")
    tmp.write_bytes(image.tobytes())
    assert max(read_png(tmp).shape) <= THUMBNAIL_PX
    # no external resource: no src/href to anything but inline data, no script at all
    assert not re.search(r'(src|href)="(?!data:)', text)
    assert "<script" not in text
    assert render_report(report[0]) == text  # the function the HTTP API calls


def test_the_report_renders_in_chromium(report: tuple[Path, Path], tmp_path: Path) -> None:
    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (Debian: apt-get install chromium)")
    _, out = report
    url = out.resolve().as_uri()
    with Page(executable, tmp_path / "profile") as page:
        page.open(url)
        drawn = page.evaluate(
            "Array.from(document.querySelectorAll('svg.plot')).map(s => "
            "[s.getBoundingClientRect().width, s.querySelectorAll('circle,rect,path').length])"
        )
        images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth])")
        page.screenshot(tmp_path / "report.png")
        requests = [r["request"]["url"] for r in page.named("Network.requestWillBeSent")]
        errors = [
            *page.named("Runtime.exceptionThrown"),
            *[c for c in page.named("Runtime.consoleAPICalled") if c["type"] == "error"],
            *[e for e in page.named("Log.entryAdded") if e["entry"]["level"] == "error"],
        ]
    assert errors == []
    assert [u for u in requests if not u.startswith("data:")] == [url]
    # 5 over time, 5 histograms, the causes, the FSC and resolution against particles: each
    # drawn with width and marks
    assert len(drawn) == 2 * len(DISTRIBUTION_LABELS) + 3
    assert all(width > 100 and marks > 3 for width, marks in drawn)
    assert images and all(done and width > 0 for done, width in images)
    shot = read_png(tmp_path / "report.png")
    assert shot.shape[0] > 2000 and shot.std() > 10  # a long page with pictures, not blank
