"""The daemon's configuration: which projects it serves, where, and with what secrets.

A TOML file (``branchdb serve --config daemon.toml`` or ``$BRANCHDB_DAEMON_CONFIG``)::

    [server]
    host = "127.0.0.1"
    port = 8765
    data_dir = ".branchdb-daemon"   # tokens, webhook deliveries, repository mirrors
    ui = true                       # the web dashboard at /ui/ (BRANCHDB_UI=off)

    [[projects]]
    path = "/srv/shop"              # a directory holding branchdb.toml (or the file)
    name = "shop"                   # default: the project's project.name
    repository = "https://github.com/acme/shop.git"  # fetched for webhooks
    subdir = ""                     # where branchdb.toml sits in the repository
    webhook_secret = "..."          # or $BRANCHDB_WEBHOOK_SECRET_SHOP
    allow_forks = false
    gitlab_secret = "..."           # or $BRANCHDB_GITLAB_SECRET_SHOP (X-Gitlab-Token)

    [projects.publish]              # optional; see branchdb.daemon.api.publish
    github = ["deployment"]         # any of deployment, status, comment
    callback_url = "https://previews.example.com/branchdb"

    [state]                         # default: SQLite files in the data directories
    url = "postgresql://branchdb@db.internal/ops"   # shared by every replica
    schema = "branchdb"             # the only schema branchdb touches there

Without a file, the project whose ``branchdb.toml`` is found from the working directory
is served alone, with its data directory as the daemon's. Environment variables
(``BRANCHDB_HOST``, ``BRANCHDB_PORT``, ``BRANCHDB_UI``, ``BRANCHDB_DAEMON_DATA_DIR``,
``BRANCHDB_WEBHOOK_SECRET[_<PROJECT>]``, ``BRANCHDB_GITLAB_SECRET_<PROJECT>``; for
publishing ``BRANCHDB_GITHUB_TOKEN[_<PROJECT>]``,
``BRANCHDB_CALLBACK_SECRET_<PROJECT>``; ``BRANCHDB_STATE_URL``) override the file;
command-line flags override both. Without ``[state]`` here, the daemon uses the
``[state]`` its projects' ``branchdb.toml`` name (the store their CLI uses); one that
differs from this file's is refused. Everything is read once, here; the app receives
the result.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, NamedTuple

from branchdb.daemon.api import publish
from branchdb.daemon.api.publish import PublishSettings
from branchdb.daemon.config import env
from branchdb.daemon.config import project as project_config
from branchdb.daemon.config.project import Config
from branchdb.daemon.core.errors import ConfigError, Refused, redact
from branchdb.daemon.store.meta import DEFAULT_SCHEMA

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
DEFAULT_GC_INTERVAL = 900  # 15 minutes
DEFAULT_DATA_DIR = ".branchdb-daemon"
#: Request bodies over this are refused with 413 (GitHub caps webhooks at 25 MB).
DEFAULT_MAX_BODY = 25 * 1024 * 1024

_SERVER_KEYS = {
    "host": str,
    "port": int,
    "data_dir": str,
    "gc_interval": str,
    "max_body": int,
    "ui": bool,
}
_STATE_KEYS = {"url": str, "schema": str}
_PROJECT_KEYS = {
    "path": str,
    "name": str,
    "repository": str,
    "subdir": str,
    "webhook_secret": str,
    "allow_forks": bool,
    "gitlab_secret": str,
    "publish": dict,
}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


class ProjectSettings(NamedTuple):
    name: str  # the {project} of API paths
    config: Config  # the project's own branchdb.toml
    repository: str | None  # URL or path the daemon fetches; None: no webhooks
    subdir: str  # directory of branchdb.toml inside the repository ("" = root)
    webhook_secret: str | None
    allow_forks: bool = False
    gitlab_secret: str | None = None  # X-Gitlab-Token of GitLab merge request hooks
    publish: PublishSettings | None = None  # where webhook flows publish the URL
    #: ``repository`` was set: garbage collection reads the fetched mirror (as the
    #: webhooks do), not the project folder's checkout
    repository_set: bool = False


class DaemonSettings(NamedTuple):
    host: str
    port: int
    data_dir: Path  # the daemon's own state: tokens, deliveries, mirrors
    projects: dict[str, ProjectSettings]
    path: Path | None = None  # the daemon config file, if any
    gc_interval: int = DEFAULT_GC_INTERVAL  # seconds between scheduled GC runs; 0 off
    state_url: str | None = None  # [state] url: the PostgreSQL state store
    state_schema: str | None = None  # [state] schema (default "branchdb")
    max_body: int = DEFAULT_MAX_BODY  # bytes; larger request bodies get 413
    #: sha256 of the admin token from $BRANCHDB_ADMIN_TOKEN[_FILE|_SHA256], made
    #: known at start (:func:`branchdb.daemon.api.tokens.bootstrap`)
    admin_token_sha256: str | None = None
    #: serve the web dashboard at /ui/ (``server.ui``, ``BRANCHDB_UI``)
    ui: bool = True


def _secret_env(name: str, what: str = "WEBHOOK_SECRET") -> str | None:
    key = f"BRANCHDB_{what}_" + re.sub(r"[^A-Za-z0-9]", "_", name).upper()
    return env.get(key)


def _repository_of(root: Path) -> tuple[str | None, str]:
    """(toplevel, subdir of *root* in it) of the git repository holding *root*."""
    try:
        r = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return None, ""
    if r.returncode != 0:
        return None, ""
    top = Path(r.stdout.strip()).resolve()
    rel = root.resolve().relative_to(top).as_posix()
    return str(top), "" if rel == "." else rel


def _check_subdir(subdir: str, where: str) -> str:
    parts = [p for p in subdir.strip("/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts) or subdir.startswith("/"):
        raise ConfigError(f"{where}: subdir {subdir!r} must be a relative path")
    return "/".join(parts)


def _project(raw: dict[str, Any], base: Path, where: str) -> ProjectSettings:
    for key, value in raw.items():
        want = _PROJECT_KEYS.get(key)
        if want is None:
            raise ConfigError(f"{where}: unknown key 'projects.{key}'")
        if not isinstance(value, want):
            raise ConfigError(f"{where}: projects.{key} must be a {want.__name__}")
    if "path" not in raw:
        raise ConfigError(f"{where}: every [[projects]] needs a path")
    target = (base / raw["path"]).resolve()
    file = target if target.is_file() else target / project_config.CONFIG_NAME
    cfg = project_config.load(file)
    name = raw.get("name", cfg.project.name)
    if not _NAME.fullmatch(name):
        raise ConfigError(f"{where}: project name {name!r} is not a valid name")
    if "repository" in raw:
        repo: str | None = raw["repository"]
        subdir = _check_subdir(raw.get("subdir", ""), where)
    else:
        repo, subdir = _repository_of(cfg.root)
        if "subdir" in raw:
            subdir = _check_subdir(raw["subdir"], where)
    secret = raw.get("webhook_secret") or _secret_env(name)
    return ProjectSettings(
        name,
        cfg,
        repo,
        subdir,
        secret,
        bool(raw.get("allow_forks", False)),
        raw.get("gitlab_secret") or _secret_env(name, "GITLAB_SECRET"),
        publish.parse(raw["publish"], name, where) if "publish" in raw else None,
        repository_set="repository" in raw,
    )


def _gc_interval(value: str | None, where: str) -> int:
    """``server.gc_interval`` / ``BRANCHDB_GC_INTERVAL`` in seconds; "off" is 0."""
    value = env.get("BRANCHDB_GC_INTERVAL") or value
    if value is None:
        return DEFAULT_GC_INTERVAL
    if value.strip() in ("0", "off"):
        return 0
    return project_config.parse_duration(value, "server.gc_interval", where)


def _state(raw: Any, where: str) -> tuple[str | None, str | None]:
    """(url, schema) of ``[state]``; ``$BRANCHDB_STATE_URL`` overrides the url."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: state must be a table ([state])")
    for key, value in raw.items():
        want = _STATE_KEYS.get(key)
        if want is None:
            raise ConfigError(f"{where}: unknown key 'state.{key}' (url, schema)")
        if not isinstance(value, want):
            raise ConfigError(f"{where}: state.{key} must be a {want.__name__}")
    state = project_config.parse_state(raw, where)
    return state.url, state.schema


