"""The store's DuckDB holds at most ``memory_limit_mb``, however large the session file grows.

Unbounded, DuckDB keeps every block of the file it has read or written in its cache (up to 80%
of the machine's memory): a long session's daemon grows with its database.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from causalscope.daemon.store import SessionStore

_MIB = 2**20


def _duckdb_bytes(store: SessionStore) -> int:
    row = store._con.execute("SELECT sum(memory_usage_bytes) FROM duckdb_memory()").fetchone()
    assert row is not None
    return int(row[0])


def test_duckdb_memory_stays_under_the_limit_as_the_file_grows(tmp_path: Path) -> None:
    limit_mb = 16
    path = tmp_path / "S.duckdb"
    with SessionStore(path, memory_limit_mb=limit_mb) as store:
        setting = store._con.execute("SELECT current_setting('memory_limit')").fetchone()
        assert setting == ("16.0 MiB",)
        store.start_run(settings_json="{}", version="test", command_line=[], params_hash="h")
        batch, batches = 100_000, 6
        peak = 0
        for k in range(batches):  # 96 bytes of text a row: about 37 MB of file in all
            store._con.execute(
                "INSERT INTO events (logged_at, run_id, kind, message, data) "
                "SELECT now()::TIMESTAMP, 1, 'x', md5(i::VARCHAR) || md5((i + 1)::VARCHAR) "
                "|| md5((i + 2)::VARCHAR), '{}' FROM range(?, ?) AS t(i)",
                [k * batch, (k + 1) * batch],
            )
            peak = max(peak, _duckdb_bytes(store))
        store._con.execute("CHECKPOINT")
        # a scan of every row reads the whole file through the cache
        count, chars = store._con.execute(
            "SELECT count(*), sum(length(message)) FROM events WHERE kind = 'x'"
        ).fetchone() or (0, 0)
        peak = max(peak, _duckdb_bytes(store))
        file_mb = path.stat().st_size / _MIB
    assert (count, chars) == (batches * batch, 96 * batches * batch)  # nothing lost or cut
    assert file_mb > 2 * limit_mb  # the file outgrew the limit: the cache had to give way
    assert peak <= limit_mb * _MIB, f"DuckDB held {peak / _MIB:.1f} MiB; limit {limit_mb}"


def test_a_bad_memory_limit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="memory_limit_mb must be positive, got 0"):
        SessionStore(tmp_path / "S.duckdb", memory_limit_mb=0)
    # the file is free again: nothing was left open
    with SessionStore(tmp_path / "S.duckdb", memory_limit_mb=64) as store:
        assert store._con.execute("SELECT current_setting('memory_limit')").fetchone() == (
            "64.0 MiB",
        )
