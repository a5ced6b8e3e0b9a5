"""The causal graph as files: GraphML for Cytoscape, yEd or networkx, and an SVG picture.

:func:`annotate_posterior` copies the graph of :func:`models.causal.causal_graph` and puts the
learned weights on its ``factor -> effect`` edges; :func:`write_graphml` and :func:`write_svg`
write it atomically. The picture is drawn here, without Graphviz or matplotlib: a layered layout
with one column per node kind, read left to right as cause to outcome.

Colours follow the outcome, ``d**2``, where larger is worse: a positive weight (red) degrades the
resolution, a negative one (blue) improves it.
"""

from __future__ import annotations

import io
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import networkx as nx
import numpy as np

from causalscope.daemon.formats._common import output_path
from causalscope.models.errors import InputError

__all__ = ["annotate_posterior", "render_svg", "write_graphml", "write_svg"]

FloatSequence = Sequence[float] | np.ndarray

_IGNORED_NAMES = frozenset({"intercept"})

# GraphML's types are Java's (GraphML primer, "Attributes"): Double.toString spells the
# non-finite values so, and Python's float() reads these spellings back.
_JAVA_NON_FINITE = {"inf": "Infinity", "-inf": "-Infinity", "nan": "NaN"}

# Layout, in SVG user units (px).
_FONT_PX = 12.0
_CHAR_PX = 7.0  # mean advance of a 12 px sans-serif character, for sizing boxes
_BOX_H = 34.0
_BOX_PAD = 12.0
_ROW_PITCH = 54.0
_MARGIN = 24.0
_TITLE_H = 30.0
_LEGEND_H = 40.0
_GAP_LABELLED = 200.0  # room for the "prior mean ± sd" labels between factors and effects
_GAP = 90.0
_MIN_STROKE = 1.0
_MAX_STROKE = 6.0

_COLUMNS = ("other", "factor", "effect", "outcome")
_FILL = {"other": "#eeeeee", "factor": "#fff4d6", "effect": "#e3f1e1", "outcome": "#e8e1f3"}
_RED = "#c0392b"  # positive weight: larger d**2, worse resolution
_BLUE = "#2166ac"  # negative weight: better resolution
_GREY = "#7f7f7f"
_DASH = ' stroke-dasharray="6 4"'
_LEGEND_CHAR_PX = 6.2
_LEGEND = (
    (_RED, "", "degrades resolution (weight > 0 on d²)"),
    (_BLUE, "", "improves resolution (weight < 0)"),
    (_GREY, _DASH, "not converged"),
)


def _factor_effect_edges(graph: nx.DiGraph, factor: str) -> list[tuple[str, str]]:
    return [(factor, v) for v in graph.successors(factor) if graph.nodes[v].get("kind") == "effect"]


