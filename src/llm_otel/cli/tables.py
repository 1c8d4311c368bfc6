"""Plain-text tables and small number formatting for the command line (fits 80 columns when asked)."""

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


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Left-aligned first column, right-aligned others, two spaces apart, with a rule under the header."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True)))

    head = line(headers)
    return "\n".join([head, "-" * len(head), *(line(r) for r in rows)])
