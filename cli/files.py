"""Files the CLI writes in the user's repository: branchdb.toml, .gitignore, .env.

Every write is atomic (temporary file + rename) and keeps the file's other lines.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from branchdb.daemon.config.project import CONFIG_NAME, DEFAULT_DATA_DIR
from branchdb.daemon.core.errors import ConfigError, Refused
from branchdb.daemon.migrations.base import DirFiles


def atomic_write(path: Path, text: str) -> None:
    mode = path.stat().st_mode & 0o7777 if path.exists() else 0o644
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


_SAFE_VALUE = re.compile(r"^[A-Za-z0-9_:/@.%+=?&,~-]*$")


def dotenv_value(value: str) -> str:
    if _SAFE_VALUE.match(value):
        return value
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("$", "\\$")
    return f'"{escaped}"'


def update_dotenv(path: Path, var: str, value: str) -> bool:
    """Set *var* in the dotenv file *path* (created if missing), keep every other line.

    Returns True if the file changed.
    """
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
        raise ConfigError(f"invalid variable name {var!r}")
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    line = f"{var}={dotenv_value(value)}"
    pattern = re.compile(rf"^(\s*(?:export\s+)?){re.escape(var)}\s*=.*$")
    lines = old.splitlines()
    found = False
    for i, existing in enumerate(lines):
        m = pattern.match(existing)
        if m:
            lines[i] = m.group(1) + line if not found else lines[i]
            found = True
    if not found:
        lines.append(line)
    new = "\n".join(lines) + "\n"
    if new == old:
        return False
    atomic_write(path, new)
    return True


STARTER = """\
# branchdb: an isolated database for every git branch.
# Every key is described in the Configuration section of branchdb's README.

[project]
name = "{name}"
default_branch = "{default_branch}"

[database]
# libsql (a SQLite file per branch, no server) or postgres (a database per branch).
backend = "libsql"
# Clone each new branch from this snapshot (see `branchdb snapshot create`);
# without it every branch starts from an empty database.
# from = "prod"
# Rebuild a branch's database when its migrations drifted (after a rebase).
# reset_on_drift = false
# env_var = "DATABASE_URL"
# The URL form `url`, `env` and format = "command" give (README: URL forms):
# native, libpq, dbmate, sqlalchemy, jdbc, prisma or path.
# url_format = "native"

[migrations]
{dir_line}
# drizzle, prisma, golang-migrate, flyway, dbmate, sql, command, or auto (detect).
format = "{format}"

[branches]
# Glob patterns: never dropped without --force, never garbage-collected.
protected = ["main", "master"]
# Databases of branches unused for this long may be garbage-collected.
# ttl = "14d"
"""


def detect_migrations(root: Path) -> tuple[str | None, str]:
    """(migrations dir relative to *root* or None, format name or "auto")."""
    from branchdb.daemon.migrations import detect_format
    from branchdb.daemon.migrations.files import MIGRATION_DIRS

    for rel in MIGRATION_DIRS:
        folder = root / rel
        if folder.is_dir():
            return rel, detect_format(DirFiles(folder)) or "auto"
    return None, "auto"


def write_starter(root: Path, *, default_branch: str, force: bool) -> tuple[Path, str]:
    """Write a commented branchdb.toml in *root*; returns (path, summary)."""
    path = root / CONFIG_NAME
    if path.exists() and not force:
        raise Refused(f"{path} already exists (use --force to overwrite it)")
    rel, fmt = detect_migrations(root)
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", root.name).strip("-.") or "app"
    dir_line = f'dir = "{rel}"' if rel else '# dir = "migrations"'
    atomic_write(
        path,
        STARTER.format(
            name=name, default_branch=default_branch, dir_line=dir_line, format=fmt
        ),
    )
    ignore_data_dir(root)
    found = f"migrations in {rel}/ ({fmt})" if rel else "no migrations folder yet"
    return path, found


def ignore_data_dir(root: Path) -> None:
    gitignore = root / ".gitignore"
    entry = f"/{DEFAULT_DATA_DIR}/"
    old = gitignore.read_text(encoding="utf-8") if gitignore.exists() else ""
    known = {line.strip() for line in old.splitlines()}
    if known & {
        entry,
        f"{DEFAULT_DATA_DIR}/",
        DEFAULT_DATA_DIR,
        f"/{DEFAULT_DATA_DIR}",
    }:
        return
    sep = "" if not old or old.endswith("\n") else "\n"
    atomic_write(gitignore, f"{old}{sep}# branchdb's per-branch databases\n{entry}\n")