def annotate_posterior(
    graph: nx.DiGraph,
    names: Sequence[str],
    mean: FloatSequence,
    sd: FloatSequence,
    *,
    converged: Sequence[bool] | np.ndarray | None = None,
) -> nx.DiGraph:
    """A copy of ``graph`` with learned weights on its ``factor -> effect`` edges.

    Parameters
    ----------
    graph
        The causal DAG (:func:`models.causal.causal_graph`); not modified.
    names
        Factor node names, in the order of ``mean`` and ``sd`` (as
        :attr:`models.causal.BayesianLinearModel.names`); ``"intercept"`` is skipped.
    mean, sd
        Posterior mean and standard deviation of each weight, in the outcome's units
        (A^2 of ``d**2``) per unit of the factor's regressor.
    converged
        Whether each weight has converged. None: ``sd <= tolerance`` of the edge, the rule of
        :meth:`models.causal.BayesianLinearModel.converged` applied weight by weight.

    Returns
    -------
    nx.DiGraph
        The copy, whose ``factor -> effect`` edges out of each named factor carry
        ``posterior_mean`` and ``posterior_sd`` (float) and ``converged`` (bool).

    Raises
    ------
    ValueError
        Lengths differ, a name is repeated or is not a factor with an effect in ``graph``, a
        mean or sd is not finite or an sd is negative, or ``converged`` is None and an edge has
        no ``tolerance``.
    """
    n = len(names)
    lengths = {"mean": len(mean), "sd": len(sd)}
    if converged is not None:
        lengths["converged"] = len(converged)
    bad = {k: v for k, v in lengths.items() if v != n}
    if bad:
        raise ValueError(f"{n} names but lengths {bad}")
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"name {name!r} is given twice")
        seen.add(name)
    out = graph.copy()
    for i, name in enumerate(names):
        if name in _IGNORED_NAMES:
            continue
        if name not in out or out.nodes[name].get("kind") != "factor":
            factors = sorted(str(v) for v, k in out.nodes(data="kind") if k == "factor")
            raise ValueError(f"unknown factor {name!r}; the graph's factors are {factors}")
        edges = _factor_effect_edges(out, name)
        if not edges:
            raise ValueError(f"factor {name!r} has no edge to an effect in the graph")
        m, s = float(mean[i]), float(sd[i])
        if not math.isfinite(m) or not math.isfinite(s) or s < 0:
            raise ValueError(f"{name!r}: posterior mean {m} and sd {s} must be finite, sd >= 0")
        for u, v in edges:
            data = out.edges[u, v]
            if converged is not None:
                ok = bool(converged[i])
            elif data.get("tolerance") is None:
                raise ValueError(
                    f"edge {u!r} -> {v!r} has no tolerance; pass converged= explicitly"
                )
            else:
                ok = s <= float(data["tolerance"])
            data["posterior_mean"] = m
            data["posterior_sd"] = s
            data["converged"] = ok
    return out


def _check_folder(path: Path) -> None:
    if not path.parent.is_dir():
        raise InputError(
            "Output folder missing",
            f"{path}: the folder {path.parent} does not exist",
            path=path,
        )