def _shared_state(
    url: str | None,
    schema: str | None,
    projects: dict[str, ProjectSettings],
    where: str,
) -> tuple[str | None, str | None]:
    """The daemon's state store, reconciled with the projects' own ``[state]``.

    The CLI in a project folder uses that project's ``[state]``; the daemon must use
    the same store, or the two keep separate records (and a cron ``gc`` takes the
    daemon's databases for orphans). Without ``[state]`` here, the one the projects
    name is used; two different ones, or one that differs from the daemon's, are a
    ConfigError.
    """
    named = {
        p.name: (p.config.state.url, p.config.state.schema or DEFAULT_SCHEMA)
        for p in projects.values()
        if p.config.state.url and p.config.state.declared
    }
    stores = set(named.values())
    if url is None:
        if len(stores) > 1:
            raise ConfigError(
                f"{where}: the projects name different state stores in their "
                f"branchdb.toml ([state]: {', '.join(sorted(named))}); set one "
                "[state] here and the same in each project"
            )
        if stores:
            url, schema = stores.pop()
        return url, schema
    for name, (other, other_schema) in sorted(named.items()):
        if (other, other_schema) != (url, schema or DEFAULT_SCHEMA):
            raise ConfigError(
                f"{where}: project {name!r} names another state store in its "
                f"branchdb.toml ({redact(other)}, schema {other_schema!r}) than "
                f"[state] here; the CLI and the daemon would keep separate records"
            )
    return url, schema


