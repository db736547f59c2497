"""Shared helpers that import only the standard library's lightest modules.

Both the full engine and the checkout hook's fast path (:mod:`branchdb.cli.fast`) use
these, so the two can never disagree about where the configuration is, what the
project is called, where migrations live or whether they changed. Nothing here may
import more than ``os``, ``hashlib`` and ``json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (hook path)
if TYPE_CHECKING:
    from collections.abc import Callable

CONFIG_NAME = "branchdb.toml"
DEFAULT_DATA_DIR = ".branchdb"
STATE_FILE = "state.db"
#: Version of the state store's schema (store/schema.py; both stores upgrade to it; the
#: fast path reads only a store of exactly this version).
STORE_SCHEMA_VERSION = 6
#: Backends that are cheap to build and whose ``exists`` is a ``stat()`` of
#: :func:`libsql_path`: the hook's fast path checks the file is still there.
STAT_EXISTS = frozenset({"libsql"})

#: Where migrations are looked for when ``migrations.dir`` is not set, in order.
MIGRATION_DIRS = (
    "drizzle",
    "migrations",
    "db/migrations",
    "prisma/migrations",
    "sql/migrations",
    "src/db/migrations",
    "database/migrations",
    "supabase/migrations",
)


def find_config(start: str) -> str | None:
    """Walk up from *start* to the file-system root looking for branchdb.toml."""
    here = os.path.realpath(start)
    while True:
        candidate = os.path.join(here, CONFIG_NAME)
        if os.path.isfile(candidate):
            return candidate
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def project_name(raw: dict[str, object], root: str) -> str:
    """``project.name``, defaulting to the directory holding branchdb.toml."""
    project = raw.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    return str(name or os.path.basename(root) or "project")


# ------------------------------------------------------------ parsed-config cache
# branchdb.toml is parsed once and cached as JSON keyed by the file's stat:
# `import tomllib` alone costs ~10 ms, a tenth of the checkout hook's budget.
def cache_path(config_path: str) -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    digest = hashlib.sha256(config_path.encode("utf-8", "surrogatepass")).hexdigest()
    return os.path.join(base, "branchdb", f"config-{digest[:20]}.json")


def stamp(config_path: str) -> list[int]:
    st = os.stat(config_path)
    return [st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def cached_config(config_path: str, file_stamp: list[int]) -> dict[str, object] | None:
    """The cached parse of *config_path* if its stat still matches, else None."""
    try:
        with open(cache_path(config_path), encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("stamp") != file_stamp:
        return None
    raw = data.get("raw")
    if data.get("path") != config_path or not isinstance(raw, dict):
        return None
    return raw


def store_config_cache(
    config_path: str, file_stamp: list[int], raw: dict[str, object]
) -> None:
    """Cache a parse that validated. Skips files modified in the last two seconds
    (git's "racy clean" rule: an edit within one timestamp tick looks unchanged)."""
    if time.time_ns() - file_stamp[2] < 2_000_000_000:
        return
    target = cache_path(config_path)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.{os.getpid()}.tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"path": config_path, "stamp": file_stamp, "raw": raw}, f)
        os.replace(tmp, target)
    except (OSError, TypeError, ValueError):
        pass  # a cache that cannot be written only costs speed


# -------------------------------------------------------------------- migrations
def migrations_dir(root: str, configured: str | None, fmt: str) -> str | None:
    """Absolute migrations directory: *configured*, else the first known one found.

    A configured directory is returned even if missing (the engine reports it).
    """
    if configured:
        return os.path.realpath(os.path.join(root, configured))
    if fmt == "command":
        return None
    for rel in MIGRATION_DIRS:
        candidate = os.path.join(root, rel)
        if os.path.isdir(candidate):
            return os.path.realpath(candidate)
    return None


def list_files(folder: str) -> list[str]:
    """Every file under *folder* as a sorted POSIX relative path (no dot files)."""
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = os.path.relpath(dirpath, folder)
        for f in filenames:
            if not f.startswith("."):
                out.append(f if rel == "." else f"{rel}/{f}".replace(os.sep, "/"))
    return sorted(out)


def fingerprint(folder: str | None, fmt: str, command: str | None) -> str:
    """Hash of everything that decides what ``migrate`` would do: the configured
    format and command, and every file's path and content. Cheap (no parsing)."""
    if folder is None or not os.path.isdir(folder):
        return fingerprint_files([], _read_file, fmt, command)

    def read(rel: str) -> bytes:
        return _read_file(os.path.join(folder, rel))

    return fingerprint_files(list_files(folder), read, fmt, command)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def fingerprint_files(
    paths: list[str], read: Callable[[str], bytes], fmt: str, command: str | None
) -> str:
    """:func:`fingerprint` over any tree (*read* maps a relative path to bytes), so
    a git tree at a commit and the same files on disk have the same fingerprint."""
    h = hashlib.sha256(f"v2\0{fmt}\0{command or ''}\0".encode())
    for rel in paths:
        digest = hashlib.sha256(read(rel)).digest()
        h.update(rel.encode("utf-8", "surrogatepass") + b"\0" + digest)
    return h.hexdigest()


def libsql_path(data_dir: str, database: str) -> str:
    """Where the libsql backend keeps a branch database file."""
    return os.path.join(data_dir, "branches", f"{database}.db")


# --------------------------------------------------------------------------- git
def git_dir(cwd: str) -> str | None:
    """The git directory for *cwd*, found like git does (``$GIT_DIR``, ``.git``)."""
    env = os.environ.get("GIT_DIR")
    if env:
        return os.path.join(cwd, env)
    here = os.path.realpath(cwd)
    while True:
        dot = os.path.join(here, ".git")
        if os.path.isdir(dot):
            return dot
        if os.path.isfile(dot):  # a worktree or submodule: "gitdir: <path>"
            with open(dot, encoding="utf-8", errors="replace") as f:
                text = f.read().strip()
            if text.startswith("gitdir:"):
                return os.path.join(here, text.removeprefix("gitdir:").strip())
            return None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def read_head(cwd: str) -> tuple[str, str] | None:
    """``("branch", name)`` or ``("detached", sha)`` from HEAD, read without git.

    None when HEAD cannot be read this way (no repository, a reftable repository,
    anything unusual): callers then ask git itself.
    """
    gd = git_dir(cwd)
    if gd is None:
        return None
    try:
        with open(os.path.join(gd, "HEAD"), encoding="utf-8", errors="replace") as f:
            head = f.read().strip()
    except OSError:
        return None
    if head.startswith("ref: refs/heads/"):
        branch = head.removeprefix("ref: refs/heads/")
        # ".invalid" marks a reftable repository: only git can tell.
        return None if branch == ".invalid" else ("branch", branch)
    if len(head) in (40, 64) and all(c in "0123456789abcdef" for c in head):
        return ("detached", head)
    return None


def valid_branch_name(name: str) -> bool:
    """False for names git itself could never have (empty, NUL, control chars)."""
    return (
        bool(name)
        and len(name) <= 1024
        and all(ord(c) >= 32 and c != "\x7f" for c in name)
    )
