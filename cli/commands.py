"""The commands: one short adapter per command over a Client (or the engine).

Each ``cmd_*`` takes the parsed arguments through :class:`_Ctx`, makes one call and
prints the answer (human text, or ``--json``). Commands about branch databases go
through :mod:`branchdb.cli.client` — the engine in-process, or a daemon in remote
mode — and format the same JSON-shaped answer either way, so their output does not
depend on the mode. ``init``, ``hook``, ``serve``, ``token`` and ``snapshot check``
are local by nature. Modules a command needs are imported inside it, so a command
pays only for what it uses.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.errors import (
    BranchdbError,
    ConfigError,
    MigrationDrift,
    Refused,
    redact,
)

if TYPE_CHECKING:
    import argparse

    from branchdb.cli.client import Client
    from branchdb.daemon import wire
    from branchdb.daemon.config.project import Config
    from branchdb.daemon.core.engine import Engine


class UsageError(BranchdbError):
    """A command line that cannot be run as given (exit 2, as argparse's)."""

    exit_code = 2


class _Ctx:
    """Per-invocation context: parsed args, lazily loaded config, client, engine."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cwd = Path(args.directory).resolve() if args.directory else Path.cwd()
        self._config: Config | None = None
        self._engine: Engine | None = None
        self._client: Client | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from branchdb.daemon.config import project as config_mod

            path = Path(self.args.config) if self.args.config else None
            self._config = config_mod.load(path, cwd=self.cwd)
        return self._config

    @property
    def client(self) -> Client:
        """The engine in-process, or the daemon when a server is configured."""
        if self._client is None:
            if self.config.server.url:
                from branchdb.cli.remote import RemoteClient

                self._client = RemoteClient(self.config)
            else:
                from branchdb.cli.client import LocalClient

                self._client = LocalClient(self.engine)
        return self._client

    @property
    def engine(self) -> Engine:
        """The local engine, for commands that are local by nature."""
        if self._engine is None:
            from branchdb.daemon.core.engine import Engine
            from branchdb.daemon.vcs.repo import heads_of

            # A create records the default branch's head (GC's merge rule).
            cfg = self.config
            heads = heads_of(cfg.root, cfg.project.default_branch)
            self._engine = Engine(cfg, heads=heads)
        return self._engine

    def branch(self) -> str:
        """The BRANCH argument, else the checked-out branch; GitError (exit 2) for a
        name outside the one branch-name rule, before anything else happens."""
        from branchdb.daemon.core import branchname

        name: str | None = getattr(self.args, "branch", None)
        if name:
            return branchname.validate(name)
        from branchdb.daemon.vcs.repo import current_branch

        return branchname.validate(current_branch(self.cwd))

    def progress(self, message: str) -> None:
        if sys.stderr.isatty() and not getattr(self.args, "json", False):
            sys.stderr.write(f"  {message}\n")


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


# ------------------------------------------------------------------ commands
def cmd_up(ctx: _Ctx) -> int:
    a = ctx.args
    if a.hook:
        return _up_hook(ctx)
    branch = ctx.branch()
    try:
        res = ctx.client.up(
            branch,
            fresh=a.fresh,
            from_snapshot=a.from_snapshot,
            reset_on_drift=True if a.reset_on_drift else None,
            progress=ctx.progress,
        )
    except MigrationDrift:
        if not (a.json or a.quiet or ctx.config.server.url):
            _explain_drift(ctx, branch)
        raise
    if a.json:
        from branchdb.cli.output import emit_json

        emit_json(res)
    elif not a.quiet:
        _print(f"{branch}: {_up_summary(res)}")
        ran = res["command"]
        if a.verbose and ran and ran["output"].strip():
            _print(ran["output"].rstrip())
        _print(res["url"])
    return 0


def _explain_drift(ctx: _Ctx, branch: str) -> None:
    """On stderr: the database against what the branch's migrations make (on a
    scratch database) — what ``--reset-on-drift`` would throw away. Best effort:
    the drift error that follows is the answer."""
    try:
        data = ctx.client.review(branch, drift=True)
    except BranchdbError as e:
        sys.stderr.write(f"(could not compare the schemas: {redact(str(e))})\n")
        return
    from branchdb.daemon.review.render import diff_text

    sys.stderr.write(
        "What --reset-on-drift would change (+: only in the database, thrown away; "
        "-: what the migrations make and the database lacks):\n"
        + diff_text(data["diff"])
    )


def _up_summary(res: wire.UpBranch) -> str:
    """One line for an ``up`` answer."""
    if res["up_to_date"]:
        return "up to date"
    what = []
    if res["created"]:
        what.append(f"created ({res['source']})")
    if res["reset"]:
        what.append(f"rebuilt from {res['source']} after drift")
    n = len(res["applied"])
    ran = res.get("command")
    if ran:  # format "command": branchdb knows what ran and what the ledger says
        after = ran["after"] or "no ledger table branchdb knows"
        what.append(
            f"ran `{ran['command']}`: nothing changed ({after})"
            if ran["before"] == ran["after"]
            else f"ran `{ran['command']}`: {after} (was {ran['before'] or 'none'})"
        )
    else:
        what.append(
            f"{n} migration{'s' if n != 1 else ''} applied"
            if n
            else "no pending migrations"
        )
    if res["evicted"]:
        what.append(
            f"evicted {', '.join(res['evicted'])} (least recently used; "
            "branches.max_branches)"
        )
    return ", ".join(what)


def _up_hook(ctx: _Ctx) -> int:
    """``up`` as run by the post-checkout hook: never fails, one line of output."""
    from branchdb.daemon.core.errors import GitError

    try:
        try:
            branch = ctx.branch()
            client = ctx.client
        except (GitError, ConfigError):
            return 0  # detached HEAD or no branchdb.toml here: nothing to do
        res = client.up(branch, lock_timeout=60, progress=ctx.progress)
        sys.stderr.write(f"branchdb: {branch}: {_up_summary(res)}\n")
    except BranchdbError as e:
        sys.stderr.write(f"branchdb: warning: {redact(str(e))}\n")
    except Exception as e:  # the checkout must never fail because of us
        sys.stderr.write(f"branchdb: warning: {type(e).__name__}: {redact(str(e))}\n")
    return 0


def _url_in_form(ctx: _Ctx) -> str:
    """The branch URL in ``--format`` or ``[database] url_format``."""
    from branchdb.daemon.core.urlforms import convert

    url: str = ctx.client.use(ctx.branch())["url"]
    return convert(url, ctx.args.format or ctx.config.database.url_format)


def cmd_url(ctx: _Ctx) -> int:
    _print(_url_in_form(ctx))
    return 0


def cmd_env(ctx: _Ctx) -> int:
    from branchdb.cli.files import dotenv_value, update_dotenv
    from branchdb.daemon.core.urlforms import convert

    rec = ctx.client.use(ctx.branch())
    url = convert(rec["url"], ctx.args.format or ctx.config.database.url_format)
    var = ctx.args.var or ctx.config.database.env_var
    pairs = [(var, url)]
    token = rec.get("auth_token")
    if token:  # a libsql server branch: its URL needs its token
        pairs += [(name, token) for name in ctx.config.libsql.token_env]
    if ctx.args.write:
        path = Path(ctx.args.write)
        if not path.is_absolute():
            path = ctx.cwd / path
        for name, value in pairs:
            changed = update_dotenv(path, name, value)
            sys.stderr.write(
                f"{'updated' if changed else 'unchanged'}: {name} in {path}\n"
            )
    else:
        for name, value in pairs:
            _print(f"{name}={dotenv_value(value)}")
    return 0


def cmd_ls(ctx: _Ctx) -> int:
    from branchdb.cli.output import emit_json, table

    recs = ctx.client.list_branches()
    if ctx.args.json:
        emit_json(recs)
        return 0
    if not recs:
        _print("no branch databases yet (run `branchdb up`)")
        return 0
    rows = [
        [
            r["branch"],
            r["status"] + _running(r.get("running"), " (running)", " (stopped)"),
            r["source"],
            str(r["migrations_applied"]),
            r["last_used_at"],
            r["database"],
        ]
        for r in recs
    ]
    _print(
        table(
            rows, ["BRANCH", "STATUS", "SOURCE", "MIGRATIONS", "LAST USED", "DATABASE"]
        )
    )
    return 0


def _running(running: bool | None, yes: str, no: str) -> str:
    """How a scale-to-zero branch's server state reads ('' when not known)."""
    return "" if running is None else (yes if running else no)


