"""The HTTP API on a real Ray Serve app over loopback, over a real running session.

One module-scoped folder of sessions serves every check: ``live`` (a LiveSession on Ray
processing the small simulated movies, with its PUB, query and control endpoints) and
``done`` (a finished session committed through the store, with running reconstructions of a
known truth). Every number the API returns is compared with the store's own reads
(``summarize``, the views) or with that truth.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import mrcfile
import numpy as np
import pytest
import requests

from causalscope.daemon.client import read_endpoints
from causalscope.daemon.live import LiveOptions, LiveSession
from causalscope.daemon.session import SessionPaths
from causalscope.daemon.store import SessionReader, summarize
from causalscope.daemon.store.summary import select_rows
from tests.daemon._recorder import Recorder, SessionThread
from tests.daemon.test_live import _copy_movies, _settings, small  # noqa: F401 (a fixture)
from tests.tui._reconstruction import fsc_curve, make_update, rh_resolution, write_gallery

pytestmark = pytest.mark.slow


@dataclass
class Served:
    url: str
    folder: Path
    live: SessionPaths
    done: SessionPaths
    token: str
    spare: list[list[Path]]
    spare_root: Path
    watch: Path
    reporter: Recorder
    session: LiveSession
    runner: SessionThread
    closed: bool = False

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return requests.get(self.url + path, timeout=30, **kwargs)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _finished_session(folder: Path) -> SessionPaths:
    """Twelve exposures (the TUI benchmark's records) and three reconstruction updates."""
    from causalscope.daemon.bench.tui import make_session
    from causalscope.daemon.store import SessionStore

    paths = SessionPaths.under(folder, "done")
    paths.root.mkdir(parents=True)
    make_session(paths.database, 12)
    with SessionStore(paths.database) as store:
        for version in (1, 2, 3):
            update = make_update(version, paths.root, {})
            store.commit_evaluation(update)
            write_gallery(update)
            if update.map is not None:
                with mrcfile.new(update.map.map_path) as mrc:
                    mrc.set_data(np.full((8, 8, 8), version, dtype=np.float32))
    return paths


def _causal_session(folder: Path) -> tuple[SessionPaths, Any]:
    """Twenty exposures drawn from the causal graph, learned by the session's model; the
    model's ranking after one more observation is the truth the API must report."""
    from causalscope.daemon.store import SessionStore
    from causalscope.models.causal import SessionCausalModel
    from causalscope.models.causal.synthetic import draw_synthetic_session
    from tests.daemon.store._records import make_record

    paths = SessionPaths.under(folder, "causal")
    paths.root.mkdir(parents=True)
    drawn = draw_synthetic_session(n_exposures=20, seed=8)
    model = SessionCausalModel()
    with SessionStore(paths.database) as store:
        for i in range(20):
            inputs = drawn.inputs(i, ssnr_bfactor_angstrom2=100.0)
            record = make_record(f"e{i:03d}").model_copy(update={"causal": inputs})
            store.commit_exposure(record, params_hash="p")
            store.commit_causal(model.observe(record.exposure_id, inputs))
    return paths, model


@pytest.fixture(scope="module")
def served(
    ray_cluster: Any,
    small: tuple[Path, list[dict[str, Any]]],  # noqa: F811 (the fixture imported above)
    tmp_path_factory: Any,
) -> Iterator[Served]:
    from causalscope.daemon.serve import start_api, stop_api

    microscope, _ = small
    base = tmp_path_factory.mktemp("serve")
    folder = base / "sessions"
    folder.mkdir()
    done = _finished_session(folder)
    _causal_session(folder)
    watch = base / "watch"
    _copy_movies(microscope, watch)
    movies = sorted(watch.rglob("*_fractions.tiff"))
    spare_root = base / "spare"
    spare: list[list[Path]] = []  # metadata first, then the movie, as EPU writes them
    for movie in movies[1:]:  # one movie now; the others arrive during the tests
        group = sorted(
            movie.parent.glob(movie.name.replace("_fractions.tiff", "*")),
            key=lambda p: p.suffix != ".xml",
        )
        spare.append([path.relative_to(watch) for path in group])
        for path in group:
            target = spare_root / path.relative_to(watch)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(path, target)
    any_port = "tcp://127.0.0.1:0"
    settings = _settings(
        microscope,
        store={"publish_address": any_port, "query_address": any_port, "control_address": any_port},
    )
    live = SessionPaths.under(folder, "live")
    reporter = Recorder()
    session = LiveSession(settings, live, LiveOptions(directory=watch), reporter=reporter)
    session.open()
    runner = SessionThread(session)
    url = None
    served: Served | None = None
    try:
        # the API first, then the session's loop: the order `watch --serve` keeps
        url = start_api(folder, port=_free_port())
        runner.start()
        deadline = time.monotonic() + 180
        while not reporter.commits and time.monotonic() < deadline:
            time.sleep(0.2)
        assert reporter.commits, (
            f"no commit in 180 s: {reporter.quarantines} {reporter.problems} {session.status()}\n"
            f"{runner.describe()}"
        )
        endpoints = read_endpoints(live.database)
        assert endpoints is not None and endpoints.token
        served = Served(
            url,
            folder,
            live,
            done,
            endpoints.token,
            spare,
            spare_root,
            watch,
            reporter,
            session,
            runner,
        )
        yield served
    finally:
        if url is not None:
            stop_api()
        if served is None or not served.closed:  # a test may have finished the session
            session.stop_event.set()
            if runner.is_alive():
                runner.join(timeout=60)
            session.close()


def _read_done(paths: SessionPaths, sql: str, params: list[Any] | None = None) -> list[Any]:
    with duckdb.connect(str(paths.database), read_only=True) as con:
        return con.execute(sql, params).fetchall()


def _sse_lines(stream: requests.Response) -> Iterator[str]:
    """The event stream's lines, as text."""
    for line in stream.iter_lines(decode_unicode=True):
        yield line if isinstance(line, str) else line.decode()


def _wait_commits(served: Served, n: int, timeout_s: float = 180) -> None:
    deadline = time.monotonic() + timeout_s
    while len(served.reporter.commits) < n and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(served.reporter.commits) >= n


def test_every_session_listed_and_summaries_equal_the_summary_command(served: Served) -> None:
    listed = {s["id"]: s for s in served.get("/sessions").json()}
    assert set(listed) == {"live", "done", "causal"}
    assert listed["live"]["live"] is True and listed["done"]["live"] is False
    assert listed["done"]["status"] is None
    status = listed["live"]["status"]
    assert status["session"] == "live" and status["done"] >= 1 and status["paused"] is False
    assert listed["done"]["counts"]["done"] == 12

    with SessionReader(served.live.database) as reader:
        assert reader.via_endpoint is not None  # the API's view must be the endpoint's too
        expected_live = json.loads(json.dumps(summarize(reader).to_dict()))
    got = served.get("/sessions/live").json()
    assert got["live"] is True and got["status"]["session"] == "live"
    assert got["summary"] == expected_live
    with duckdb.connect(str(served.done.database), read_only=True) as con:
        expected_done = json.loads(json.dumps(summarize(con).to_dict()))
    got = served.get("/sessions/done").json()
    assert got["live"] is False and got["summary"] == expected_done
    assert got["summary"]["reconstruction"]["version"] == 3


#: ``/sessions``' count -> the summary's field of the same count.
_SUMMARY_COUNTS = {
    "seen": "seen",
    "pending": "pending",
    "done": "done",
    "quarantined": "quarantined",
    "pass": "passed",
    "warn": "warned",
    "fail": "failed",
    "quarantine_records": "quarantine_records",
}


def _counts(source: Any) -> dict[str, int]:
    """The counts ``/sessions`` lists, from the summary (``summarize``) and, for the results
    and events, which the summary does not count, from the tables themselves."""
    summary = summarize(source).to_dict()
    counts = {name: int(summary[field]) for name, field in _SUMMARY_COUNTS.items()}
    for table in ("results", "events"):
        counts[table] = int(select_rows(source, f"SELECT count(*) FROM {table}")[1][0][0])
    return counts


def _listed_and_live_counts(served: Served) -> tuple[dict[str, Any], dict[str, int]]:
    """``/sessions`` and the live session's counts read just before and just after it, when
    both reads agree (nothing was committed in between: the listing then saw those counts)."""
    seen = []
    for _ in range(20):
        with SessionReader(served.live.database) as reader:
            before = _counts(reader)
        listed = {s["id"]: s for s in served.get("/sessions").json()}
        with SessionReader(served.live.database) as reader:
            after = _counts(reader)
        if before == after:
            return listed, before
        seen.append((before, after))
        time.sleep(0.5)
    raise AssertionError(f"the live session committed during each of 20 reads: {seen[-3:]}")


def test_session_counts_equal_the_summary(served: Served) -> None:
    listed, live = _listed_and_live_counts(served)
    assert listed["live"]["counts"] == live
    assert (
        live["done"] >= 1 and live["seen"] == live["done"] + live["pending"] + live["quarantined"]
    )
    for name in ("done", "causal"):
        database = served.folder / name / f"{name}.duckdb"
        with duckdb.connect(str(database), read_only=True) as con:
            assert listed[name]["counts"] == _counts(con), name
    assert listed["done"]["counts"]["done"] == 12 and listed["causal"]["counts"]["done"] == 20


def test_exposures_are_paged_and_filtered_with_their_measurements(served: Served) -> None:
    rows = _read_done(
        served.done,
        "SELECT e.exposure_id, e.gate_status, e.seen_at, c.defocus_angstrom, c.ice_thickness_nm, "
        "m.total_drift_px FROM exposures e JOIN ctf c USING (exposure_id) "
        "JOIN motion m USING (exposure_id) ORDER BY e.seen_at, e.exposure_id",
    )
    pages = [served.get(f"/sessions/done/exposures?page={p}&page_size=5").json() for p in range(3)]
    assert [len(p["items"]) for p in pages] == [5, 5, 2] and pages[0]["total"] == 12
    items = [item for page in pages for item in page["items"]]
    assert [i["exposure_id"] for i in items] == [r[0] for r in rows]
    for item, row in zip(items, rows, strict=True):
        assert item["ctf"]["defocus_angstrom"] == pytest.approx(row[3])
        assert item["ctf"]["ice_thickness_nm"] == pytest.approx(row[4])
        assert item["motion"]["total_drift_px"] == pytest.approx(row[5])
        assert item["score"] is None  # these records were never scored
    failed = served.get("/sessions/done/exposures?status=fail").json()
    assert [i["exposure_id"] for i in failed["items"]] == [r[0] for r in rows if r[1] == "fail"]
    middle = rows[4][2]
    since = served.get(f"/sessions/done/exposures?since={middle.isoformat()}").json()
    assert since["total"] == sum(r[2] >= middle for r in rows)
    until = served.get(f"/sessions/done/exposures?until={middle.isoformat()}Z").json()
    assert until["total"] == sum(r[2] < middle for r in rows)

    # the live session's exposure: its row through the endpoint, its images from its folder
    exposure_id = served.reporter.commits[0][0]
    page = served.get("/sessions/live/exposures?status=done").json()
    assert exposure_id in {i["exposure_id"] for i in page["items"]}
    one = served.get(f"/sessions/live/exposures/{exposure_id}").json()
    with SessionReader(served.live.database) as reader:
        ctf = reader.select(
            "SELECT defocus_u_angstrom, ice_thickness_nm FROM ctf WHERE exposure_id = ?",
            [exposure_id],
        ).rows[0]
        outputs = json.loads(
            reader.select(
                "SELECT outputs FROM exposures WHERE exposure_id = ?", [exposure_id]
            ).rows[0][0]
        )
        picks = reader.select(
            "SELECT n_particles FROM picking WHERE exposure_id = ?", [exposure_id]
        ).rows
    assert one["ctf"]["defocus_u_angstrom"] == pytest.approx(ctf[0])
    assert one["ctf"]["ice_thickness_nm"] == pytest.approx(ctf[1])
    assert len(one["motion"]["shifts_px"]) == one["n_frames"] == 8
    assert (one["picking"] or {}).get("n_particles") == (picks[0][0] if picks else None)
    assert one["causal"] is None  # these small movies fail the gate: nothing to learn from
    for kind, key in (("micrograph", "thumbnail"), ("power_spectrum", "power_spectrum_thumbnail")):
        image = served.get(f"/sessions/live/exposures/{exposure_id}/{kind}.png")
        assert image.headers["content-type"] == "image/png"
        assert image.content == Path(outputs[key]).read_bytes()
    # failed by the gate, so never picked: its picks picture is a clear 404, not a 500
    assert "picks_thumbnail" not in outputs
    missing = served.get(f"/sessions/live/exposures/{exposure_id}/picks.png")
    assert missing.status_code == 404
    assert "no picks of exposure" in missing.json()["detail"]


def test_classes_and_reconstructions(served: Served) -> None:
    updates = served.get("/sessions/done/reconstructions").json()["updates"]
    assert [u["version"] for u in updates] == [1, 2, 3]
    assert updates[0]["map"] is None
    for update in updates[1:]:
        assert update["map"]["resolution_angstrom"] == pytest.approx(
            rh_resolution(update["particles"])
        )
        assert update["forecast"]["resolution_at_double_angstrom"] == pytest.approx(
            rh_resolution(2 * update["particles"])
        )
    latest = served.get("/sessions/done/reconstructions/latest").json()
    resolution = rh_resolution(updates[-1]["particles"])
    assert latest["version"] == 3
    assert latest["map"]["fsc_masked"] == pytest.approx(list(fsc_curve(resolution)))
    download = served.get("/sessions/done/reconstructions/latest/map.mrc")
    assert download.content == Path(latest["map"]["map_path"]).read_bytes()
    classes = served.get("/sessions/done/classes").json()
    n_classes = classes["class_set"]["n_classes"]
    assert classes["version"] == 3 and len(classes["class_set"]["classes"]) == n_classes == 12
    assert (
        sum(c["particles"] for c in classes["class_set"]["classes"])
        == (classes["class_set"]["particles"])
    )
    gallery = served.get("/sessions/done/classes/gallery.png")
    assert gallery.content == Path(classes["class_set"]["gallery_path"]).read_bytes()
    # the live session has no map yet: a clear 404, not an empty 200
    missing = served.get("/sessions/live/reconstructions/latest")
    assert missing.status_code == 404 and "no 3D map" in missing.json()["detail"]


def test_the_report_is_served_for_finished_and_running_sessions(served: Served) -> None:
    """A finished session's page is the one ``causalscope report`` writes; a running one's is
    read through its query endpoint and counts what the session has done."""
    from causalscope.daemon.report import render_report

    done = served.get("/sessions/done/report")
    assert done.status_code == 200 and done.headers["content-type"].startswith("text/html")
    assert done.text == render_report(served.done.database)
    live = served.get("/sessions/live/report")
    assert live.status_code == 200 and live.text.startswith("<!DOCTYPE html>")
    (n_done,) = served.get(
        "/sessions/live/sql", params={"q": "SELECT count(*) FROM exposures WHERE state = 'done'"}
    ).json()["rows"][0]
    assert f"of {n_done} exposure" in live.text, live.text[:2000]


def test_sql_runs_one_bounded_select_and_refuses_the_rest(served: Served) -> None:
    counted = served.get("/sessions/done/sql", params={"q": "SELECT count(*) AS n FROM ctf"})
    assert counted.json()["rows"] == [[12]]
    live = served.get("/sessions/live/sql", params={"q": "SELECT * FROM range(50)", "limit": 10})
    assert live.json()["truncated"] is True and len(live.json()["rows"]) == 10
    refused = {
        "DELETE FROM exposures": "DELETE",
        "DROP TABLE exposures": "DROP",
        "ATTACH 'other.duckdb' AS o": "ATTACH",
        "COPY exposures TO 'out.csv'": "COPY",
        "SELECT 1; DROP TABLE exposures": "2 statements",
        "SET threads = 1": "SET",
        "SELECT " + " + ".join(["1"] * 2500): "characters",
    }
    for session in ("live", "done"):
        for q, reason in refused.items():
            answer = served.get(f"/sessions/{session}/sql", params={"q": q})
            assert answer.status_code == 400, (q, answer.text)
            assert reason in answer.json()["detail"], (q, answer.json())
    assert _read_done(served.done, "SELECT count(*) FROM exposures") == [(12,)]
    # no file can be read: the connection has no file access
    files = served.get("/sessions/done/sql", params={"q": "SELECT * FROM read_csv('/etc/hosts')"})
    assert files.status_code == 400
    slow = served.get(
        "/sessions/done/sql", params={"q": "SELECT count(*) FROM range(1000000000000)"}
    )
    assert slow.status_code == 400 and slow.json()["title"] == "Query timed out"


def test_the_event_stream_delivers_a_new_exposure_within_a_second(served: Served) -> None:
    already = len(served.reporter.commits)
    stream = requests.get(
        served.url + "/sessions/live/events",
        params={"topics": "exposure"},
        stream=True,
        timeout=30,
    )
    assert stream.headers["content-type"].startswith("text/event-stream")
    lines = _sse_lines(stream)
    assert next(lines) == "event: ready"
    group = served.spare.pop(0)
    for relative in group:
        shutil.copy(served.spare_root / relative, served.watch / relative)
    movie = group[-1]
    event: dict[str, Any] | None = None
    name = ""
    deadline = time.monotonic() + 180
    for line in lines:
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: ") and name == "exposure":
            received = dt.datetime.now(dt.UTC).replace(tzinfo=None)
            event = json.loads(line[len("data: ") :])
            if event["exposure_id"] in movie.name and event["state"] != "seen":
                break
        assert time.monotonic() < deadline, "no exposure event within 180 s"
    stream.close()
    assert event is not None and event["state"] == "done"
    _wait_commits(served, already + 1)
    committed = dt.datetime.fromisoformat(event["done_at"])
    delay_s = (received - committed).total_seconds()
    assert 0 <= delay_s < 1.0, delay_s


def test_causes_have_error_bars(served: Served) -> None:
    from causalscope.daemon.client.views import CAUSES_SQL

    database = served.folder / "causal" / "causal.duckdb"
    with duckdb.connect(str(database), read_only=True) as con:
        cursor = con.execute(CAUSES_SQL)
        names = [d[0] for d in cursor.description]
        expected = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        verdict = con.execute(
            "SELECT predicted_loss_angstrom FROM causal WHERE exposure_id = 'e019'"
        ).fetchone()
    assert verdict is not None
    causes = served.get("/sessions/causal/causes").json()
    assert causes["exposures"] == 20 and len(causes["causes"]) == len(expected) >= 5
    assert [c["cause"] for c in causes["causes"]] == [c["cause"] for c in expected]
    for got, want in zip(causes["causes"], expected, strict=True):
        assert got["mean_angstrom"] == pytest.approx(want["mean_angstrom"])
        assert got["sd_angstrom"] == pytest.approx(want["sd_angstrom"])  # the error bar
        assert got["sd_angstrom"] > 0
    one = served.get("/sessions/causal/exposures/e019").json()["causal"]
    assert one["predicted_loss_angstrom"] == pytest.approx(verdict[0])
    assert sum(s["share_angstrom"] for s in one["shares"]) == pytest.approx(verdict[0])


def _actions(exposure_id: str) -> list[tuple[str, str, dict[str, Any] | None]]:
    """Every action that changes a session: (method, path under the session, body)."""
    return [
        ("post", "/labels", {"exposure_id": exposure_id, "label": "reject"}),
        ("post", "/class_labels", {"class_index": 3, "label": "select"}),
        ("post", "/pause", None),
        ("post", "/resume", None),
        ("put", "/thresholds/ice_thickness_nm", {"value": 55}),
    ]


def _session_state(served: Served) -> tuple[Any, ...]:
    """What the actions change: paused, the thresholds, the labels and class labels stored."""
    status = served.get("/sessions/live").json()["status"]
    with SessionReader(served.live.database) as reader:
        labels = reader.select("SELECT exposure_id, label FROM labels ORDER BY id").rows
        classes = reader.select("SELECT class_index, label FROM class_labels ORDER BY id").rows
    return (
        status["paused"],
        status["thresholds"],
        [tuple(r) for r in labels],
        [tuple(r) for r in classes],
    )


def _refused(served: Served, method: str, path: str, body: Any) -> None:
    """Without the session's token 401, with a wrong one 403, each with a reason."""
    attempts = {
        401: [{}, {"X-Session-Token": ""}, {"Authorization": f"Bearer {served.token}"}],
        403: [{"X-Session-Token": "guess"}, {"X-Session-Token": served.token[:-1] + "?"}],
    }
    for code, headers in ((c, h) for c, hs in attempts.items() for h in hs):
        answer = requests.request(
            method, served.url + "/sessions/live" + path, json=body, headers=headers, timeout=10
        )
        assert answer.status_code == code, (method, path, headers, answer.text)
        reason = answer.json()["detail"]
        assert ("X-Session-Token" if code == 401 else "wrong session token") in reason


def test_actions_need_the_session_token(served: Served) -> None:
    # _actions lists every route that changes a session
    paths = served.get("/openapi.json").json()["paths"]
    changing = {
        (method, path.removeprefix("/sessions/{session_id}"))
        for path, operations in paths.items()
        for method in operations
        if method in ("post", "put", "patch", "delete")
    }
    exposure_id = served.reporter.commits[0][0]
    actions = _actions(exposure_id)
    listed = {(m, re.sub(r"/thresholds/.*", "/thresholds/{name}", p)) for m, p, _ in actions}
    assert changing == listed
    before = _session_state(served)
    paused, thresholds, labels, class_labels = before
    assert paused is False and thresholds["ice_thickness_nm"] != 55 and not labels
    for method, path, body in actions:
        _refused(served, method, path, body)
    assert _session_state(served) == before  # the refused requests changed nothing

    token = {"X-Session-Token": served.token}
    url = served.url + "/sessions/live"
    assert requests.post(url + "/pause", headers=token, timeout=10).json() == {"paused": True}
    assert served.get("/sessions/live").json()["status"]["paused"] is True
    _refused(served, "post", "/resume", None)  # a refused resume leaves it paused
    assert served.get("/sessions/live").json()["status"]["paused"] is True
    assert requests.post(url + "/resume", headers=token, timeout=10).json() == {"paused": False}
    body = {"exposure_id": exposure_id, "label": "reject"}
    assert requests.post(url + "/labels", json=body, headers=token, timeout=10).ok
    labels = served.get(f"/sessions/live/exposures/{exposure_id}").json()["labels"]
    assert [entry["label"] for entry in labels] == ["reject"]
    bad = requests.post(url + "/labels", json={**body, "label": "maybe"}, headers=token, timeout=10)
    assert bad.status_code == 422 and "label" in bad.json()["detail"]
    put = requests.put(
        url + "/thresholds/ice_thickness_nm", json={"value": 55}, headers=token, timeout=10
    )
    assert put.json()["thresholds"]["ice_thickness_nm"] == 55
    assert served.get("/sessions/live").json()["status"]["thresholds"]["ice_thickness_nm"] == 55
    assert _session_state(served)[3] == class_labels  # no class labelled by any of these
    finished = requests.post(served.url + "/sessions/done/pause", headers=token, timeout=10)
    assert finished.status_code == 409 and "not running" in finished.json()["detail"]


def test_a_class_label_names_a_class_of_the_session(served: Served) -> None:
    """With classes, a label of one is stored; a label of a class the session does not have
    (none yet, or past the last) is a 4xx that names it, and nothing is stored."""
    token = {"X-Session-Token": served.token}
    url = served.url + "/sessions/live/class_labels"
    class_set = served.get("/sessions/live/classes").json()["class_set"]
    n_classes = 0 if class_set is None else int(class_set["n_classes"])
    stored = _session_state(served)[3]
    if n_classes:
        answer = requests.post(
            url, json={"class_index": 0, "label": "reject"}, headers=token, timeout=10
        )
        assert answer.json() == {"class_index": 0, "label": "reject"}
        assert _session_state(served)[3] == [*stored, (0, "reject")]
        stored = _session_state(served)[3]
    missing = n_classes + 2
    answer = requests.post(
        url, json={"class_index": missing, "label": "select"}, headers=token, timeout=10
    )
    assert 400 <= answer.status_code < 500, answer.text
    detail = answer.json()["detail"]
    assert "class" in detail and str(missing) in detail, detail
    assert _session_state(served)[3] == stored


def test_bad_input_is_a_clear_4xx(served: Served) -> None:
    cases = {
        "/sessions/nope": (404, "no session 'nope'"),
        "/sessions/.hidden": (400, "not a valid session id"),
        "/sessions/done/exposures?page=-1": (422, "page"),
        "/sessions/done/exposures?page_size=1000000": (422, "page_size"),
        "/sessions/done/exposures?status=bogus": (422, "status"),
        "/sessions/done/exposures?since=yesterday": (422, "since"),
        "/sessions/done/exposures/..%2F..%2Fdone.duckdb": (404, "no such resource"),
        "/sessions/done/exposures/.. /micrograph.png": (400, "not a valid exposure id"),
        "/sessions/done/exposures/FoilHole_1": (404, "no exposure 'FoilHole_1'"),
        "/sessions/done/sql?q=SELECT%201&limit=100000000": (400, "limit"),
        "/sessions/done/sql?q=": (400, "empty"),
        "/sessions/live/events?topics=exposure,secrets": (400, "unknown topics"),
        "/sessions/done/events": (409, "not running"),
    }
    spec = served.get("/openapi.json").json()
    assert {"/sessions/{session_id}/sql", "/sessions/{session_id}/events", "/metrics"} <= set(
        spec["paths"]
    )
    docs = served.get("/docs")  # the reference, whole in one page (opens offline)
    assert docs.status_code == 200 and docs.headers["content-type"].startswith("text/html")
    assert "<script" not in docs.text and "/sessions/{session_id}/sql" in docs.text
    swagger = served.get("/docs/swagger")  # Swagger UI, made from the spec it names
    assert swagger.status_code == 200 and "swagger-ui" in swagger.text.lower()
    named = re.search(r"url: ?['\"]([^'\"]+)['\"]", swagger.text)
    assert named is not None and named.group(1) == "/openapi.json", docs.text[:2000]
    assert served.get(named.group(1)).json() == spec
    for path, (code, words) in cases.items():
        answer = served.get(path)
        assert answer.status_code == code, (path, answer.status_code, answer.text)
        body = answer.json()
        assert body["title"] and words in body["detail"], (path, body)


def test_the_docs_open_in_a_browser_without_the_internet(served: Served, tmp_path: Path) -> None:
    """``/docs`` in a real headless Chromium: drawn with every operation, nothing asked of
    any other address, no console error."""
    from tests.daemon._browser import Page, find_chromium

    executable = find_chromium()
    if executable is None:
        pytest.skip("no Chromium found (Debian: apt-get install chromium)")
    url = served.url + "/docs"
    with Page(executable, tmp_path / "profile") as page:
        page.open(url)
        operations = page.evaluate("document.querySelectorAll('div.op').length")
        height = page.evaluate("document.body.scrollHeight")
        requests_made = [r["request"]["url"] for r in page.named("Network.requestWillBeSent")]
        errors = [
            *page.named("Runtime.exceptionThrown"),
            *[e for e in page.named("Log.entryAdded") if e["entry"]["level"] == "error"],
        ]
    spec = served.get("/openapi.json").json()
    expected = sum(
        method in ("get", "post", "put", "patch", "delete")
        for item in spec["paths"].values()
        for method in item
    )
    assert operations == expected and height > 2000
    assert requests_made == [url] and errors == []  # the page itself, nothing else


def test_metrics_are_the_sessions_numbers(served: Served) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    text = served.get("/metrics").text
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted(labels.items())))]

    counts = _read_done(
        served.done,
        "SELECT count(*) FILTER (WHERE gate_status = 'fail'), count(*), count(latency_s) "
        "FROM exposures WHERE state = 'done'",
    )[0]
    assert value("causalscope_exposures", session="done", status="fail") == counts[0]
    assert value("causalscope_exposures", session="done", status="done") == counts[1] == 12
    assert value("causalscope_exposure_latency_seconds_count", session="done") == counts[2]
    assert value("causalscope_resolution_angstrom", session="done") == pytest.approx(
        rh_resolution(make_update(3, served.done.root, {}).particles)
    )
    assert value("causalscope_session_live", session="live") == 1
    with SessionReader(served.live.database) as reader:
        done, timed, particles = reader.select(
            "SELECT count(*), count(latency_s), (SELECT coalesce(sum(n_particles), 0) "
            "FROM picking) FROM exposures WHERE state = 'done'"
        ).rows[0]
    assert value("causalscope_exposures", session="live", status="done") == done
    assert value("causalscope_exposure_latency_seconds_count", session="live") == timed
    assert value("causalscope_particles", session="live") == particles
    assert value("causalscope_workers", session="live") >= 1
    assert not math.isnan(value("causalscope_queue_exposures", session="live"))
    # the rates over the last ten minutes: exposures were finished since the session started
    assert value("causalscope_processing_per_minute", session="live") > 0
    assert 0 <= value("causalscope_acquisition_per_minute", session="live") < math.inf


