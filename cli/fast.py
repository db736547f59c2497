"""``branchdb up`` when there is nothing to do, answered with the standard library.

This is what a post-checkout hook runs on almost every checkout: the branch's database
exists and its migrations did not change. It is answered here from the cached parse of
branchdb.toml, HEAD and the state store — without argparse, pathlib, the engine, a
backend or tomllib — and printed exactly as the full path prints it (``--json``:
:func:`~branchdb.daemon.views.up_to_date_dict`, the view of the engine's up-to-date
answer; tests/test_fastpath.py compares the two). Anything unusual (no cache yet, a
flag this module does not know, a changed migration, a missing file, remote mode)
returns None and the full CLI takes over, so correctness never depends on this
module: it only ever confirms "up to date".
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time
from types import SimpleNamespace

from branchdb.daemon.backends import STAT_EXISTS
from branchdb.daemon.backends.libsql_layout import libsql_path
from branchdb.daemon.config import locate
from branchdb.daemon.core import branchname
from branchdb.daemon.migrations import files as migration_files
from branchdb.daemon.store.meta import SCHEMA_VERSION, STATE_FILE
from branchdb.daemon.vcs import head as git_head

_FLAGS = frozenset({"-q", "--quiet", "--json", "--hook"})


def try_up(argv: list[str]) -> int | None:
    """Exit code if ``branchdb <argv>`` was fully handled here, else None."""
    if not argv or argv[0] != "up" or os.environ.get("BRANCHDB_NO_FASTPATH"):
        return None
    flags: set[str] = set()
    branch: str | None = None
    for arg in argv[1:]:
        if arg in _FLAGS:
            flags.add(arg)
        elif not arg.startswith("-") and branch is None:
            branch = arg
        else:
            return None
    if os.environ.get("BRANCHDB_SERVER"):
        return None  # remote mode: the daemon answers
    try:
        rec = _up_to_date(branch)
    except (OSError, sqlite3.Error, ValueError, TypeError, KeyError):
        return None
    if rec is None:
        return None
    _print(rec, flags)
    return 0


def _section(raw: dict[str, object], name: str) -> dict[str, object]:
    body = raw.get(name)
    return body if isinstance(body, dict) else {}


def _tables(mig: dict[str, object]) -> tuple[str, ...]:
    table = mig.get("table")
    return (table,) if isinstance(table, str) else ()


def _up_to_date(branch: str | None) -> SimpleNamespace | None:
    cwd = os.getcwd()
    path = os.environ.get("BRANCHDB_CONFIG") or locate.find_config(cwd)
    if not path:
        return None
    path = os.path.realpath(path)
    raw = locate.cached_config(path, locate.stamp(path))
    if raw is None or _section(raw, "server").get("url"):
        return None
    if _section(raw, "state").get("url") or os.environ.get("BRANCHDB_STATE_URL"):
        return None  # the records are in a shared PostgreSQL store
    if branch is None:
        head = git_head.read_head(cwd)
        if head is None or head[0] != "branch":
            return None
        branch = head[1]
    if not branchname.is_valid(branch):
        return None
    root = os.path.dirname(path)
    db = _section(raw, "database")
    mig = _section(raw, "migrations")
    backend = locate.effective_backend(raw)
    data_dir = os.path.realpath(
        os.path.join(root, str(db.get("data_dir", locate.DEFAULT_DATA_DIR)))
    )
    fmt = str(mig.get("format", "auto"))
    folder = migration_files.migrations_dir(root, mig.get("dir"), fmt)  # type: ignore[arg-type]
    command = mig.get("command")
    fp = migration_files.fingerprint(
        folder, fmt, command if isinstance(command, str) else None
    )

    state = os.path.join(data_dir, STATE_FILE)
    if not os.path.isfile(state):
        return None
    con = sqlite3.connect(state, timeout=5, isolation_level=None)
    try:
        if con.execute("PRAGMA user_version").fetchone()[0] != (SCHEMA_VERSION):
            return None
        project = locate.project_name(raw, root)
        row = con.execute(
            "SELECT database, backend, url, source, status, created_at, "
            "last_used_at, fingerprint, applied, info FROM branches "
            "WHERE project = ? AND branch = ?",
            (project, branch),
        ).fetchone()
        if row is None or row[4] != "ready" or row[1] != backend:
            return None
        if backend in STAT_EXISTS:
            path = libsql_path(data_dir, row[0])
            if not os.path.exists(path):
                return None
            # The tool's ledger too: `dbmate rollback` or a restored file changes
            # it without touching a migration file.
            ledger = migration_files.sqlite_ledger_fingerprint(path, _tables(mig))
            fp = migration_files.with_ledger(fp, ledger)
        elif str(row[2]).startswith(("postgres://", "postgresql://")):
            from branchdb.daemon.migrations import pg_ledger

            pg = pg_ledger.ledger_fingerprint(row[2], _tables(mig))
            fp = migration_files.with_ledger(fp, pg)
        if row[7] != fp:
            return None
        if backend == "sqld" and _token_stale(row[9]):
            return None  # the full path signs a new one before handing it out
        now = time.time()
        con.execute("PRAGMA synchronous=NORMAL")
        con.execute(
            "UPDATE branches SET last_used_at = max(last_used_at, ?) "
            "WHERE project = ? AND branch = ?",
            (now, project, branch),
        )
    finally:
        con.close()
    import json

    return SimpleNamespace(
        branch=branch,
        database=row[0],
        backend=row[1],
        url=row[2],
        source=row[3],
        status=row[4],
        created_at=row[5],
        last_used_at=max(row[6], now),
        applied=json.loads(row[8]),
        info=json.loads(row[9]),
    )


def _token_stale(info: str) -> bool:
    import json

    from branchdb.daemon.backends.sqld_auth import stale

    token = json.loads(info).get("auth_token")
    return not isinstance(token, str) or stale(token)


def _print(rec: SimpleNamespace, flags: set[str]) -> None:
    if "--hook" in flags:
        sys.stderr.write(f"branchdb: {rec.branch}: up to date\n")
    elif "--json" in flags:
        from branchdb.cli.output import emit_json
        from branchdb.daemon.views import up_to_date_dict

        emit_json(up_to_date_dict(rec))  # type: ignore[arg-type]
    elif not flags & {"-q", "--quiet"}:
        sys.stdout.write(f"{rec.branch}: up to date\n{rec.url}\n")