def cmd_status(ctx: _Ctx) -> int:
    from branchdb.cli.output import emit_json, human_size

    data = ctx.client.status(ctx.branch())
    if ctx.args.json:
        emit_json(data)
        return 0
    lines = [
        f"branch:      {data['branch']}{' (protected)' if data['protected'] else ''}",
        f"database:    {data['database']} ({data['backend']}, "
        f"{human_size(data['size_bytes'])})",
        f"url:         {data['url']}",
        f"source:      {data['source']}"
        + (
            f" (clone: {data['strategy']})"
            if data["strategy"] not in (None, "fresh")
            else ""
        ),
        f"status:      {data['status']}"
        + ("" if data["exists"] else " — database missing!")
        + _running(data.get("running"), ", running", ", stopped (scaled to zero)"),
        f"migrations:  applied by `{data['command']}` (its ledger below)"
        if data.get("command")
        else f"migrations:  {data['migrations_applied']} applied, "
        f"{len(data['pending'])} pending"
        + (" (per the tool's ledger)" if data.get("applied") is not None else ""),
        f"created:     {data['created_at']}",
        f"last used:   {data['last_used_at']}",
        f"ttl:         {_ttl_text(data['ttl'])}",
    ]
    if data.get("ledger"):
        lines.insert(-3, f"ledger:      {data['ledger']}")
    lines += [f"  pending:   {p}" for p in data["pending"]]
    if data["problem"]:
        lines.append(f"problem:     {data['problem']}")
    _print("\n".join(lines))
    return 0