def _graphml_value(value: Any, where: str) -> str | int | float | bool | None:
    """A GraphML scalar for ``value``; None (drop the attribute) for None."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | str):
        return value
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(f"{where}: GraphML holds str, int, float or bool, not {type(value).__name__}")


def _graphml_attrs(data: Mapping[Any, Any], where: str) -> dict[str, str | int | float | bool]:
    out = {}
    for k, v in data.items():
        value = _graphml_value(v, f"{where} attribute {k!r}")
        if value is not None:
            out[str(k)] = value
    return out


def write_graphml(graph: nx.DiGraph, path: Path) -> Path:
    """Write ``graph`` as GraphML (UTF-8), atomically; returns ``path``.

    Attribute values become GraphML scalars: NumPy scalars their Python equivalents; None is
    dropped (GraphML's missing value is an absent ``<data>``); non-finite floats stay
    ``double`` and are spelt as Java writes them, ``Infinity``, ``-Infinity`` and ``NaN``,
    which Java tools (Cytoscape, yEd) and :func:`networkx.read_graphml` both read back.
    Integers and floats under one attribute name are written as ``double``; any other value
    (list, dict, Path ...) raises TypeError naming the element and attribute.

    Raises
    ------
    models.errors.InputError
        The folder of ``path`` does not exist (it is not created).
    """
    path = Path(path)
    _check_folder(path)
    clean = nx.DiGraph() if graph.is_directed() else nx.Graph()
    clean.graph.update(_graphml_attrs(graph.graph, "graph"))
    for node, data in graph.nodes(data=True):
        clean.add_node(node, **_graphml_attrs(data, f"node {node!r}"))
    for u, v, data in graph.edges(data=True):
        clean.add_edge(u, v, **_graphml_attrs(data, f"edge {u!r} -> {v!r}"))
    writer = nx.GraphMLWriter(graph=clean, encoding="utf-8", infer_numeric_types=True)
    ns = f"{{{writer.NS_GRAPHML}}}"
    # networkx writes str(float): "inf"/"nan", which Java's Double.parseDouble rejects.
    doubles = {
        k.get("id") for k in writer.xml.iter("key") if k.get("attr.type") in ("double", "float")
    }
    for element in writer.xml.iter():
        if element.tag in ("data", f"{ns}data") and element.get("key") in doubles:
            element.text = _JAVA_NON_FINITE.get(str(element.text), element.text)
    buffer = io.BytesIO()
    writer.dump(buffer)
    with output_path(path, atomic=True) as target:
        target.write_bytes(buffer.getvalue())
    return path


def _kind(graph: nx.DiGraph, node: Any) -> str:
    kind = graph.nodes[node].get("kind")
    return kind if kind in _COLUMNS else "other"


def _label(node: Any) -> str:
    return str(node).replace("_", " ")


def _fmt(x: float) -> str:
    return f"{x:.3g}"


def _shown_weight(data: Mapping[str, Any]) -> tuple[float, float, str] | None:
    """(mean, sd, label) drawn on a factor -> effect edge: the posterior, else the prior."""
    if data.get("posterior_mean") is not None:
        m, s = float(data["posterior_mean"]), float(data.get("posterior_sd", math.nan))
        return m, s, f"{_fmt(m)} ± {_fmt(s)}"
    if data.get("prior_mean") is not None:
        m, s = float(data["prior_mean"]), float(data.get("prior_sd", math.nan))
        return m, s, f"prior {_fmt(m)} ± {_fmt(s)}"
    return None


def _colour(m: float) -> str:
    if m > 0:
        return _RED
    if m < 0:
        return _BLUE
    return _GREY


def _n(x: float) -> str:
    """A coordinate, with a fixed number of decimals so that the output is reproducible."""
    return f"{x:.1f}"


def _layout(
    graph: nx.DiGraph,
) -> tuple[dict[Any, tuple[float, float, float]], dict[Any, int], float, float]:
    """Box ``(x_left, y_centre, width)`` and column of each node; drawing width and height."""
    columns: dict[str, list[Any]] = {k: [] for k in _COLUMNS}
    for node in graph.nodes:
        columns[_kind(graph, node)].append(node)
    used = [k for k in _COLUMNS if columns[k]]
    order = {node: i for i, node in enumerate(graph.nodes)}
    tallest = max(len(columns[k]) for k in used)
    rows: dict[Any, float] = {}
    for kind in used:
        nodes = columns[kind]
        if kind not in ("effect", "outcome"):
            for i, node in enumerate(nodes):
                rows[node] = (tallest - len(nodes)) / 2.0 + i
            continue
        # Each node goes to the mean row of its predecessors already placed (fewer crossings),
        # pushed down where it would overlap the one above; ties keep the graph's order.
        centre: dict[Any, float] = {}
        for node in nodes:
            placed = [rows[p] for p in graph.predecessors(node) if p in rows]
            centre[node] = sum(placed) / len(placed) if placed else math.inf
        below = -math.inf
        for node in sorted(nodes, key=lambda n: (centre[n], order[n])):
            row = centre[node] if math.isfinite(centre[node]) else below + 1.0
            rows[node] = below = max(row, below + 1.0, 0.0)
    top = _MARGIN
    boxes: dict[Any, tuple[float, float, float]] = {}
    col_of: dict[Any, int] = {}
    x = _MARGIN
    for c, kind in enumerate(used):
        width = max(len(_label(n)) for n in columns[kind]) * _CHAR_PX + 2 * _BOX_PAD
        for node in columns[kind]:
            boxes[node] = (x, top + _BOX_H / 2 + rows[node] * _ROW_PITCH, width)
            col_of[node] = c
        x += width
        if c + 1 < len(used):
            x += _GAP_LABELLED if (kind, used[c + 1]) == ("factor", "effect") else _GAP
    height = top + max(rows.values()) * _ROW_PITCH + _BOX_H + _MARGIN
    return boxes, col_of, x + _MARGIN, height


def _edge_path(
    a: tuple[float, float, float], b: tuple[float, float, float], ca: int, cb: int
) -> str:
    """A cubic Bezier from box ``a`` to box ``b`` that leaves and enters horizontally."""
    (xa, ya, wa), (xb, yb, wb) = a, b
    if cb > ca:
        x1, x2 = xa + wa, xb
    elif cb < ca:
        x1, x2 = xa, xb + wb
    else:  # same column: loop out to the right
        x1, x2 = xa + wa, xb + wb
        bulge = 40.0 + abs(yb - ya) / 4
        return (
            f"M {_n(x1)} {_n(ya)} C {_n(x1 + bulge)} {_n(ya)}, {_n(x2 + bulge)} {_n(yb)}, "
            f"{_n(x2)} {_n(yb)}"
        )
    xm = (x1 + x2) / 2
    return f"M {_n(x1)} {_n(ya)} C {_n(xm)} {_n(ya)}, {_n(xm)} {_n(yb)}, {_n(x2)} {_n(yb)}"


def _svg_lines(graph: nx.DiGraph, title: str) -> Iterator[str]:
    boxes, col_of, width, height = _layout(graph)
    legend_w = sum(34 + len(text) * _LEGEND_CHAR_PX + 24 for _, _, text in _LEGEND)
    width = max(width, _MARGIN + legend_w, _MARGIN * 2 + len(title) * 9.0)
    dy = _TITLE_H if title else 0.0
    total_h = height + dy + _LEGEND_H
    yield from _svg_head(width, total_h, title)
    yield f'<g transform="translate(0 {_n(dy)})">'
    yield from _svg_edges(graph, boxes, col_of)
    yield from _svg_nodes(graph, boxes)
    yield "</g>"
    yield from _svg_legend(dy + height + 12)
    yield "</svg>"


def _svg_head(width: float, height: float, title: str) -> Iterator[str]:
    """The ``<svg>`` element's opening, the arrow markers and the title."""
    yield '<?xml version="1.0" encoding="UTF-8"?>'
    yield (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_n(width)}" height="{_n(height)}" '
        f'viewBox="0 0 {_n(width)} {_n(height)}" font-family="Helvetica, Arial, sans-serif" '
        f'font-size="{_n(_FONT_PX)}">'
    )
    yield "<defs>"
    for name, colour in (("red", _RED), ("blue", _BLUE), ("grey", _GREY)):
        yield (
            f'<marker id="arrow-{name}" viewBox="0 0 10 10" refX="10" refY="5" '
            f'markerWidth="9" markerHeight="9" markerUnits="userSpaceOnUse" orient="auto">'
            f'<polygon points="0,0 10,5 0,10" fill="{colour}"/></marker>'
        )
    yield "</defs>"
    if title:
        yield (
            f'<text class="title" x="{_n(_MARGIN)}" y="{_n(_MARGIN + 4)}" font-size="16" '
            f'font-weight="bold">{escape(title)}</text>'
        )


