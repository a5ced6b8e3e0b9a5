"""The exposure table: one row per exposure, sortable and filterable, rebuilt in one batch."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import RowKey

from causalscope.tui.format import COLUMNS, SORTS, RowFilter, cells

__all__ = ["ExposureTable"]

Row = Mapping[str, Any]


class ExposureTable(DataTable[Any]):
    """Exposures in the order seen (or sorted), following the newest while the cursor is on it.

    The table holds no data of its own: :meth:`rebuild` and :meth:`upsert` are given the
    rows and a ``label_of`` lookup by the app.
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True)
        self.sort_name = "seen"
        self.row_filter = RowFilter()
        for column in COLUMNS:
            self.add_column(column.heading, width=column.width, key=column.key)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        # Every column has a fixed width and every row is one line high: there is nothing to
        # measure (DataTable measures every new cell, seconds for 10,000 rows).
        header_height = self.header_height if self.show_header else 0
        width = sum(column.get_render_width(self) for column in self.columns.values())
        self.virtual_size = Size(
            width + self._row_label_column_width, self.row_count + header_height
        )

    def on_resize(self) -> None:
        # The panels around the table grow and shrink (a regime-change notice, the causes):
        # keep the selected exposure in view, as a terminal keeps its prompt
        if self.row_count:
            self.call_after_refresh(
                self.move_cursor, row=self.cursor_row, animate=False, scroll=True
            )

    def _order(self, rows: Iterable[Row]) -> list[Row]:
        key = SORTS[self.sort_name]
        return list(rows) if key is None else sorted(rows, key=key)

    def rebuild(
        self, rows: Iterable[Row], label_of: Callable[[str], str | None], keep: str | None
    ) -> None:
        """Replace every row (sorted and filtered); keep the cursor on ``keep`` if shown."""
        self.clear()
        wanted = self.row_filter
        for row in self._order(rows):
            eid = str(row["exposure_id"])
            label = label_of(eid)
            if wanted and not wanted.matches(row, label):
                continue
            self.add_row(*cells(row, label), key=eid)
        self._place_cursor(keep)

    def _place_cursor(self, exposure_id: str | None) -> None:
        if not self.row_count:
            return
        index = self.row_count - 1 if self.sort_name == "seen" else 0
        if exposure_id is not None and exposure_id in self.rows:
            index = self.get_row_index(exposure_id)
        self.move_cursor(row=index, animate=False, scroll=True)

    @property
    def following(self) -> bool:
        """True when the cursor is on the last row (new rows move it along)."""
        return self.row_count == 0 or self.cursor_row >= self.row_count - 1

    def upsert(self, rows: Iterable[Row], label_of: Callable[[str], str | None]) -> None:
        """Update rows already shown; append new ones that pass the filter (one batch)."""
        follow = self.following and self.sort_name == "seen"
        added = False
        for row in rows:
            eid = str(row["exposure_id"])
            label = label_of(eid)
            shown = eid in self.rows
            if self.row_filter and not self.row_filter.matches(row, label):
                if shown:
                    self.remove_row(eid)
                continue
            values = cells(row, label)
            if shown:
                for column, cell in zip(COLUMNS, values, strict=True):
                    self.update_cell(eid, column.key, cell)
            else:
                self.add_row(*values, key=eid)
                added = True
        if added and follow:
            self.move_cursor(row=self.row_count - 1, animate=False, scroll=True)

    def set_label(self, row: Row, label: str | None) -> None:
        """Show an exposure's new label."""
        eid = str(row["exposure_id"])
        if eid in self.rows:
            self.update_cell(eid, "label", cells(row, label)[6])

    def selected_id(self) -> str | None:
        """The exposure under the cursor, or None."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        return None if key.value is None else str(key.value)

    def next_sort(self) -> str:
        """Switch to the next sort order; returns its name."""
        names = list(SORTS)
        self.sort_name = names[(names.index(self.sort_name) + 1) % len(names)]
        return self.sort_name