def cmd_diff(ctx: _Ctx) -> int:
    a = ctx.args
    if a.drift and a.against:
        raise UsageError("choose one of --against and --drift")
    data = ctx.client.review(ctx.branch(), against=a.against, drift=a.drift)
    if a.json:
        from branchdb.cli.output import emit_json

        emit_json(data)
    elif a.sql:
        sql = data["diff"]["sql"]
        if sql is None:
            raise Refused("no SQL for this diff")
        sys.stdout.write(sql)
    else:
        from branchdb.daemon.review.render import text

        sys.stdout.write(text(data))
    return 0


def cmd_migrate(ctx: _Ctx) -> int:
    res = ctx.client.migrate(
        ctx.branch(), dry_run=ctx.args.dry_run, progress=ctx.progress
    )
    if ctx.args.json:
        from branchdb.cli.output import emit_json

        emit_json(res)
    elif res["dry_run"]:
        _print("\n".join(res["pending"]) if res["pending"] else "nothing to apply")
    else:
        n = len(res["applied"])
        _print(f"{res['branch']}: {n} migration{'s' if n != 1 else ''} applied")
    return 0


def cmd_reset(ctx: _Ctx) -> int:
    a = ctx.args
    branch = ctx.branch()
    client = ctx.client
    if client.is_protected(branch) and not a.force:
        raise Refused(
            f"{branch!r} is protected (branches.protected); pass --force to reset it"
        )
    res = client.reset(
        branch,
        fresh=a.fresh,
        from_snapshot=a.from_snapshot,
        force=a.force,
        progress=ctx.progress,
    )
    if a.json:
        from branchdb.cli.output import emit_json

        emit_json(res)
    else:
        _print(
            f"{branch}: recreated from {res['source']}, "
            f"{len(res['applied'])} migrations applied"
        )
        _print(res["url"])
    return 0