def _svg_edges(
    graph: nx.DiGraph,
    boxes: dict[Any, tuple[float, float, float]],
    col_of: dict[Any, int],
) -> Iterator[str]:
    """One group per edge: ``factor -> effect`` edges with a posterior are coloured by its
    sign, as wide as its size relative to the largest, dashed when not converged, labelled."""
    weights: dict[tuple[Any, Any], tuple[float, float, str]] = {}
    for u, v, data in graph.edges(data=True):
        shown = _shown_weight(data)
        if shown is not None and (_kind(graph, u), _kind(graph, v)) == ("factor", "effect"):
            weights[u, v] = shown
    finite = [abs(m) for m, _, _ in weights.values() if math.isfinite(m)]
    largest = max(finite, default=0.0)
    marker = {_RED: "red", _BLUE: "blue", _GREY: "grey"}
    for u, v, data in graph.edges(data=True):
        d = _edge_path(boxes[u], boxes[v], col_of[u], col_of[v])
        tip = f"{u} → {v}"
        shown = weights.get((u, v))
        if shown is None:
            colour, stroke, dash, label = _GREY, 1.5, "", ""
        else:
            m, _, label = shown
            colour = _colour(m)
            rel = abs(m) / largest if largest > 0 and math.isfinite(m) else 0.0
            stroke = _MIN_STROKE + (_MAX_STROKE - _MIN_STROKE) * rel
            dash = _DASH if data.get("converged") is False else ""
            tip += f": {label}"
            if data.get("source"):
                tip += f" ({data['source']})"
        yield f'<g class="edge"><title>{escape(tip)}</title>'
        yield (
            f'<path class="edge" d="{d}" fill="none" stroke="{colour}" '
            f'stroke-width="{_n(stroke)}"{dash} marker-end="url(#arrow-{marker[colour]})"/>'
        )
        if label:
            x, y, w = boxes[u]
            yield (
                f'<text class="edge-label" x="{_n(x + w + 8)}" y="{_n(y - 8)}" '
                f'fill="{colour}">{escape(label)}</text>'
            )
        yield "</g>"


