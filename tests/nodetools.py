"""Run drizzle-orm's REAL migrators (Node) from pytest.

The Node side lives in tests/node/ (package.json + package-lock.json, pinned
drizzle-kit / drizzle-orm / @libsql/client / pg). Install it with ``npm ci`` in
that directory. Tests that need it call :func:`require_node` first: locally a
missing toolchain skips the test, under CI (``CI`` set) it fails, so these tests
are never silently skipped in CI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPTS = {
    "libsql": NODE_DIR / "migrate-libsql.mjs",
    "pg": NODE_DIR / "migrate-pg.mjs",
}


def _missing() -> str | None:
    """Why the Node harness cannot run, or None when it can."""
    if shutil.which("node") is None:
        return "node is not on PATH"
    for pkg in ("drizzle-orm", "@libsql/client", "pg"):
        if not (NODE_DIR / "node_modules" / pkg / "package.json").is_file():
            return (
                f"{NODE_DIR}/node_modules/{pkg} is missing (run `npm ci` in {NODE_DIR})"
            )
    return None


def node_available() -> bool:
    """True when node is on PATH and tests/node/node_modules is installed."""
    return _missing() is None


def require_node() -> None:
    """Skip the calling test when the Node harness is missing; fail under CI."""
    why = _missing()
    if why is None:
        return
    if os.environ.get("CI"):
        pytest.fail(f"Node drizzle harness unavailable under CI: {why}")
    pytest.skip(why)


def run_drizzle_migrator(
    kind: str, folder: Path, url: str, *ledger: str
) -> list[dict[str, Any]]:
    """Apply *folder* (a drizzle-kit ``out`` folder) to *url* with drizzle-orm's migrator.

    *kind* is ``"libsql"`` (url ``file:/abs/path.db``, ``http://``, ``libsql://``) or
    ``"pg"`` (url ``postgresql://...``). Returns the ledger rows after migrating,
    ``[{"id": ..., "hash": ..., "created_at": ...}, ...]`` in insertion order (on
    SQLite drizzle leaves ``id`` NULL, so it is ``None`` there). Raises RuntimeError
    with the script's stdout and stderr when it fails.
    """
    try:
        script = SCRIPTS[kind]
    except KeyError:
        raise ValueError(
            f"unknown migrator kind {kind!r}; expected one of {sorted(SCRIPTS)}"
        ) from None
    cmd = ["node", str(script), str(Path(folder).resolve()), url, *ledger]
    p = subprocess.run(cmd, cwd=NODE_DIR, capture_output=True, text=True, timeout=120)
    if p.returncode != 0:
        raise RuntimeError(
            f"drizzle {kind} migrator failed (exit {p.returncode}): {' '.join(cmd)}\n"
            f"--- stdout ---\n{p.stdout}\n--- stderr ---\n{p.stderr}"
        )
    lines = [ln for ln in p.stdout.splitlines() if ln.strip()]
    if not lines:
        raise RuntimeError(
            f"drizzle {kind} migrator printed nothing: {' '.join(cmd)}\n"
            f"--- stderr ---\n{p.stderr}"
        )
    rows: list[dict[str, Any]] = json.loads(lines[-1])["rows"]
    return rows
