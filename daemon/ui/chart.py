"""The GC history chart's geometry: bars computed here, drawn as inline SVG by the
template (``_chart.html``), so the page needs no script and no chart library."""

from __future__ import annotations

from typing import Any, NamedTuple

WIDTH, HEIGHT, PAD = 560, 140, 18


class Bar(NamedTuple):
    x: float
    y: float
    width: float
    height: float
    label: str  # the day (YYYY-MM-DD)
    databases: int
    bytes: int


def bars(days: list[tuple[str, int, int]], key: int = 2) -> dict[str, Any]:
    """Bars for *days* (``(day, databases, bytes)``), scaled to the largest value
    of column *key* (1: databases, 2: bytes). A day with nothing collected gets a
    bar of height 0 (its label still shows on hover)."""
    top = max((int(d[key]) for d in days), default=0) or 1
    slot = (WIDTH - 2 * PAD) / max(len(days), 1)
    out = []
    for i, (day, n, size) in enumerate(days):
        value = (n, size)[key - 1]
        h = (HEIGHT - 2 * PAD) * value / top
        out.append(
            Bar(
                x=round(PAD + i * slot + slot * 0.15, 1),
                y=round(HEIGHT - PAD - h, 1),
                width=round(slot * 0.7, 1),
                height=round(h, 1),
                label=day,
                databases=n,
                bytes=size,
            )
        )
    return {"bars": out, "width": WIDTH, "height": HEIGHT, "pad": PAD, "top": top}
