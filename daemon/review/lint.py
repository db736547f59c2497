"""Lint the migrations a branch adds: what they would do to a production table.

PostgreSQL migrations go through the real linter, ``squawk`` (PyPI ``squawk-cli``
ships its binary): its rule names (``require-concurrent-index-creation``,
``adding-required-field``, ``constraint-missing-not-valid``, ``ban-drop-column``…),
its ``-- squawk-ignore RULE`` comments and the project's ``.squawk.toml`` (squawk
reads it from the project root, where it runs). A migration the runner wraps in a
transaction is linted with ``--assume-in-transaction``.

SQLite has no such linter; the few rules that matter are here, named like squawk's
and silenced the same way (``-- branchdb-ignore RULE`` on the line before the
statement):

- ``sqlite-table-rebuild``: the rebuild-the-table pattern (``DROP TABLE t`` then
  ``ALTER TABLE t_new RENAME TO t``): every row is copied under the write lock,
  and rows of other tables referencing ``t`` must be checked by hand;
- ``sqlite-drop-table``, ``sqlite-drop-column``: data is destroyed;
- ``sqlite-rename``: a renamed table or column breaks the code still running
  on the default branch.

Findings carry the file (relative to the repository or project root) and 1-based
lines in that file, for annotations.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from branchdb.daemon.core.errors import ConfigError
from branchdb.daemon.migrations.sqlsplit import split

if TYPE_CHECKING:
    from branchdb.daemon.core.models import Migration

#: A migration's SQL is bounded before it is handed to squawk (it reads stdin).
MAX_SQL = 4 * 1024 * 1024
SQUAWK_TIMEOUT = 60.0


@dataclass(frozen=True)
class Finding:
    """One problem in one migration file."""

    path: str  # the file, relative to the repository (or project) root
    migration: str  # the migration's name
    line: int  # 1-based, in the file
    end_line: int
    rule: str  # squawk's rule name, or a sqlite-* rule of this module
    level: str  # "warning" | "error"
    message: str
    help: str | None = None


def squawk_binary() -> str:
    """The squawk executable: on PATH, or beside this Python (a virtualenv's bin/).

    Raises ConfigError saying how to install it when there is none.
    """
    found = shutil.which("squawk") or shutil.which(
        "squawk", path=os.path.dirname(sys.executable)
    )
    if found is None:
        raise ConfigError(
            "squawk is not installed: `pip install squawk-cli` (a dependency of "
            "branchdb; reinstall branchdb) to lint PostgreSQL migrations"
        )
    return found


def _offset(text: str, sql: str) -> int:
    """Lines before *sql* in its file *text* (dbmate's up block is part of a file)."""
    at = text.find(sql) if sql.strip() else -1
    return text.count("\n", 0, at) if at > 0 else 0


def squawk(
    migration: Migration,
    path: str,
    file_text: str,
    *,
    pg_version: int | None,
    cwd: Path | None,
) -> list[Finding]:
    """squawk's findings on *migration* (its SQL, as the runner would apply it)."""
    sql = migration.sql
    if len(sql.encode()) > MAX_SQL:
        return [
            Finding(
                path,
                migration.name,
                1,
                1,
                "branchdb-too-large",
                "warning",
                f"not linted: larger than {MAX_SQL // 1024 // 1024} MiB",
            )
        ]
    cmd = [squawk_binary(), "--reporter", "json", "--stdin-filepath", path]
    if migration.transactional:
        cmd.append("--assume-in-transaction")
    if pg_version:
        cmd.append(f"--pg-version={pg_version}")
    try:
        done = subprocess.run(
            cmd,
            input=sql.encode(),
            capture_output=True,
            timeout=SQUAWK_TIMEOUT,
            cwd=cwd if cwd is not None and cwd.is_dir() else None,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ConfigError(f"squawk took over {SQUAWK_TIMEOUT:g} s on {path}") from None
    if done.returncode not in (0, 1):
        why = done.stderr.decode(errors="replace").strip().splitlines()
        raise ConfigError(
            f"squawk failed on {path}: {why[-1] if why else done.returncode}"
        )
    try:
        raw = json.loads(done.stdout or b"[]")
    except ValueError:
        raise ConfigError(
            f"squawk answered something other than JSON on {path}"
        ) from None
    shift = _offset(file_text, sql)
    return [
        Finding(
            path=path,
            migration=migration.name,
            line=int(v.get("line") or 0) + 1 + shift,
            end_line=int(v.get("line_end") or v.get("line") or 0) + 1 + shift,
            rule=str(v.get("rule_name")),
            level=str(v.get("level", "warning")).lower(),
            message=str(v.get("message", "")),
            help=v.get("help"),
        )
        for v in raw
        if isinstance(v, dict)
    ]


def _ident(text: str) -> str:
    return text.strip().strip('"`[]').lower()


_IDENT = r"(\"(?:[^\"]|\"\")+\"|`[^`]+`|\[[^\]]+\]|[\w$]+)"
_DROP_TABLE = re.compile(rf"^DROP\s+TABLE\s+(?:IF\s+EXISTS\s+)?{_IDENT}", re.I)
_RENAME_TABLE = re.compile(rf"^ALTER\s+TABLE\s+{_IDENT}\s+RENAME\s+TO\s+{_IDENT}", re.I)
_RENAME_COLUMN = re.compile(
    rf"^ALTER\s+TABLE\s+{_IDENT}\s+RENAME\s+(?:COLUMN\s+)?{_IDENT}\s+TO\s+{_IDENT}",
    re.I,
)
_DROP_COLUMN = re.compile(
    rf"^ALTER\s+TABLE\s+{_IDENT}\s+DROP\s+(?:COLUMN\s+)?{_IDENT}", re.I
)
_IGNORE = re.compile(r"--\s*branchdb-ignore\s+([\w\-, ]+)", re.I)


def sqlite(migration: Migration, path: str, file_text: str) -> list[Finding]:
    """The SQLite rules of the module docstring on *migration*."""
    stmts = list(migration.statements) or split(migration.sql, "sqlite")
    located: list[tuple[int, str]] = []
    pos = 0
    for stmt in stmts:
        body = stmt.strip()
        at = file_text.find(body, pos)
        if at < 0:
            at = pos
        else:
            pos = at + len(body)
        located.append((file_text.count("\n", 0, at) + 1, body))
    lines = file_text.splitlines()
    dropped = {_ident(m.group(1)) for _, s in located if (m := _DROP_TABLE.match(s))}
    renamed_into = {
        _ident(m.group(2)) for _, s in located if (m := _RENAME_TABLE.match(s))
    }
    out: list[Finding] = []

    def add(line: int, rule: str, message: str, help: str) -> None:
        before = lines[line - 2] if line >= 2 and len(lines) >= line - 1 else ""
        m = _IGNORE.search(before)
        if m and rule in {r.strip() for r in m.group(1).split(",")}:
            return
        out.append(
            Finding(path, migration.name, line, line, rule, "warning", message, help)
        )

    for line, s in located:
        if m := _DROP_TABLE.match(s):
            t = _ident(m.group(1))
            if t in renamed_into:
                add(
                    line,
                    "sqlite-table-rebuild",
                    f"table {t} is rebuilt (copy, drop, rename): every row is "
                    "copied while the database is write-locked",
                    "run it when the table is small or writes can wait; turn "
                    "foreign keys off around it and run PRAGMA foreign_key_check",
                )
            else:
                add(
                    line,
                    "sqlite-drop-table",
                    f"dropping table {t} destroys its rows, and breaks the code "
                    "still running on the default branch",
                    "drop it in a later release, once nothing reads it",
                )
        elif m := _DROP_COLUMN.match(s):
            add(
                line,
                "sqlite-drop-column",
                f"dropping column {_ident(m.group(2))} of {_ident(m.group(1))} "
                "destroys its values and rewrites the table",
                "stop using it first; drop it in a later release",
            )
        elif (m := _RENAME_TABLE.match(s)) and _ident(m.group(2)) not in dropped:
            add(
                line,
                "sqlite-rename",
                f"renaming table {_ident(m.group(1))} breaks the code still "
                "running on the default branch",
                "add the new name, move the code, then remove the old one",
            )
        elif m := _RENAME_COLUMN.match(s):
            add(
                line,
                "sqlite-rename",
                f"renaming column {_ident(m.group(2))} of {_ident(m.group(1))} "
                "breaks the code still running on the default branch",
                "add the new column, move the code, then remove the old one",
            )
    return out
