"""Plain-text tables, names and small number formatting for the command line."""

from __future__ import annotations


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1) of ``values``; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def count(n: int) -> str:
    """Token counts compact enough for narrow columns: 950, 12.3k, 4.5M."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1000:.1f}k"
    return f"{n / 1_000_000:.1f}M"


def money(x: float) -> str:
    return f"{x:.4f}" if x < 100 else f"{x:,.2f}"


def group_name(*parts: str | None) -> str:
    """The one way tables name a group: ``provider/model`` (``-`` for a missing part), never shortened."""
    return "/".join(p or "-" for p in parts)


def table(headers: list[str], rows: list[list[str]], width: int | None = None) -> str:
    """Left-aligned first column, right-aligned others, with a rule under the header. Every column is as wide
    as its longest cell; columns are two spaces apart, or one when two would make the table wider than
    ``width``. Cells are never cut, so a long enough name still makes the table wider."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    gap = "  " if width is None or sum(widths) + 2 * (len(widths) - 1) <= width else " "

    def line(cells: list[str]) -> str:
        return gap.join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    head = line(headers)
    return "\n".join([head, "-" * len(head), *(line(r) for r in rows)])