def _svg_nodes(graph: nx.DiGraph, boxes: dict[Any, tuple[float, float, float]]) -> Iterator[str]:
    """One rounded, labelled box per node, filled by its kind."""
    for node in graph.nodes:
        x, y, w = boxes[node]
        kind = _kind(graph, node)
        yield f'<g class="node {kind}"><title>{escape(str(node))}</title>'
        yield (
            f'<rect class="node" x="{_n(x)}" y="{_n(y - _BOX_H / 2)}" width="{_n(w)}" '
            f'height="{_n(_BOX_H)}" rx="8" ry="8" fill="{_FILL[kind]}" stroke="#444444"/>'
        )
        yield (
            f'<text class="node-label" x="{_n(x + w / 2)}" y="{_n(y + _FONT_PX / 3)}" '
            f'text-anchor="middle">{escape(_label(node))}</text>'
        )
        yield "</g>"


def _svg_legend(y: float) -> Iterator[str]:
    """The legend's row of line samples at height ``y``."""
    x = _MARGIN
    yield '<g class="legend" font-size="11">'
    for colour, dash, text in _LEGEND:
        yield (
            f'<line x1="{_n(x)}" y1="{_n(y)}" x2="{_n(x + 28)}" y2="{_n(y)}" '
            f'stroke="{colour}" stroke-width="3"{dash}/>'
        )
        yield f'<text x="{_n(x + 34)}" y="{_n(y + 4)}">{escape(text)}</text>'
        x += 34 + len(text) * _LEGEND_CHAR_PX + 24
    yield "</g>"


def render_svg(graph: nx.DiGraph, *, title: str = "") -> str:
    """A self-contained SVG picture of the causal DAG; same graph, same string.

    Columns from left to right: nodes of any other kind (if present), factors, effects,
    outcomes; an effect or outcome sits in the mean row of its predecessors (moved down, if
    need be, to keep one row between boxes). Nodes are rounded boxes named with underscores as
    spaces; every edge is one ``<path class="edge">`` ending in an arrow. A
    ``factor -> effect`` edge is labelled with the posterior ``mean ± sd`` when it has one
    (:func:`annotate_posterior`), else with ``prior mean ± sd``; its width grows with
    ``|mean| / max |mean|`` over those edges, its colour is red for a positive weight (larger
    ``d**2``, worse), blue for a negative one, and it is dashed when ``converged`` is False.
    Other edges are thin and grey. Each node and edge group has a ``<title>`` (the node name;
    the edge, its weight and the prior's source),
    shown as a tooltip by browsers.
    """
    if graph.number_of_nodes() == 0:
        raise ValueError("the graph has no nodes to draw")
    return "\n".join(_svg_lines(graph, title)) + "\n"


def write_svg(graph: nx.DiGraph, path: Path, *, title: str = "") -> Path:
    """Write :func:`render_svg` of ``graph`` to ``path`` (UTF-8), atomically; returns ``path``.

    Raises
    ------
    models.errors.InputError
        The folder of ``path`` does not exist (it is not created).
    """
    path = Path(path)
    _check_folder(path)
    text = render_svg(graph, title=title)
    with output_path(path, atomic=True) as target:
        target.write_text(text, encoding="utf-8")
    return path
