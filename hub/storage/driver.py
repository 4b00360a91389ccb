"""Core statements executed straight on the DBAPI cursor, for hot paths.

SQLAlchemy compiles a Core statement once and caches it, but each execution
still builds an execution context, a result and a ``Row`` per row: about
25 µs here, several times what SQLite needs to run a statement that hits an
index. On the ingest path that bookkeeping was most of the writer thread's
time (and the writer shares the GIL with the event loop).

A ``DriverStatement`` is the same Core statement, written once and compiled
once per dialect, whose executions go to the driver's cursor. Parameters
and result columns still go through the column types' own processors (the
ones ``Connection.execute`` uses), so what is stored and read back is the
same either way; ``tests/hub/test_driver_statements.py`` checks that.

Only for drivers that run synchronously in the calling thread (pysqlite);
on any other (asyncpg through ``run_sync``) it is ``Connection.execute``.
Its executions skip SQLAlchemy's engine events (``echo`` logging included),
so it is kept to the few statements of the ingest path.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect

Processor = Callable[[Any], Any] | None
# What a DriverStatement runs: a Core statement that both compiles and executes.
Statement = sa.Select[Any] | sa.Insert | sa.Update | sa.Delete

DIRECT_DRIVERS = frozenset({"pysqlite"})


class DriverStatement:
    def __init__(self, statement: Statement) -> None:
        self.statement = statement
        self._compiled: dict[Dialect, _Compiled] = {}

    def _direct(self, conn: Connection) -> _Compiled | None:
        dialect = conn.dialect
        if dialect.driver not in DIRECT_DRIVERS:
            return None
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = _Compiled(self.statement, dialect)
        return compiled

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first row (attributes by column key) or None."""
        compiled = self._direct(conn)
        if compiled is None:
            return conn.execute(self.statement, dict(params)).first()
        driver: Any = conn.connection.driver_connection  # a checked-out connection always has one
        cursor = driver.execute(compiled.sql, compiled.parameters(params))
        try:
            raw = cursor.fetchone()
        finally:
            cursor.close()
        return None if raw is None else compiled.row(raw)

    def all(self, conn: Connection, params: Mapping[str, Any]) -> list[Any]:
        compiled = self._direct(conn)
        if compiled is None:
            return list(conn.execute(self.statement, dict(params)))
        driver: Any = conn.connection.driver_connection  # a checked-out connection always has one
        cursor = driver.execute(compiled.sql, compiled.parameters(params))
        try:
            return [compiled.row(raw) for raw in cursor.fetchall()]
        finally:
            cursor.close()

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Run the statement; no rows come back."""
        compiled = self._direct(conn)
        if compiled is None:
            conn.execute(self.statement, dict(params))
            return
        driver: Any = conn.connection.driver_connection  # a checked-out connection always has one
        driver.execute(compiled.sql, compiled.parameters(params)).close()

    def execute_many(self, conn: Connection, params: Iterable[Mapping[str, Any]]) -> None:
        """Run the statement once per parameter set (no rows come back)."""
        compiled = self._direct(conn)
        if compiled is None:
            conn.execute(self.statement, [dict(p) for p in params])
            return
        driver: Any = conn.connection.driver_connection  # a checked-out connection always has one
        driver.executemany(compiled.sql, [compiled.parameters(p) for p in params]).close()


class _Compiled:
    def __init__(self, statement: Statement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name}: DriverStatement needs a positional paramstyle")
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("DriverStatement cannot run expanding (IN list) parameters")
        self.sql = compiled.string
        # Per positional parameter: its name, whether the caller must give it,
        # its value otherwise (a literal of the statement) and its processor.
        self._binds: list[tuple[str, bool, Any, Processor]] = []
        for name in compiled.positiontup:
            bind = compiled.binds[name]
            self._binds.append(
                (name, bind.required, bind.effective_value, bind.type.dialect_impl(dialect).bind_processor(dialect))
            )
        columns = getattr(statement, "exported_columns", None)
        keys = list(columns.keys()) if columns is not None else []
        # Fields known only at run time: no static type to give the class.
        row_class: Any = namedtuple("Row", keys) if keys else None
        # A statement without result columns is only ever executed, never read.
        self._make_row: Callable[[Iterable[Any]], Any] = row_class._make if row_class is not None else tuple
        self._processors: list[Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in (columns or [])
        ]
        self._plain = not any(self._processors)

    def parameters(self, params: Mapping[str, Any]) -> list[Any]:
        processed: dict[str, Any] = {}
        values = []
        for name, required, fixed, process in self._binds:
            if name in processed:  # a name used twice is processed once
                values.append(processed[name])
                continue
            value = params[name] if required or name in params else fixed
            if process is not None:
                value = process(value)
            processed[name] = value
            values.append(value)
        return values

    def row(self, raw: tuple[Any, ...]) -> Any:
        if self._plain:
            return self._make_row(raw)
        return self._make_row(
            [value if process is None else process(value) for value, process in zip(raw, self._processors)]
        )
