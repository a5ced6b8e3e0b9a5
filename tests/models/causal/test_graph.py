"""The causal graph: structure, priors with sources, and the regressors."""

from __future__ import annotations

import networkx as nx
import numpy as np
import pytest

from causalscope.models.causal.graph import (
    FACTORS,
    OUTCOME,
    causal_graph,
    design_matrix,
    edge_priors,
)


def _measurements(n: int = 3) -> dict[str, np.ndarray]:
    return {
        "ice_thickness_nm": np.full(n, 35.0),
        "dose_e_per_a2": np.full(n, 40.0),
        "total_drift_px": np.arange(n, dtype=float),
        "defocus_um": np.full(n, 1.2),
        "astigmatism_angstrom": np.full(n, -200.0),
        "beam_tilt_mrad": np.full(n, -0.3),
        "n_particles": np.zeros(n),
    }


def test_graph_is_a_dag_from_factors_through_effects_to_the_outcome() -> None:
    g = causal_graph()
    assert nx.is_directed_acyclic_graph(g)
    kinds = nx.get_node_attributes(g, "kind")
    for f in FACTORS:
        assert kinds[f.name] == "factor"
        assert kinds[f.effect] == "effect"
        assert nx.has_path(g, f.name, OUTCOME)
    assert [n for n, k in kinds.items() if k == "outcome"] == [OUTCOME]
    for u, v in g.edges:
        assert (kinds[u], kinds[v]) in {("factor", "effect"), ("effect", "outcome")}


def test_every_learned_edge_has_a_sourced_prior_and_a_tolerance() -> None:
    g = causal_graph()
    names, means, sds, tols = edge_priors(g)
    assert names == ["intercept", *(f.name for f in FACTORS)]
    assert np.all(sds > 0) and np.all(tols > 0) and np.all(np.isfinite(means))
    for f in FACTORS:
        assert len(g.edges[f.name, f.effect]["source"]) > 20
    # Physics: thicker ice, more drift, more astigmatism all cost resolution; dose helps.
    prior = dict(zip(names, means, strict=True))
    assert prior["ice_thickness"] > 0 and prior["drift"] > 0 and prior["astigmatism"] > 0
    assert prior["dose"] < 0


def test_design_matrix_transforms() -> None:
    x = design_matrix(_measurements())
    assert x.shape == (3, 1 + len(FACTORS))
    np.testing.assert_allclose(x[0], [1.0, 0.35, 0.0, 0.0, 1.2, 2.0, 0.3, 0.0])
    np.testing.assert_allclose(x[:, 3], [0.0, 1.0, 2.0])


def test_design_matrix_rejects_bad_input() -> None:
    m = _measurements()
    del m["dose_e_per_a2"]
    with pytest.raises(ValueError, match="dose_e_per_a2"):
        design_matrix(m)
    m = _measurements()
    m["dose_e_per_a2"] = np.zeros(3)
    with pytest.raises(ValueError, match="dose"):
        design_matrix(m)
