"""The gallery's line for the class under the cursor carries the daemon's recommendation,
its Novelty and its reason, cut to the width; rows without one read as before."""

from __future__ import annotations

from causalscope.tui.reconstruction import ReconstructionState, class_info_text

ROW = {
    "class_index": 4,
    "particles": 2100,
    "effective_sample_size": 1680.0,
    "resolution_angstrom": 8.5,
    "junk_score": 0.2,
    "auto_selected": True,
    "selected": True,
    "label": None,
    "novelty": 0.93,
    "nearest": "ice",
    "nearest_kind": "junk",
    "recommendation": "look",
    "reason": "the classifier keeps it (junk score 0.20) but its nearest known entry is junk",
}


def test_the_recommendation_and_its_reason_are_shown() -> None:
    text = class_info_text(ReconstructionState(), ROW).plain
    assert text.startswith("class 5 · 2,100 particles")
    assert text.endswith(" · look (novelty 0.93): " + ROW["reason"])
    styles = {str(span.style) for span in class_info_text(ReconstructionState(), ROW).spans}
    assert "bold yellow" in styles  # look


def test_a_narrow_line_cuts_the_reason_then_leaves_it_out() -> None:
    narrow = class_info_text(ReconstructionState(), ROW, width=130).plain
    assert len(narrow) <= 130 and narrow.endswith("…") and " · look (novelty 0.93): " in narrow
    tight = class_info_text(ReconstructionState(), ROW, width=60).plain
    assert "look" not in tight and len(tight) <= 60


def test_a_row_without_a_recommendation_is_unchanged() -> None:
    plain = {k: v for k, v in ROW.items() if k not in ("novelty", "recommendation", "reason")}
    assert class_info_text(ReconstructionState(), plain).plain.endswith("SELECTED (auto)")