def test_a_finished_session_ends_its_stream_and_is_read_from_its_file(served: Served) -> None:
    stream = requests.get(served.url + "/sessions/live/events", stream=True, timeout=30)
    lines = _sse_lines(stream)
    assert next(lines) == "event: ready"
    served.session.stop_event.set()
    served.runner.join(timeout=60)
    served.session.close()
    served.closed = True
    names = []
    deadline = time.monotonic() + 30
    for line in lines:  # until the server closes the stream
        if line.startswith("event: "):
            names.append(line)
        assert time.monotonic() < deadline, f"the stream did not end: {names}"
    assert names[-1] == "event: end"
    listed = {s["id"]: s["live"] for s in served.get("/sessions").json()}
    assert listed == {"causal": False, "done": False, "live": False}
    with duckdb.connect(str(served.live.database), read_only=True) as con:
        expected = json.loads(json.dumps(summarize(con).to_dict()))
    time.sleep(1.1)  # past the summary the API computed while the session ran
    got = served.get("/sessions/live").json()
    assert got["live"] is False and got["summary"] == expected
    with duckdb.connect(str(served.live.database), read_only=True) as con:
        counts = _counts(con)
    listed_counts = {s["id"]: s["counts"] for s in served.get("/sessions").json()}
    assert listed_counts["live"] == counts and counts["pending"] == 0
    token = {"X-Session-Token": served.token}
    stopped = requests.post(served.url + "/sessions/live/pause", headers=token, timeout=10)
    assert stopped.status_code == 409