def cmd_down(ctx: _Ctx) -> int:
    a = ctx.args
    branch = ctx.branch()
    if not a.yes:
        if not sys.stdin.isatty():
            raise Refused(
                f"dropping {branch!r}'s database needs confirmation: pass --yes"
            )
        answer = input(f"drop the database of {branch!r}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            _print("kept")
            return 1
    rec = ctx.client.down(branch, force=a.force)
    if a.json:
        from branchdb.cli.output import emit_json

        emit_json(rec)
    else:
        _print(f"{branch}: dropped {rec['database']}")
    return 0


def cmd_init(ctx: _Ctx) -> int:
    from branchdb.cli.files import write_starter

    path, found = write_starter(
        ctx.cwd, default_branch=ctx.args.default_branch, force=ctx.args.force
    )
    _print(f"wrote {path} ({found}); .branchdb/ added to .gitignore")
    _print("next: `branchdb hook install`, then `branchdb up`")
    return 0


def cmd_hook(ctx: _Ctx) -> int:
    from branchdb.cli import hook

    if ctx.args.action == "install":
        _print(f"installed {hook.install(ctx.cwd)}")
    elif ctx.args.action == "uninstall":
        path = hook.uninstall(ctx.cwd)
        _print(f"removed {path}" if path else "no branchdb hook installed")
    else:
        _print("installed" if hook.installed(ctx.cwd) else "not installed")
    return 0


def cmd_snapshot(ctx: _Ctx) -> int:
    from branchdb.cli.output import emit_json, human_size, table

    a = ctx.args
    if a.action == "check":
        return _snapshot_check(ctx)
    if a.action == "warm":
        return _snapshot_warm(ctx)
    client = ctx.client
    if a.action in ("create", "refresh"):
        if a.action == "refresh":
            snap = client.snapshot_refresh(a.name, progress=ctx.progress)
        elif not a.source:
            raise Refused("snapshot create needs --source PATH_OR_URL")
        else:
            snap = client.snapshot_create(
                a.name,
                a.source,
                rules=a.rules,
                allow_unreviewed=a.allow_unreviewed,
                progress=ctx.progress,
            )
        if a.json:
            emit_json(snap)
        else:
            _print(f"snapshot {snap['ref']} created ({human_size(snap['size_bytes'])})")
            if snap["sanitize"]:
                _print(_sanitize_summary(snap["sanitize"]))
    elif a.action == "ls":
        snaps = client.snapshot_list()
        if a.json:
            emit_json(snaps)
        elif not snaps:
            _print("no snapshots")
        else:
            rows = [
                [s["ref"], human_size(s["size_bytes"]), s["created_at"], s["source"]]
                for s in snaps
            ]
            _print(table(rows, ["SNAPSHOT", "SIZE", "CREATED", "SOURCE"]))
    else:
        removed = client.snapshot_rm(a.name)
        if a.json:
            emit_json(removed)
        else:
            _print("removed " + ", ".join(s["ref"] for s in removed))
    return 0


def _sanitize_summary(info: dict[str, Any]) -> str:
    line = (
        f"sanitized {info['tables']} tables ({info['rows']} rows): "
        f"{info['rules_applied']} column rules applied, "
        f"{info['originals_verified']} original values verified absent"
    )
    if info.get("allowed_unreviewed"):
        line += "; UNREVIEWED (allowed): " + ", ".join(info["allowed_unreviewed"])
    return line


def _snapshot_warm(ctx: _Ctx) -> int:
    """``snapshot warm``: spares made now, by this process (embedded mode only)."""
    from branchdb.daemon.config.project import MAX_SPARES

    a = ctx.args
    if ctx.config.server.url:
        raise Refused(
            "snapshot warm makes spares on the database server from this machine; "
            "with a daemon ([server] url) set [postgres] spares in the daemon's "
            "project and it keeps the pool filled"
        )
    count = a.spares if a.spares is not None else ctx.config.postgres.spares or 1
    if not 0 <= count <= MAX_SPARES:
        raise UsageError(f"--spares must be from 0 to {MAX_SPARES}")
    warmed = ctx.engine.snapshot_warm(a.name, count, progress=ctx.progress)
    if a.json:
        from branchdb.cli.output import emit_json

        emit_json(
            {"snapshot": warmed.snapshot, "ready": warmed.ready, "built": warmed.built}
        )
        return 0
    _print(
        f"snapshot {warmed.snapshot}: {warmed.ready} spares ready "
        f"({warmed.built} made now)"
    )
    return 0


def _snapshot_check(ctx: _Ctx) -> int:
    """``snapshot check``: the PII detector's report; 1 if a column lacks a rule."""
    from branchdb.cli.output import emit_json, table

    a = ctx.args
    if not a.source:
        raise Refused("snapshot check needs --source PATH_OR_URL")
    check = ctx.engine.snapshot_check(a.source, a.rules)
    findings = check.findings
    missing = {f.where for f in check.unreviewed} if a.rules else set()
    if a.write_rules:
        from branchdb.cli.files import atomic_write
        from branchdb.daemon.sanitize.detect import starter_rules

        target = Path(a.write_rules)
        if target.exists():
            raise Refused(f"{target} already exists; not overwriting it")
        atomic_write(target, starter_rules(list(findings)))
        sys.stderr.write(f"wrote a starter rules file to {target}: review it\n")
    if a.json:
        from branchdb.daemon.views import finding_dicts

        emit_json(finding_dicts(findings, check.unreviewed if a.rules else None))
    elif findings:
        rows = [
            [f.where, f.category, f.reason, f"[tables.{f.table}] {f.toml()}"]
            + ([("MISSING" if f.where in missing else "ok")] if a.rules else [])
            for f in findings
        ]
        head = ["COLUMN", "LOOKS LIKE", "WHY", "SUGGESTED RULE"]
        _print(table(rows, head + (["RULE"] if a.rules else [])))
    else:
        _print("no column looks personal or secret")
    if check.limits:
        sys.stderr.write(check.limits + "\n")
    return 1 if missing else 0


def cmd_gc(ctx: _Ctx) -> int:
    from branchdb.cli.output import emit_json, human_size, table

    dry_run = ctx.args.dry_run
    report = ctx.client.gc(dry_run=dry_run, progress=ctx.progress)
    if ctx.args.json:
        emit_json(report)
        return 0
    rows = []
    for c in report["candidates"]:
        if c["deleted"]:
            state = "deleted"
        elif c["marked_at"] is None:
            state = "collectable (a `gc` run marks it)" if dry_run else "marked"
        else:
            state = f"marked {c['marked_at']}, due {c['due_at']}"
        rows.append(
            [c["branch"] or "-", c["database"], c["policy"], state, c["evidence"]]
        )
    if rows:
        _print(table(rows, ["BRANCH", "DATABASE", "POLICY", "STATE", "EVIDENCE"]))
    else:
        _print("nothing to collect")
    for branch in report["missing"]:
        _print(f"warning: {branch!r} has a record but its database is missing")
    if not dry_run:
        deleted = sum(1 for c in report["candidates"] if c["deleted"])
        freed = human_size(report["freed_bytes"])
        _print(f"deleted {deleted} database(s), freed {freed}")
    return 0


def _ttl_text(info: wire.Ttl) -> str:
    from branchdb.daemon.gc.policy import human_duration

    if info["ttl"] is None:
        text = "never idle"
    else:
        text = human_duration(info["ttl"]) + f", idle after {info['idle_after']}"
    text += " (this branch)" if info["ttl_source"] == "branch" else " (project default)"
    if info["protected"]:
        text += "; protected: never collected"
    return text


def cmd_ttl(ctx: _Ctx) -> int:
    from branchdb.cli.output import emit_json

    data = ctx.client.set_ttl(ctx.branch(), ctx.args.ttl)
    if ctx.args.json:
        emit_json(data)
    else:
        _print(f"ttl of {data['branch']}: {_ttl_text(data)}")
    return 0


def _daemon_settings(ctx: _Ctx) -> Any:
    from branchdb.daemon.api import settings as daemon_config

    a = ctx.args
    return daemon_config.load(
        Path(a.daemon_config) if a.daemon_config else None,
        cwd=ctx.cwd,
        project_path=Path(a.config) if a.config else None,
        host=getattr(a, "host", None),
        port=getattr(a, "port", None),
    )


def cmd_serve(ctx: _Ctx) -> int:
    import uvicorn

    from branchdb.daemon.api import logs
    from branchdb.daemon.api.app import create_app
    from branchdb.daemon.config import env

    logs.configure(
        env.get("BRANCHDB_LOG_LEVEL") or "INFO",
        env.get("BRANCHDB_LOG_FORMAT") or "text",
    )
    settings = _daemon_settings(ctx)
    app = create_app(settings)
    logging.getLogger("branchdb.api").info(
        "serving %s on http://%s:%d (API docs: /docs)",
        ", ".join(settings.projects),
        settings.host,
        settings.port,
    )
    # log_config=None: uvicorn keeps the handlers logs.configure installed; SIGTERM
    # stops taking requests, then the lifespan lets running jobs finish (30 s).
    # uvicorn re-raises the signal once it has shut down: a SIGTERM that ended in a
    # clean shutdown is exit status 0 (what orchestrators count as success).
    import signal

    signal.signal(signal.SIGTERM, lambda *_: None)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,  # branchdb.access logs each request, with its id
    )
    return 0


