"""Tables declared once: each column's name, SQL type, record attribute and JSON-ness.

A :class:`Table` generates its ``CREATE TABLE``, its named INSERT and UPDATE statements and its
set of JSON columns, and reads a row's values off a record (:meth:`Table.values`), so that a
field added to a record is one column added here (plus a schema version step in
:mod:`.schema`). The tables themselves are declared in :mod:`.schema`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from causalscope.daemon.client._json import dumps

__all__ = ["Column", "Table", "decode_map", "encode_json", "field"]

#: How a column's value is read off a record: an attribute name, or a function of the record.
Attribute = str | Callable[[Any], Any]


@dataclass(frozen=True)
class Column:
    """One column.

    Attributes
    ----------
    name
        The column's name.
    type
        Its SQL type with its constraints (``DOUBLE NOT NULL``, ``VARCHAR PRIMARY KEY``).
    attribute
        Where :meth:`Table.values` reads it on a record; None when the writer gives it (keys,
        times, states).
    json
        A JSON column: written as JSON text, decoded when rows are published.
    """

    name: str
    type: str
    attribute: Attribute | None = None
    json: bool = False

    def read(self, record: Any) -> Any:
        """This column's value on ``record`` (JSON text for a JSON column)."""
        if self.attribute is None:
            raise ValueError(f"column {self.name!r} is not read from a record")
        if callable(self.attribute):
            value = self.attribute(record)
        else:
            value = getattr(record, self.attribute)
        return encode_json(value) if self.json else value


def field(name: str, type: str, *, json: bool = False) -> Column:
    """A column read from the record attribute of the same name."""
    return Column(name, type, name, json)


@dataclass(frozen=True)
class Table:
    """One table of the session's schema.

    Attributes
    ----------
    name
        The table's name.
    columns
        Its columns, in order.
    primary_key
        A key of several columns (a one-column key is in that column's type).
    sequence
        A sequence that a column's default draws from, created before the table.
    """

    name: str
    columns: tuple[Column, ...]
    primary_key: tuple[str, ...] = ()
    sequence: str | None = None

    def __post_init__(self) -> None:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError(f"table {self.name!r} declares a column twice: {names}")
        unknown = set(self.primary_key) - set(names)
        if unknown:
            raise ValueError(f"table {self.name!r}: key columns {sorted(unknown)} not declared")

    @property
    def column_names(self) -> tuple[str, ...]:
        """The columns' names, in order."""
        return tuple(c.name for c in self.columns)

    @property
    def json_columns(self) -> frozenset[str]:
        """The columns of type JSON."""
        return frozenset(c.name for c in self.columns if c.json)

    def ddl(self) -> tuple[str, ...]:
        """The statements that create the table (and its sequence) when missing."""
        lines = [f"    {c.name} {c.type}" for c in self.columns]
        if self.primary_key:
            lines.append(f"    PRIMARY KEY ({', '.join(self.primary_key)})")
        body = ",\n".join(lines)
        table = f"CREATE TABLE IF NOT EXISTS {self.name} (\n{body}\n)"
        if self.sequence is None:
            return (table,)
        return (f"CREATE SEQUENCE IF NOT EXISTS {self.sequence} START 1", table)

    def insert_sql(self, names: Iterable[str], *, returning: bool = False) -> str:
        """``INSERT INTO table (a, b) VALUES ($a, $b)``, parameters named as the columns."""
        names = self._check(names)
        sql = (
            f"INSERT INTO {self.name} ({', '.join(names)}) "
            f"VALUES ({', '.join(f'${n}' for n in names)})"
        )
        return sql + " RETURNING *" if returning else sql

    def update_sql(self, names: Iterable[str], *, key: str) -> str:
        """``UPDATE table SET a = $a, ... WHERE key = $key``."""
        names = self._check([*names, key])[:-1]
        settings = ", ".join(f"{n} = ${n}" for n in names)
        return f"UPDATE {self.name} SET {settings} WHERE {key} = ${key}"

    def values(self, record: Any, **given: Any) -> dict[str, Any]:
        """Every column read from ``record`` (JSON columns as text), and the ``given`` ones."""
        out = {c.name: c.read(record) for c in self.columns if c.attribute is not None}
        out.update(given)
        self._check(out)
        return out

    def _check(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        unknown = [n for n in names if n not in self.column_names]
        if unknown:
            raise ValueError(f"table {self.name!r} has no columns {unknown}")
        return names


def encode_json(value: Any) -> str | None:
    """JSON text of a value for a JSON column: a pydantic model as its JSON, None as NULL,
    anything else strictly (NaN as null, times as ISO text)."""
    if value is None:
        return None
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    return dumps(value)


def decode_map(tables: Iterable[Table]) -> Mapping[str, frozenset[str]]:
    """Each table's JSON columns, for the tables that have any."""
    return {t.name: t.json_columns for t in tables if t.json_columns}
