"""Causal-graph export: posterior annotation, GraphML round trip, and the SVG picture."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from causalscope.daemon.formats.graph_export import (
    annotate_posterior,
    render_svg,
    write_graphml,
    write_svg,
)
from causalscope.models.causal import FACTORS, OUTCOME, causal_graph
from causalscope.models.errors import InputError

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parents[3]

# Posterior of a few weights, intercept first as BayesianLinearModel.names has it.
NAMES = ["intercept", "ice_thickness", "dose", "drift"]
MEAN = [9.0, 3.25, -1.5, 0.4]
SD = [1.0, 0.125, 5.0, 0.05]
CONVERGED = [True, True, False, True]


def annotated() -> nx.DiGraph:
    return annotate_posterior(causal_graph(), NAMES, MEAN, SD, converged=CONVERGED)


def effect_of(factor: str) -> str:
    return next(f.effect for f in FACTORS if f.name == factor)


# --- annotate_posterior -------------------------------------------------------------------


def test_annotate_puts_posterior_on_named_edges_of_a_copy() -> None:
    graph = causal_graph()
    out = annotate_posterior(graph, NAMES, MEAN, SD, converged=CONVERGED)
    for name, m, s, ok in zip(NAMES[1:], MEAN[1:], SD[1:], CONVERGED[1:], strict=True):
        data = out.edges[name, effect_of(name)]
        assert data["posterior_mean"] == m
        assert data["posterior_sd"] == s
        assert data["converged"] is ok
        assert data["prior_mean"] == graph.edges[name, effect_of(name)]["prior_mean"]
    unnamed = [f for f in FACTORS if f.name not in NAMES]
    assert unnamed
    for f in unnamed:
        assert "posterior_mean" not in out.edges[f.name, f.effect]
    # the input is untouched and the copy has the same structure
    assert not any("posterior_mean" in d for _, _, d in graph.edges(data=True))
    assert list(out.nodes) == list(graph.nodes)
    assert list(out.edges) == list(graph.edges)


def test_annotate_accepts_arrays_and_derives_convergence_from_tolerance() -> None:
    graph = causal_graph()
    tol = graph.edges["drift", "envelope_bfactor"]["tolerance"]
    out = annotate_posterior(
        graph,
        ["drift", "defocus"],
        np.array([0.2, 1.0]),
        np.array([0.5 * tol, 10.0 * graph.edges["defocus", "ctf_aberration_loss"]["tolerance"]]),
    )
    assert out.edges["drift", "envelope_bfactor"]["converged"] is True
    assert out.edges["defocus", "ctf_aberration_loss"]["converged"] is False
    assert type(out.edges["drift", "envelope_bfactor"]["posterior_mean"]) is float


@pytest.mark.parametrize("bad", ["ice_thicknes", "shot_noise", OUTCOME])
def test_annotate_rejects_unknown_name(bad: str) -> None:
    with pytest.raises(ValueError, match=repr(bad)):
        annotate_posterior(causal_graph(), ["ice_thickness", bad], [1.0, 2.0], [0.1, 0.2])


def test_annotate_rejects_mismatched_lengths_and_bad_values() -> None:
    graph = causal_graph()
    with pytest.raises(ValueError, match="lengths"):
        annotate_posterior(graph, ["dose", "drift"], [1.0], [0.1, 0.2])
    with pytest.raises(ValueError, match="converged"):
        annotate_posterior(graph, ["dose"], [1.0], [0.1], converged=[True, False])
    with pytest.raises(ValueError, match="twice"):
        annotate_posterior(graph, ["dose", "dose"], [1.0, 1.0], [0.1, 0.1])
    with pytest.raises(ValueError, match="sd"):
        annotate_posterior(graph, ["dose"], [1.0], [-0.1])
    with pytest.raises(ValueError, match="finite"):
        annotate_posterior(graph, ["dose"], [math.nan], [0.1])


# --- GraphML --------------------------------------------------------------------------------


def test_graphml_round_trip(tmp_path: Path) -> None:
    graph = annotated()
    path = write_graphml(graph, tmp_path / "causal.graphml")
    assert path == tmp_path / "causal.graphml"
    assert [p.name for p in tmp_path.iterdir()] == ["causal.graphml"]  # no temporary left
    back = nx.read_graphml(path)
    assert back.is_directed()
    assert set(back.nodes) == set(graph.nodes)
    assert set(back.edges) == set(graph.edges)
    for node, data in graph.nodes(data=True):
        assert back.nodes[node] == data
    for u, v, data in graph.edges(data=True):
        assert back.edges[u, v] == data, (u, v)
    ice = back.edges["ice_thickness", effect_of("ice_thickness")]
    assert ice["posterior_mean"] == 3.25
    assert ice["posterior_sd"] == 0.125
    assert ice["converged"] is True
    assert back.edges["dose", "shot_noise"]["converged"] is False
    assert back.edges["dose", "shot_noise"]["posterior_mean"] == -1.5


def test_graphml_scalars_none_and_non_finite(tmp_path: Path) -> None:
    graph = causal_graph()
    graph.graph["session"] = "s42 <&>"
    graph.nodes["dose"]["n_seen"] = np.int64(7)
    graph.nodes["dose"]["note"] = None
    e = graph.edges["dose", "shot_noise"]
    e["tolerance"] = math.inf
    e["lower"] = -math.inf
    e["spread"] = math.nan
    e["scale"] = np.float32(0.5)
    path = write_graphml(graph, tmp_path / "g.graphml")
    text = path.read_text(encoding="utf-8")
    assert ">Infinity<" in text and ">-Infinity<" in text and ">NaN<" in text
    assert ">inf<" not in text and ">nan<" not in text
    back = nx.read_graphml(path)
    assert back.graph["session"] == "s42 <&>"
    assert back.nodes["dose"]["n_seen"] == 7 and type(back.nodes["dose"]["n_seen"]) is int
    assert "note" not in back.nodes["dose"]
    b = back.edges["dose", "shot_noise"]
    assert b["tolerance"] == math.inf
    assert b["lower"] == -math.inf
    assert math.isnan(b["spread"])
    assert b["scale"] == 0.5
    # other edges keep finite tolerances under the same (double) key
    assert back.edges["drift", "envelope_bfactor"]["tolerance"] == pytest.approx(0.5 / 6.0)


def test_graphml_rejects_non_scalar(tmp_path: Path) -> None:
    graph = causal_graph()
    graph.nodes["dose"]["range"] = [1, 2]
    with pytest.raises(TypeError, match="range"):
        write_graphml(graph, tmp_path / "g.graphml")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("writer", [write_graphml, write_svg])
def test_missing_folder_raises_naming_path(tmp_path: Path, writer: object) -> None:
    path = tmp_path / "absent" / "causal.out"
    with pytest.raises(InputError, match="absent") as info:
        writer(causal_graph(), path)  # type: ignore[operator]
    assert str(path) in str(info.value)
    assert info.value.path == path
    assert not (tmp_path / "absent").exists()


# --- SVG --------------------------------------------------------------------------------------


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode("utf-8"))


def groups(root: ET.Element, cls: str) -> list[ET.Element]:
    return [g for g in root.iter(f"{SVG}g") if cls in g.get("class", "").split()]


def edge_group(root: ET.Element, u: str, v: str) -> ET.Element:
    found = [
        g
        for g in groups(root, "edge")
        if (g.findtext(f"{SVG}title") or "").startswith(f"{u} → {v}")
    ]
    assert len(found) == 1, (u, v)
    return found[0]


def test_svg_has_one_box_per_node_and_one_path_per_edge() -> None:
    graph = annotated()
    root = parse(render_svg(graph, title="session 42"))
    assert root.tag == f"{SVG}svg"
    nodes = groups(root, "node")
    assert sorted(g.findtext(f"{SVG}title") or "" for g in nodes) == sorted(graph.nodes)
    assert all(len(g.findall(f"{SVG}rect")) == 1 for g in nodes)
    assert len(list(root.iter(f"{SVG}rect"))) == graph.number_of_nodes()
    labels = {g.findtext(f"{SVG}text") for g in nodes}
    assert "ice thickness" in labels and "ctf fit resolution" in labels
    # every edge is exactly one path, and no other paths are drawn
    assert len(list(root.iter(f"{SVG}path"))) == graph.number_of_edges()
    for u, v in graph.edges:
        g = edge_group(root, u, v)
        (path,) = g.findall(f"{SVG}path")
        assert path.get("marker-end", "").startswith("url(#arrow-")
        assert path.get("d", "").startswith("M ")


def test_svg_labels_colours_widths_and_dashes() -> None:
    root = parse(render_svg(annotated()))
    ice = edge_group(root, "ice_thickness", effect_of("ice_thickness"))
    dose = edge_group(root, "dose", "shot_noise")
    drift = edge_group(root, "drift", "envelope_bfactor")
    beam = edge_group(root, "beam_tilt", "ctf_aberration_loss")
    assert ice.findtext(f"{SVG}text") == "3.25 ± 0.125"
    assert dose.findtext(f"{SVG}text") == "-1.5 ± 5"
    assert drift.findtext(f"{SVG}text") == "0.4 ± 0.05"
    assert beam.findtext(f"{SVG}text") == "prior 1 ± 3"  # not annotated: the prior

    def path(g: ET.Element) -> ET.Element:
        p = g.find(f"{SVG}path")
        assert p is not None
        return p

    assert path(ice).get("stroke") == path(drift).get("stroke") != path(dose).get("stroke")
    assert path(ice).get("marker-end") == "url(#arrow-red)"
    assert path(dose).get("marker-end") == "url(#arrow-blue)"
    assert path(dose).get("stroke-dasharray") is not None  # not converged
    assert path(ice).get("stroke-dasharray") is None
    width = {
        name: float(path(g).get("stroke-width", "0"))
        for name, g in [("ice", ice), ("dose", dose), ("drift", drift), ("beam", beam)]
    }
    # |3.25| is the largest shown mean: widest; the rest in order of |mean|
    assert width["ice"] > width["dose"] > width["beam"] > width["drift"]
    effect_edge = path(edge_group(root, "shot_noise", OUTCOME))
    assert effect_edge.get("stroke-dasharray") is None
    assert float(effect_edge.get("stroke-width", "0")) < width["ice"]


def test_svg_columns_run_from_causes_to_outcome() -> None:
    graph = causal_graph()
    graph.add_node("microscope_session", kind="context")
    graph.add_edge("microscope_session", "ice_thickness")
    root = parse(render_svg(graph))
    x = {}
    for g in groups(root, "node"):
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        x[g.findtext(f"{SVG}title")] = float(rect.get("x", "nan"))
    kinds = {n: graph.nodes[n]["kind"] for n in graph.nodes}
    column = {k: {x[n] for n in graph.nodes if kinds[n] == k} for k in set(kinds.values())}
    assert all(len(xs) == 1 for xs in column.values())  # one column per kind
    assert (
        column["context"].pop()
        < column["factor"].pop()
        < column["effect"].pop()
        < column["outcome"].pop()
    )


def test_svg_effects_sit_beside_their_factors() -> None:
    graph = causal_graph()
    root = parse(render_svg(graph))
    y = {}
    for g in groups(root, "node"):
        rect = g.find(f"{SVG}rect")
        assert rect is not None
        y[g.findtext(f"{SVG}title")] = float(rect.get("y", "nan"))
    factors = [f.name for f in FACTORS]
    assert [y[f] for f in factors] == sorted(y[f] for f in factors)
    effects = list(dict.fromkeys(f.effect for f in FACTORS))
    # each effect in the mean row of its factors, so no two edges cross
    assert [y[e] for e in effects] == sorted(y[e] for e in effects)
    for e in effects:
        rows = [y[f.name] for f in FACTORS if f.effect == e]
        assert y[e] == pytest.approx(sum(rows) / len(rows))


def test_svg_escapes_text() -> None:
    graph = nx.DiGraph()
    graph.add_node('a<b> & "c"', kind="factor")
    graph.add_node("e&f", kind="effect")
    graph.add_node("y", kind="outcome")
    graph.add_edge('a<b> & "c"', "e&f", prior_mean=1.0, prior_sd=0.5, source="x < y & z")
    graph.add_edge("e&f", "y", weight=1.0)
    svg = render_svg(graph, title="<session> & 'more'")
    root = parse(svg)
    assert root.findtext(f"{SVG}text") == "<session> & 'more'"
    titles = [g.findtext(f"{SVG}title") for g in groups(root, "node")]
    assert titles == ['a<b> & "c"', "e&f", "y"]
    assert "prior 1 ± 0.5" in svg


def test_svg_is_deterministic(tmp_path: Path) -> None:
    first = render_svg(annotated(), title="t")
    assert render_svg(annotated(), title="t") == first
    # a graph rebuilt from the same data draws the same picture
    rebuilt = nx.DiGraph()
    rebuilt.add_nodes_from(annotated().nodes(data=True))
    rebuilt.add_edges_from(annotated().edges(data=True))
    assert render_svg(rebuilt, title="t") == first
    assert render_svg(causal_graph(), title="t") != first  # and it does depend on the input
    # and so does another interpreter with another string-hash seed
    code = (
        "import sys; from tests.daemon.formats.test_graph_export import annotated; "
        "from daemon.formats.graph_export import render_svg; "
        "sys.stdout.buffer.write(render_svg(annotated(), title='t').encode())"
    )
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, check=True, env=env, cwd=ROOT
        )
        assert out.stdout.decode() == first
    path = write_svg(annotated(), tmp_path / "causal.svg", title="t")
    assert path.read_text(encoding="utf-8") == first
    assert [p.name for p in tmp_path.iterdir()] == ["causal.svg"]
