"""Where ``branchdb.toml`` is and its parse cached: standard library only.

The checkout hook's fast path (:mod:`branchdb.cli.fast`) and the full CLI both find
the configuration through here, so the two can never disagree. Nothing here may
import more than ``os``, ``hashlib``, ``json`` and ``time``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

CONFIG_NAME = "branchdb.toml"
DEFAULT_DATA_DIR = ".branchdb"


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


#: Written into a data directory branchdb creates: the directory ignores itself (as
#: Python's venv and pytest's cache do), so `git add -A` never commits it, whether
#: or not `branchdb init` added it to the repository's .gitignore.
DATA_DIR_GITIGNORE = "# created by branchdb: its data never belongs in git\n*\n"


def make_data_dir(path: str) -> None:
    """Create the data directory *path* (and parents) if missing, with a
    ``.gitignore`` of ``*`` in it. An existing directory is left as it is."""
    if os.path.isdir(path):
        return
    os.makedirs(path, exist_ok=True)
    try:
        fd = os.open(
            os.path.join(path, ".gitignore"),
            os.O_WRONLY | os.O_CREAT | os.O_EXCL,
            0o644,
        )
    except FileExistsError:  # another process made the directory at the same time
        return
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(DATA_DIR_GITIGNORE)


def project_name(raw: dict[str, object], root: str) -> str:
    """``project.name``, defaulting to the directory holding branchdb.toml."""
    project = raw.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    return str(name or os.path.basename(root) or "project")


# ------------------------------------------------------------ parsed-config cache
# branchdb.toml is parsed once and cached as JSON keyed by the file's stat:
# `import tomllib` alone costs ~10 ms, a tenth of the checkout hook's budget.
def effective_backend(raw: dict[str, object]) -> str:
    """The backend a (valid) configuration means: ``[database] backend = "libsql"``
    with a libsql server (``[libsql] server``/``$BRANCHDB_SQLD_URL`` or ``managed =
    true``) is the ``sqld`` backend. One definition for the fast path and
    :mod:`.project`."""
    db = raw.get("database")
    backend = str(db.get("backend", "libsql")) if isinstance(db, dict) else "libsql"
    if backend != "libsql":
        return backend
    ls = raw.get("libsql")
    ls = ls if isinstance(ls, dict) else {}
    if (
        ls.get("managed") is True
        or ls.get("server")
        or os.environ.get("BRANCHDB_SQLD_URL")
    ):
        return "sqld"
    return backend


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
