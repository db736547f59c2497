"""``branchdb.toml``: finding it, reading it, and refusing anything it does not know.

The file is found like git finds ``.git``: walking up from the working directory.
``--config`` and ``BRANCHDB_CONFIG`` override the search. Every error names the file
and the dotted key, and suggests the closest known key for typos.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from branchdb.daemon.config import env, locate
from branchdb.daemon.config.docker_section import SCHEMA as DOCKER_SCHEMA
from branchdb.daemon.config.docker_section import DockerSection
from branchdb.daemon.config.docker_section import parse as parse_docker
from branchdb.daemon.core.errors import ConfigError

CONFIG_NAME = locate.CONFIG_NAME
DEFAULT_DATA_DIR = locate.DEFAULT_DATA_DIR
BACKENDS = ("libsql", "postgres", "docker")
#: The libsql backend served through a libsql server (sqld): ``[database] backend =
#: "libsql"`` with ``[libsql] server = ...`` or ``[libsql] managed = true``.
SQLD = "sqld"
DEFAULT_TOKEN_ENV = ("DATABASE_AUTH_TOKEN", "TURSO_AUTH_TOKEN")
DEFAULT_TOKEN_TTL = 30 * 86400

_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(value: str, key: str, where: str = "configuration") -> int:
    """``"90s"``, ``"30m"``, ``"12h"``, ``"14d"``, ``"2w"`` → seconds."""
    m = _DURATION.match(value)
    if not m:
        raise ConfigError(
            f"{where}: {key}: invalid duration {value!r} "
            '(use a number and s, m, h, d or w, e.g. "14d")'
        )
    return int(m.group(1)) * _UNITS[m.group(2)]


class ProjectSection(NamedTuple):
    name: str
    default_branch: str = "main"


class DatabaseSection(NamedTuple):
    backend: str = "libsql"
    from_snapshot: str | None = None  # ``from`` in the file
    data_dir: Path = Path(DEFAULT_DATA_DIR)
    server: str | None = None  # postgres admin URL
    reset_on_drift: bool = False
    env_var: str = "DATABASE_URL"
    url_format: str = "native"  # see branchdb.daemon.core.urlforms


class MigrationsSection(NamedTuple):
    dir: Path | None = None  # None: detect
    format: str = "auto"
    command: str | None = None
    timeout: int = 600
    table: str | None = None  # drizzle's migrationsTable (default its own)
    schema: str | None = None  # drizzle's migrationsSchema on PostgreSQL

    @property
    def ledger_tables(self) -> tuple[str, ...]:
        """Ledger tables besides the known ones (a configured drizzle table)."""
        return (self.table,) if self.table else ()


class BranchesSection(NamedTuple):
    protected: tuple[str, ...] = ("main", "master")
    ttl: int | None = None  # seconds
    grace: int = 3600  # seconds between "collectable" and deletion
    max_branches: int | None = None
    on_limit: str = "refuse"  # creating beyond max_branches: "refuse" or "evict"


class GcSection(NamedTuple):
    #: After each drop, sleep ``pace`` x the drop's own duration (0: no pacing), so
    #: a server deleting many databases keeps serving its other clients.
    pace: float = 1.0


class SnapshotDefinition(NamedTuple):
    """``[snapshots.NAME]``: how ``branchdb snapshot refresh NAME`` rebuilds it."""

    name: str
    source: str | None = None
    source_env: str | None = None  # environment variable holding the source URL
    rules: str | None = None  # rules file, relative to branchdb.toml
    schedule: int | None = None  # seconds between refreshes by the daemon
    allow_unreviewed: bool = False


class SnapshotsSection(NamedTuple):
    keep: int = 3  # versions kept per name (versions in use are always kept)
    definitions: dict[str, SnapshotDefinition] = {}  # noqa: RUF012 - never mutated


class LibsqlSection(NamedTuple):
    """``[libsql]``: serve libsql branches through sqld instead of local files.

    ``server``/``admin``/``key_file``: an sqld the team runs (its Hrana URL, its admin
    API, the Ed25519 *private* key whose public half sqld was started with).
    ``managed``: the daemon runs its own sqld under the data directory.
    ``public_url``: what clients are told, ``{namespace}`` replaced (sqld picks the
    database by the first label of the host name). ``db_path``: sqld's
    ``--db-path`` when the daemon shares its file system (clones then copy the
    snapshot file in, instead of loading it over the network).
    """

    server: str | None = None
    admin: str | None = None
    key_file: Path | None = None
    managed: bool = False
    public_url: str | None = None
    db_path: Path | None = None
    listen: str | None = None  # managed: "127.0.0.1:PORT" for Hrana (default: free)
    token_env: tuple[str, ...] = DEFAULT_TOKEN_ENV
    #: Lifetime of a branch's token (its ``exp``); re-signed when handed out with
    #: less than half of it left. 0: tokens without ``exp``.
    token_ttl: int = DEFAULT_TOKEN_TTL

    @property
    def enabled(self) -> bool:
        return self.managed or self.server is not None


class PostgresSection(NamedTuple):
    """``[postgres]``: the postgres backend's warm pool (``daemon/backends/pg_pool``).

    ``spares``: clones of each snapshot's newest version the daemon keeps ready,
    so that ``up --from`` and ``reset`` take one instead of copying the template
    (0: no pool). ``$BRANCHDB_PG_SPARES`` wins.
    """

    spares: int = 0


class ServerSection(NamedTuple):
    url: str | None = None


class StateSection(NamedTuple):
    """``[state]``: the PostgreSQL state store shared with a daemon (None: the
    SQLite file in the data directory)."""

    url: str | None = None  # postgresql://…; $BRANCHDB_STATE_URL wins
    schema: str | None = None  # default "branchdb"
    declared: bool = False  # the file has a [state] table (not only the variable)


class Config(NamedTuple):
    root: Path  # directory holding branchdb.toml
    path: Path | None
    project: ProjectSection
    database: DatabaseSection = DatabaseSection()
    migrations: MigrationsSection = MigrationsSection()
    branches: BranchesSection = BranchesSection()
    server: ServerSection = ServerSection()
    snapshots: SnapshotsSection = SnapshotsSection()
    gc: GcSection = GcSection()
    state: StateSection = StateSection()
    libsql: LibsqlSection = LibsqlSection()
    postgres: PostgresSection = PostgresSection()
    docker: DockerSection = DockerSection()

    @property
    def data_dir(self) -> Path:
        return (self.root / self.database.data_dir).resolve()

    @property
    def migrations_dir(self) -> Path | None:
        d = self.migrations.dir
        return None if d is None else (self.root / d).resolve()


# ---------------------------------------------------------------- schema and parsing

_SCHEMA: dict[str, dict[str, type | tuple[type, ...]]] = {
    "project": {"name": str, "default_branch": str},
    "database": {
        "backend": str,
        "from": str,
        "data_dir": str,
        "server": str,
        "reset_on_drift": bool,
        "env_var": str,
        "url_format": str,
    },
    "migrations": {
        "dir": str,
        "format": str,
        "command": str,
        "timeout": str,
        "table": str,
        "schema": str,
    },
    "branches": {
        "protected": list,
        "ttl": str,
        "grace": str,
        "max_branches": int,
        "on_limit": str,
    },
    "gc": {"pace": (int, float)},
    "libsql": {
        "server": str,
        "admin": str,
        "key_file": str,
        "managed": bool,
        "public_url": str,
        "db_path": str,
        "listen": str,
        "token_env": list,
        "token_ttl": (str, int),
    },
    "docker": dict(DOCKER_SCHEMA),
    "server": {"url": str},
    "postgres": {"spares": int},
    "state": {"url": str, "schema": str},
    "snapshots": {"keep": int},  # plus [snapshots.NAME] tables, see _snapshots
}
_SNAPSHOT_DEF: dict[str, type] = {
    "source": str,
    "source_env": str,
    "rules": str,
    "schedule": str,
    "allow_unreviewed": bool,
}


def _snapshots(raw: Mapping[str, Any], where: str) -> SnapshotsSection:
    keep = raw.get("keep", 3)
    if isinstance(keep, bool) or not isinstance(keep, int) or keep < 1:
        raise ConfigError(f"{where}: snapshots.keep must be a whole number >= 1")
    defs: dict[str, SnapshotDefinition] = {}
    for name, body in raw.items():
        if name == "keep":
            continue
        if not isinstance(body, dict):
            raise _unknown(f"snapshots.{name}", ["keep", "<name>"], where)
        from branchdb.daemon.core.naming import snapshot_key

        try:
            snapshot_key(name)
        except ValueError as e:
            raise ConfigError(f"{where}: snapshots.{name}: {e}") from None
        for key, value in body.items():
            want = _SNAPSHOT_DEF.get(key)
            if want is None:
                raise _unknown(f"snapshots.{name}.{key}", list(_SNAPSHOT_DEF), where)
            if not isinstance(value, want):
                raise ConfigError(
                    f"{where}: snapshots.{name}.{key} must be a {want.__name__}"
                )
        if ("source" in body) == ("source_env" in body):
            raise ConfigError(
                f"{where}: snapshots.{name} needs exactly one of source, source_env"
            )
        schedule = body.get("schedule")
        defs[name] = SnapshotDefinition(
            name=name,
            source=body.get("source"),
            source_env=body.get("source_env"),
            rules=body.get("rules"),
            schedule=parse_duration(schedule, f"snapshots.{name}.schedule", where)
            if schedule
            else None,
            allow_unreviewed=body.get("allow_unreviewed", False),
        )
    return SnapshotsSection(keep=keep, definitions=defs)


def _unknown(key: str, known: list[str], where: str) -> ConfigError:
    import difflib

    hint = difflib.get_close_matches(key.split(".")[-1], known, n=1)
    more = f" (did you mean {hint[0]!r}?)" if hint else ""
    return ConfigError(f"{where}: unknown key {key!r}{more}")


def _check(raw: Mapping[str, Any], where: str) -> None:
    for section, body in raw.items():
        if section not in _SCHEMA:
            raise _unknown(section, list(_SCHEMA), where)
        if not isinstance(body, dict):
            raise ConfigError(f"{where}: {section!r} must be a table ([{section}])")
        for key, value in body.items():
            if section == "snapshots" and isinstance(value, dict):
                continue  # a [snapshots.NAME] definition, checked by _snapshots
            dotted = f"{section}.{key}"
            want = _SCHEMA[section].get(key)
            if want is None:
                raise _unknown(dotted, list(_SCHEMA[section]), where)
            if not isinstance(value, want) or (want is not bool and value is True):
                tname = want.__name__ if isinstance(want, type) else "value"
                raise ConfigError(f"{where}: {dotted} must be a {tname}, got {value!r}")


def from_mapping(raw: Mapping[str, Any], root: Path, path: Path | None) -> Config:
    """Validate *raw* (parsed TOML) and build a Config. Raises ConfigError."""
    where = str(path) if path else "configuration"
    _check(raw, where)
    p = raw.get("project", {})
    d = raw.get("database", {})
    m = raw.get("migrations", {})
    b = raw.get("branches", {})
    s = raw.get("server", {})

    name = locate.project_name(dict(raw), str(root))
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}", name):
        raise ConfigError(
            f"{where}: project.name {name!r} must be 1-63 characters of letters, "
            "digits, '.', '_' or '-'"
        )
    # The environment wins (a container image serves a checkout it cannot edit).
    backend = env.get("BRANCHDB_BACKEND") or d.get("backend", "libsql")
    if backend not in BACKENDS:
        raise ConfigError(
            f"{where}: database.backend {backend!r} is not one of {', '.join(BACKENDS)}"
        )
    fmt = m.get("format", "auto")
    from branchdb.daemon.migrations import REGISTRY as FORMATS

    if fmt != "auto" and fmt not in FORMATS:
        raise ConfigError(
            f"{where}: migrations.format {fmt!r} is not one of auto, "
            f"{', '.join(FORMATS)}"
        )
    if fmt == "command" and not m.get("command"):
        raise ConfigError(
            f'{where}: migrations.format = "command" needs migrations.command'
        )
    if b.get("max_branches", 1) < 1:
        raise ConfigError(f"{where}: branches.max_branches must be at least 1")
    if b.get("on_limit", "refuse") not in ("refuse", "evict"):
        raise ConfigError(f'{where}: branches.on_limit must be "refuse" or "evict"')
    pace = raw.get("gc", {}).get("pace", 1.0)
    if pace < 0:
        raise ConfigError(f"{where}: gc.pace must be >= 0 (0: no pacing)")
    protected = b.get("protected", ["main", "master"])
    if not all(isinstance(x, str) and x for x in protected):
        raise ConfigError(f"{where}: branches.protected must be a list of glob strings")
    snapshot = d.get("from")
    if snapshot is not None:
        from branchdb.daemon.core.naming import snapshot_key

        try:
            snapshot_key(snapshot.split("@")[0])
        except ValueError as e:
            raise ConfigError(f"{where}: database.from: {e}") from None
    server_url = env.get("BRANCHDB_PG_URL") or d.get("server")
    from branchdb.daemon.core.urlforms import FORMS as URL_FORMS

    url_format = d.get("url_format", "native")
    if url_format not in URL_FORMS:
        raise ConfigError(
            f"{where}: database.url_format {url_format!r} is not one of "
            f"{', '.join(URL_FORMS)}"
        )
    state = parse_state(raw.get("state", {}), where)
    libsql = _libsql(raw.get("libsql", {}), root, where)
    if backend == "libsql":
        if d.get("server"):
            raise ConfigError(
                f"{where}: database.server {d['server']!r} is for the postgres "
                "backend; libsql branches are local files unless a libsql server is "
                'configured: put it in [libsql] server = "http://HOST:PORT" (with '
                "admin and key_file), or set [libsql] managed = true"
            )
        server_url = None
        # SQLD with a server; "libsql" may come from $BRANCHDB_BACKEND, not the file.
        backend = locate.effective_backend(
            {**raw, "database": {**d, "backend": backend}}
        )
    elif raw.get("libsql"):
        raise ConfigError(f'{where}: [libsql] needs database.backend = "libsql"')
    if raw.get("docker") and backend != "docker":
        raise ConfigError(f'{where}: [docker] needs database.backend = "docker"')
    return Config(
        root=root,
        path=path,
        project=ProjectSection(
            name=name, default_branch=p.get("default_branch", "main")
        ),
        database=DatabaseSection(
            backend=backend,
            from_snapshot=snapshot,
            data_dir=Path(d.get("data_dir", DEFAULT_DATA_DIR)),
            server=server_url,
            reset_on_drift=d.get("reset_on_drift", False),
            env_var=d.get("env_var", "DATABASE_URL"),
            url_format=url_format,
        ),
        migrations=MigrationsSection(
            dir=Path(m["dir"]) if "dir" in m else None,
            format=fmt,
            command=m.get("command"),
            timeout=parse_duration(m["timeout"], "migrations.timeout", where)
            if "timeout" in m
            else 600,
            table=m.get("table"),
            schema=m.get("schema"),
        ),
        branches=BranchesSection(
            protected=tuple(protected),
            ttl=parse_duration(b["ttl"], "branches.ttl", where) if "ttl" in b else None,
            grace=parse_duration(b["grace"], "branches.grace", where)
            if "grace" in b
            else 3600,
            max_branches=b.get("max_branches"),
            on_limit=b.get("on_limit", "refuse"),
        ),
        gc=GcSection(pace=float(pace)),
        server=ServerSection(
            url=env.get("BRANCHDB_SERVER") or s.get("url"),
        ),
        snapshots=_snapshots(raw.get("snapshots", {}), where),
        state=state,
        libsql=libsql,
        postgres=_postgres(raw.get("postgres", {}), where),
        docker=parse_docker(raw.get("docker", {}), root, where, parse_duration),
    )


#: Spares are whole copies of a snapshot: more than this is a typo, not a pool.
MAX_SPARES = 100


def _postgres(raw: Mapping[str, Any], where: str) -> PostgresSection:
    value: Any = raw.get("spares", 0)
    text = env.get("BRANCHDB_PG_SPARES")
    if text is not None:
        where, value = "$BRANCHDB_PG_SPARES", text.strip()
        value = int(value) if value.isdigit() and len(value) < 4 else -1
    if isinstance(value, bool) or not 0 <= value <= MAX_SPARES:
        raise ConfigError(
            f"{where}: postgres.spares must be a whole number from 0 to {MAX_SPARES}"
        )
    return PostgresSection(spares=value)


def _libsql(raw: Mapping[str, Any], root: Path, where: str) -> LibsqlSection:
    server = env.get("BRANCHDB_SQLD_URL") or raw.get("server")
    admin = env.get("BRANCHDB_SQLD_ADMIN_URL") or raw.get("admin")
    key = env.get("BRANCHDB_SQLD_KEY_FILE") or raw.get("key_file")
    managed = raw.get("managed", False)
    for key_name, url in (("server", server), ("admin", admin)):
        if url is not None and not re.match(r"^https?://[^/\s]+/?$", url):
            raise ConfigError(
                f"{where}: libsql.{key_name} {url!r} must be http(s)://HOST:PORT"
            )
    if managed and server:
        raise ConfigError(
            f"{where}: libsql.managed = true runs the daemon's own sqld; "
            "remove libsql.server (or managed)"
        )
    if server and not (admin and key):
        raise ConfigError(
            f"{where}: libsql.server needs libsql.admin (sqld's admin API URL) and "
            "libsql.key_file (the Ed25519 private key sqld's --auth-jwt-key-file "
            "holds the public half of)"
        )
    public = env.get("BRANCHDB_SQLD_PUBLIC_URL") or raw.get("public_url")
    if public is not None and "{namespace}" not in public:
        raise ConfigError(
            f"{where}: libsql.public_url must contain {{namespace}} (sqld chooses "
            "the database by the host name's first label), e.g. \"libsql://"
            '{namespace}.db.example.com"'
        )
    token_env = raw.get("token_env", list(DEFAULT_TOKEN_ENV))
    if not all(
        isinstance(x, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", x)
        for x in token_env
    ):
        raise ConfigError(
            f"{where}: libsql.token_env must be environment variable names"
        )
    ttl = raw.get("token_ttl", "30d")
    if isinstance(ttl, int) and ttl != 0:
        raise ConfigError(f'{where}: libsql.token_ttl must be a duration ("30d") or 0')
    token_ttl = 0 if ttl in ("0", 0) else parse_duration(ttl, "libsql.token_ttl", where)
    if 0 < token_ttl < 600:
        raise ConfigError(
            f'{where}: libsql.token_ttl must be at least 10m (or "0": no expiry); '
            "a token is handed out with at least half of it left"
        )
    return LibsqlSection(
        server=server.rstrip("/") if server else None,
        admin=admin.rstrip("/") if admin else None,
        key_file=(root / key).resolve() if key else None,
        managed=managed,
        public_url=public,
        db_path=(root / raw["db_path"]).resolve() if raw.get("db_path") else None,
        listen=raw.get("listen"),
        token_env=tuple(token_env),
        token_ttl=token_ttl,
    )


_STATE_SCHEMA = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")


def parse_state(raw: Mapping[str, Any], where: str) -> StateSection:
    """``[state]``; ``$BRANCHDB_STATE_URL`` overrides its url. The one reading of it:
    the daemon's config (api/settings.py) parses its ``[state]`` here too."""
    url = env.get("BRANCHDB_STATE_URL") or raw.get("url") or None
    if url is not None and not url.startswith(("postgres://", "postgresql://")):
        raise ConfigError(
            f"{where}: state.url must be a postgresql:// URL "
            "(leave it unset for the embedded SQLite store)"
        )
    schema = raw.get("schema")
    if schema is not None and not _STATE_SCHEMA.fullmatch(schema):
        raise ConfigError(f"{where}: state.schema {schema!r} is not a valid name")
    return StateSection(url=url, schema=schema, declared=bool(raw))


def find_config(start: Path) -> Path | None:
    """Walk up from *start* to the file-system root looking for branchdb.toml."""
    found = locate.find_config(str(start))
    return None if found is None else Path(found)


def load(path: Path | None = None, cwd: Path | None = None) -> Config:
    """Load the configuration: *path*, else ``$BRANCHDB_CONFIG``, else the search.

    The parse of a file that validated is cached (see
    :mod:`branchdb.daemon.config.locate`).
    """
    if path is None and env.get("BRANCHDB_CONFIG"):
        path = Path(str(env.get("BRANCHDB_CONFIG")))
    if path is None:
        path = find_config(cwd or Path.cwd())
        if path is None:
            raise ConfigError(
                f"no {CONFIG_NAME} found in {cwd or Path.cwd()} or any parent "
                "directory; run `branchdb init` in your repository"
            )
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    path = path.resolve()
    file_stamp = locate.stamp(str(path))
    raw = locate.cached_config(str(path), file_stamp)
    if raw is not None:
        return from_mapping(raw, path.parent, path)
    import tomllib

    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text") from None
    config = from_mapping(raw, path.parent, path)
    locate.store_config_cache(str(path), file_stamp, raw)
    return config
