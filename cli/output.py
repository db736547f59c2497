"""Turning engine answers into stable JSON and short human text.

The JSON shapes (:mod:`branchdb.daemon.wire`, built by :mod:`branchdb.daemon.views`)
are documented in README.md ("JSON output") and are the same in embedded and remote
mode: the API returns exactly these dicts.
"""

from __future__ import annotations

import json
import sys

from branchdb.daemon import views

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (hook path)
if TYPE_CHECKING:
    from typing import Any


# One definition of each JSON shape, shared with the API.
branch_json = views.branch_dict
snapshot_json = views.snapshot_dict
up_json = views.up_dict
migrate_json = views.migrate_dict
gc_json = views.gc_dict
iso = views.iso


def emit_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def human_size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in rows
    ]
    return "\n".join(line.rstrip() for line in lines)
