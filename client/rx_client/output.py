"""Plain-text output of the command line: aligned tables, numbers, times, JSON."""

import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, TextIO


def number(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else f"{value:.6g}"
    return str(value)


def metrics(values: dict[str, Any] | None) -> str:
    return " ".join(f"{name}={number(value)}" for name, value in (values or {}).items())


def moment(text: str | None) -> str:
    """An API datetime as `YYYY-MM-DD HH:MM:SS UTC`."""
    if not text:
        return ""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return text
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    numeric: Sequence[int] = (),
    out: TextIO | None = None,
) -> None:
    """Columns padded to their widest cell; `numeric` columns right-aligned."""
    out = out or sys.stdout
    cells = [[str(cell) for cell in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        for index, cell in enumerate(row):
            widths[index] = max(widths[index], len(cell))

    def line(row: Sequence[str]) -> str:
        padded = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        return "  ".join(padded).rstrip()

    print(line(list(headers)), file=out)
    for row in cells:
        print(line(row), file=out)


def as_json(value: Any, out: TextIO | None = None) -> None:
    json.dump(value, out or sys.stdout, indent=2, sort_keys=False)
    (out or sys.stdout).write("\n")
