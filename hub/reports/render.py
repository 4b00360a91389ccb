"""A report for the terminal: aligned tables, or CSV (``hub report``)."""

from __future__ import annotations

import csv
import io
from typing import Any


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        for name in row:
            if name not in columns:
                columns.append(name)
    return columns


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):  # the content gaps' examples
        return " | ".join(str(item) for item in value)
    return str(value)


def sections(report: dict[str, Any]) -> list[tuple[str, list[dict[str, Any]]]]:
    """(title, rows) of every table in the report: series, totals, then each group."""
    found = [("series", report["series"]), ("totals", report["totals"])]
    found += [(f"by {name}", rows) for name, rows in report.get("groups", {}).items()]
    return found


def to_csv(report: dict[str, Any]) -> str:
    """One CSV: a ``section`` column first, then every column any section has."""
    parts = sections(report)
    columns = _columns([row for _, rows in parts for row in rows])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["section", *columns])
    for title, rows in parts:
        for row in rows:
            writer.writerow([title, *(_cell(row.get(name)) for name in columns)])
    return out.getvalue()


def to_table(report: dict[str, Any]) -> str:
    params = report["params"]
    filters = ", ".join(f"{k}={v}" for k, v in params["filters"].items())
    lines = [
        f"{report['report']}: {report['summary']}",
        f"from {params['from']} to {params['to']} ({params['tz']}), by {params['bucket']}"
        + (f", {filters}" if filters else "")
        + (", business hours" if params.get("business_hours") else ""),
    ]
    for title, rows in sections(report):
        lines += ["", f"{title}:"]
        if not rows:
            lines.append("  (none)")
            continue
        columns = _columns(rows)
        cells = [[_cell(row.get(name)) for name in columns] for row in rows]
        widths = [max(len(name), *(len(r[i]) for r in cells)) for i, name in enumerate(columns)]
        lines.append("  " + "  ".join(name.ljust(widths[i]) for i, name in enumerate(columns)))
        lines += ["  " + "  ".join(r[i].rjust(widths[i]) for i in range(len(columns))) for r in cells]
    return "\n".join(lines)
