"""Plain-text tables of timings, shared by ``fastfd bench`` and the benchmarks' ratio table.

Formatting only: nothing here measures anything. Columns are as wide as their widest cell;
``align`` gives one character per column, ``<`` (left) or ``>`` (right).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["duration", "ratio", "table", "target"]


def duration(seconds: float) -> str:
    """A wall time in the unit that keeps three or four significant digits.

    Examples
    --------
    >>> duration(250.0), duration(1.5), duration(0.0123), duration(4.2e-6)
    ('250 s', '1.50 s', '12.30 ms', '4.2 us')
    """
    if seconds >= 100:
        return f"{seconds:,.0f} s"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.2f} ms"
    return f"{seconds * 1e6:.1f} us"


def ratio(value: float) -> str:
    """A speed ratio: whole numbers from 100 up, one decimal below.

    Examples
    --------
    >>> ratio(1234.5), ratio(12.34)
    ('1,234x', '12.3x')
    """
    return f"{value:,.0f}x" if value >= 100 else f"{value:,.1f}x"


def table(rows: Sequence[Sequence[object]], header: Sequence[str] | None = None, *,
          align: str | None = None, indent: str = "  ", gap: str = "  ") -> list[str]:
    """The lines of a table of ``rows`` (cells are shown with ``str``), under ``header``.

    ``align`` defaults to the first column left-aligned and the others right-aligned (a
    label, then numbers). Trailing spaces are stripped.

    Examples
    --------
    >>> for line in table([["loop", "1.50 s", 10], ["fastfd", "12.30 ms", 4]],
    ...                   header=["", "time", "evals"]):
    ...     print(line)
                time  evals
      loop    1.50 s     10
      fastfd  12.30 ms      4
    """
    cells = [[str(cell) for cell in row] for row in ([header] if header else []) + list(rows)]
    if not cells:
        return []
    n_columns = max(len(row) for row in cells)
    cells = [row + [""] * (n_columns - len(row)) for row in cells]
    align = align or "<" + ">" * (n_columns - 1)
    if len(align) != n_columns or set(align) - {"<", ">"}:
        raise ValueError(f"align needs one '<' or '>' per column ({n_columns}); got {align!r}")
    widths = [max(len(row[k]) for row in cells) for k in range(n_columns)]
    return [(indent + gap.join(f"{cell:{side}{width}}" for cell, side, width
                               in zip(row, align, widths))).rstrip() for row in cells]


def target(value: float, bound: float, kind: str) -> tuple[bool, str]:
    """Whether ``value`` meets ``bound`` (``kind`` ``"max"``: at most, ``"min"``: at least)
    and the target in words.

    Examples
    --------
    >>> target(0.9, 1.05, "max"), target(900.0, 1000.0, "min")
    ((True, '<= 1.05'), (False, '>= 1000'))
    """
    if kind not in ("max", "min"):
        raise ValueError(f"kind must be 'max' or 'min'; got {kind!r}")
    ok = value <= bound if kind == "max" else value >= bound
    return ok, f"{'<=' if kind == 'max' else '>='} {bound:g}"