def cmd_token(ctx: _Ctx) -> int:
    from branchdb.daemon.api import tokens
    from branchdb.daemon.store import open_store

    a = ctx.args
    if a.action == "revoke" and not a.id:
        raise UsageError("token revoke needs the token's ID (see `branchdb token ls`)")
    settings = _daemon_settings(ctx)
    store = open_store(
        settings.state_url, settings.data_dir / "state.db", settings.state_schema
    )
    if a.action == "create":
        if not a.scope:
            raise Refused("token create needs --scope read, ci or admin")
        unknown = [p for p in a.project if p not in settings.projects]
        if unknown:
            raise ConfigError(
                f"--project {unknown[0]!r}: the daemon serves no such project "
                f"(it serves {', '.join(sorted(settings.projects))})"
            )
        secret, tok = tokens.create(store, a.scope, a.name, a.project)
        reach = ", ".join(tok.projects) if tok.projects else "every project"
        sys.stderr.write(
            f"token {tok.name!r} ({tok.scope}, {reach}, id {tok.id}): "
            "shown once, keep it\n"
        )
        _print(secret)
    elif a.action == "ls":
        keys = ("id", "name", "scope", "projects", "created_at", "last_used_at")
        rows = [{k: r[k] for k in keys} for r in store.list_tokens()]
        if a.json:
            from branchdb.cli.output import emit_json

            emit_json(rows)
        else:
            from branchdb.cli.output import iso, table

            _print(
                table(
                    [
                        [
                            r["id"],
                            r["name"],
                            r["scope"],
                            ",".join(r["projects"]) or "(all)",
                            iso(r["created_at"]),
                        ]
                        for r in rows
                    ],
                    ["ID", "NAME", "SCOPE", "PROJECTS", "CREATED"],
                )
                if rows
                else "no tokens"
            )
    else:
        if not a.id or not tokens.revoke(store, a.id):
            raise Refused(f"no token with id {a.id!r} (see `branchdb token ls`)")
        _print(f"revoked {a.id}")
    return 0