def _max_body(value: int, where: str) -> int:
    if value < 1:
        raise ConfigError(f"{where}: server.max_body must be a positive byte count")
    return value


def _env_port(default: int) -> int:
    value = env.get("BRANCHDB_PORT")
    if not value:
        return default
    if not value.isdigit() or not 0 < int(value) < 65536:
        raise ConfigError(f"BRANCHDB_PORT must be a port number, got {value!r}")
    return int(value)


def _ui(value: bool) -> bool:
    """``server.ui``, overridden by ``BRANCHDB_UI`` (on/off, true/false, 1/0)."""
    raw = env.get("BRANCHDB_UI")
    if not raw:
        return value
    word = raw.strip().lower()
    if word in ("1", "true", "on", "yes"):
        return True
    if word in ("0", "false", "off", "no"):
        return False
    raise ConfigError(f"BRANCHDB_UI must be on or off, got {raw[:40]!r}")


def _admin_token() -> str | None:
    from branchdb.daemon.api.tokens import bootstrap_digest

    try:
        return bootstrap_digest(
            env.get("BRANCHDB_ADMIN_TOKEN"), env.get("BRANCHDB_ADMIN_TOKEN_SHA256")
        )
    except Refused as e:
        raise ConfigError(str(e)) from None


def load(
    path: Path | None = None,
    *,
    cwd: Path | None = None,
    project_path: Path | None = None,
    host: str | None = None,
    port: int | None = None,
) -> DaemonSettings:
    """Read the daemon configuration (see the module docstring). Raises ConfigError."""
    if path is None and env.get("BRANCHDB_DAEMON_CONFIG"):
        path = Path(str(env.get("BRANCHDB_DAEMON_CONFIG")))
    env_dir = env.get("BRANCHDB_DAEMON_DATA_DIR")
    if path is None:
        cfg = project_config.load(project_path, cwd=cwd)
        repo, subdir = _repository_of(cfg.root)
        secret = env.get("BRANCHDB_WEBHOOK_SECRET") or _secret_env(cfg.project.name)
        one = ProjectSettings(
            cfg.project.name,
            cfg,
            repo,
            subdir,
            secret,
            gitlab_secret=_secret_env(cfg.project.name, "GITLAB_SECRET"),
        )
        # The project's own [state] (and $BRANCHDB_STATE_URL): the CLI uses it too.
        state_url, state_schema = cfg.state.url, cfg.state.schema
        return DaemonSettings(
            host=host or env.get("BRANCHDB_HOST") or DEFAULT_HOST,
            port=port or _env_port(DEFAULT_PORT),
            data_dir=Path(env_dir).resolve() if env_dir else cfg.data_dir,
            projects={one.name: one},
            gc_interval=_gc_interval(None, "environment"),
            state_url=state_url,
            state_schema=state_schema,
            admin_token_sha256=_admin_token(),
            ui=_ui(True),
        )
    import tomllib

    where = str(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"daemon config {path} does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: invalid TOML: {e}") from None
    for key in raw:
        if key not in ("server", "projects", "state"):
            raise ConfigError(f"{where}: unknown key {key!r} (server, projects, state)")
    server = raw.get("server", {})
    for key, value in server.items():
        want = _SERVER_KEYS.get(key)
        if want is None:
            raise ConfigError(f"{where}: unknown key 'server.{key}'")
        if not isinstance(value, want) or (
            isinstance(value, bool) and want is not bool
        ):
            raise ConfigError(f"{where}: server.{key} must be a {want.__name__}")
    state_url, state_schema = _state(raw.get("state", {}), where)
    base = path.resolve().parent
    projects: dict[str, ProjectSettings] = {}
    entries = raw.get("projects", [])
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"{where}: declare at least one [[projects]] with a path")
    for entry in entries:
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: projects must be [[projects]] tables")
        p = _project(entry, base, where)
        if p.name in projects:
            raise ConfigError(f"{where}: project {p.name!r} is declared twice")
        projects[p.name] = p
    state_url, state_schema = _shared_state(state_url, state_schema, projects, where)
    data_dir = (
        Path(env_dir) if env_dir else base / server.get("data_dir", DEFAULT_DATA_DIR)
    )
    return DaemonSettings(
        host=host or env.get("BRANCHDB_HOST") or server.get("host", DEFAULT_HOST),
        port=port or _env_port(server.get("port", DEFAULT_PORT)),
        data_dir=data_dir.resolve(),
        projects=projects,
        path=path.resolve(),
        gc_interval=_gc_interval(server.get("gc_interval"), where),
        state_url=state_url,
        state_schema=state_schema,
        max_body=_max_body(server.get("max_body", DEFAULT_MAX_BODY), where),
        admin_token_sha256=_admin_token(),
        ui=_ui(server.get("ui", True)),
    )