def test_the_public_bind_refusal_names_what_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal's advice works: its flag is the command's, its setting is a real one, its
    environment variable sets that setting, and following either lets the same bind pass."""
    import argparse

    from causalscope.config import load_settings
    from causalscope.daemon.commands.serve import add_serve_arguments, serve_settings
    from causalscope.daemon.serve import check_bind
    from causalscope.models.errors import InputError

    with pytest.raises(InputError) as refused:
        check_bind("0.0.0.0", None)
    advice = refused.value.message
    assert "--token-file" in advice and "serve.token_file" in advice
    setting = re.findall(r"\bserve\.(\w+)", advice)
    variable = re.findall(r"\bCAUSALSCOPE_\w+", advice)
    assert setting == ["token_file"] and variable == ["CAUSALSCOPE_SERVE__TOKEN_FILE"]
    token_file = tmp_path / "token"
    token_file.write_text("a-token-of-the-facility\n")
    parser = argparse.ArgumentParser()
    add_serve_arguments(parser)
    by_flag = parser.parse_args(["--host", "0.0.0.0", "--token-file", str(token_file)])
    assert serve_settings(by_flag, load_settings())[2] == "a-token-of-the-facility"
    monkeypatch.setenv(variable[0], str(token_file))
    settings = load_settings()
    assert getattr(settings.serve, setting[0]) == token_file
    by_setting = parser.parse_args(["--host", "0.0.0.0"])
    assert serve_settings(by_setting, settings)[2] == "a-token-of-the-facility"


def test_a_token_guards_the_api_and_a_public_bind_needs_one(served: Served) -> None:
    from causalscope.daemon.cli import main
    from causalscope.daemon.serve import start_api
    from causalscope.models.errors import InputError

    with pytest.raises(InputError, match="token"):
        start_api(served.folder, host="0.0.0.0", port=_free_port())
    assert main(["serve", str(served.folder), "--host", "0.0.0.0"]) == 2
    # the same app again, with a token: the reads need it, /health does not
    port = int(served.url.rsplit(":", 1)[1])
    token = "s3cret-token-of-the-facility"
    start_api(served.folder, port=port, token=token)
    assert served.get("/sessions").status_code == 401
    health = served.get("/health")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "sessions_dir": str(served.folder)}
    auth = {"Authorization": f"Bearer {token}"}
    assert [s["id"] for s in served.get("/sessions", headers=auth).json()] == [
        "causal",
        "done",
        "live",
    ]
