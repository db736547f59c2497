"""The commands: one short adapter per command over the engine (or the daemon).

Each ``cmd_*`` takes the parsed arguments through :class:`_Ctx`, calls one engine
method and prints the answer (human text, or ``--json``). Modules a command needs are
imported inside it, so a command pays only for what it uses.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.errors import BranchdbError, Refused, redact

if TYPE_CHECKING:
    import argparse

    from branchdb.daemon.config import Config
    from branchdb.daemon.engine import Engine


class _Ctx:
    """Per-invocation context: parsed args, lazily loaded config and engine."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.cwd = Path(args.directory).resolve() if args.directory else Path.cwd()
        self._engine: Engine | None = None

    @property
    def config(self) -> Config:
        return self.engine.config

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from branchdb.daemon import config as config_mod
            from branchdb.daemon.engine import Engine

            path = Path(self.args.config) if self.args.config else None
            config = config_mod.load(path, cwd=self.cwd)
            if config.server.url:
                from branchdb.daemon.errors import ConfigError

                # The CLI's remote mode (issue #5) is not built yet; say so rather
                # than silently working on local databases.
                raise ConfigError(
                    "server.url / BRANCHDB_SERVER is set, but the CLI's remote mode "
                    "is not available yet; unset it to use local databases, or use "
                    "the daemon's HTTP API"
                )
            self._engine = Engine(config)
        return self._engine

    def branch(self) -> str:
        name: str | None = getattr(self.args, "branch", None)
        if name:
            from branchdb.daemon.git_repo import validate_branch_name

            return validate_branch_name(name)
        from branchdb.daemon.git_repo import current_branch

        return current_branch(self.cwd)

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
    res = ctx.engine.up(
        branch,
        fresh=a.fresh,
        from_snapshot=a.from_snapshot,
        reset_on_drift=True if a.reset_on_drift else None,
        progress=ctx.progress,
    )
    if a.json:
        from branchdb.cli.output import emit_json, up_json

        emit_json(up_json(res))
    elif not a.quiet:
        _print(f"{branch}: {_up_summary(res)}")
        _print(res.record.url)
    return 0


def _up_summary(res: object) -> str:
    from branchdb.daemon.engine import UpResult

    assert isinstance(res, UpResult)
    if res.up_to_date:
        return "up to date"
    what = []
    if res.created:
        what.append(f"created ({res.record.source})")
    if res.reset:
        what.append(f"rebuilt from {res.record.source} after drift")
    n = len(res.applied)
    what.append(
        f"{n} migration{'s' if n != 1 else ''} applied"
        if n
        else "no pending migrations"
    )
    if res.evicted:
        what.append(
            f"evicted {', '.join(res.evicted)} (least recently used; "
            "branches.max_branches)"
        )
    return ", ".join(what)


def _up_hook(ctx: _Ctx) -> int:
    """``up`` as run by the post-checkout hook: never fails, one line of output."""
    from branchdb.daemon.errors import ConfigError, GitError

    try:
        try:
            branch = ctx.branch()
            engine = ctx.engine
        except (GitError, ConfigError):
            return 0  # detached HEAD or no branchdb.toml here: nothing to do
        res = engine.up(branch, lock_timeout=60, progress=ctx.progress)
        sys.stderr.write(f"branchdb: {branch}: {_up_summary(res)}\n")
    except BranchdbError as e:
        sys.stderr.write(f"branchdb: warning: {redact(str(e))}\n")
    except Exception as e:  # the checkout must never fail because of us
        sys.stderr.write(f"branchdb: warning: {type(e).__name__}: {redact(str(e))}\n")
    return 0


def cmd_url(ctx: _Ctx) -> int:
    _print(ctx.engine.url(ctx.branch()))
    return 0


def cmd_env(ctx: _Ctx) -> int:
    from branchdb.cli.files import dotenv_value, update_dotenv

    url = ctx.engine.url(ctx.branch())
    var = ctx.args.var or ctx.config.database.env_var
    if ctx.args.write:
        path = Path(ctx.args.write)
        if not path.is_absolute():
            path = ctx.cwd / path
        changed = update_dotenv(path, var, url)
        sys.stderr.write(f"{'updated' if changed else 'unchanged'}: {var} in {path}\n")
    else:
        _print(f"{var}={dotenv_value(url)}")
    return 0


def cmd_ls(ctx: _Ctx) -> int:
    from branchdb.cli.output import branch_json, emit_json, iso, table

    recs = ctx.engine.list_branches()
    if ctx.args.json:
        emit_json([branch_json(r) for r in recs])
        return 0
    if not recs:
        _print("no branch databases yet (run `branchdb up`)")
        return 0
    rows = [
        [
            r.branch,
            r.status,
            r.source,
            str(len(r.applied)),
            iso(r.last_used_at),
            r.database,
        ]
        for r in recs
    ]
    _print(
        table(
            rows, ["BRANCH", "STATUS", "SOURCE", "MIGRATIONS", "LAST USED", "DATABASE"]
        )
    )
    return 0


def cmd_status(ctx: _Ctx) -> int:
    from branchdb.cli.output import branch_json, emit_json, human_size
    from branchdb.daemon.views import ttl_dict

    st = ctx.engine.status(ctx.branch())
    rec = st["record"]
    data = {
        **branch_json(rec),
        "exists": st["exists"],
        "size_bytes": st["size_bytes"],
        "pending": st["pending"],
        "problem": redact(st["problem"]) if st["problem"] else None,
        "protected": ctx.engine.is_protected(rec.branch),
        "ttl": ttl_dict(st["ttl"]),
    }
    if ctx.args.json:
        emit_json(data)
        return 0
    lines = [
        f"branch:      {rec.branch}{' (protected)' if data['protected'] else ''}",
        f"database:    {rec.database} ({rec.backend}, {human_size(st['size_bytes'])})",
        f"url:         {rec.url}",
        f"source:      {rec.source}"
        + (
            f" (clone: {data['strategy']})"
            if data["strategy"] not in (None, "fresh")
            else ""
        ),
        f"status:      {rec.status}" + ("" if st["exists"] else " — database missing!"),
        f"migrations:  {len(rec.applied)} applied, {len(st['pending'])} pending",
        f"created:     {data['created_at']}",
        f"last used:   {data['last_used_at']}",
        f"ttl:         {_ttl_text(data['ttl'])}",
    ]
    lines += [f"  pending:   {p}" for p in st["pending"]]
    if data["problem"]:
        lines.append(f"problem:     {data['problem']}")
    _print("\n".join(lines))
    return 0


def cmd_migrate(ctx: _Ctx) -> int:
    res = ctx.engine.migrate(
        ctx.branch(), dry_run=ctx.args.dry_run, progress=ctx.progress
    )
    if ctx.args.json:
        from branchdb.cli.output import emit_json, migrate_json

        emit_json(migrate_json(res))
    elif res.dry_run:
        _print("\n".join(res.pending) if res.pending else "nothing to apply")
    else:
        n = len(res.applied)
        _print(f"{res.record.branch}: {n} migration{'s' if n != 1 else ''} applied")
    return 0


def cmd_reset(ctx: _Ctx) -> int:
    a = ctx.args
    branch = ctx.branch()
    if ctx.engine.is_protected(branch) and not a.force:
        raise Refused(
            f"{branch!r} is protected (branches.protected); pass --force to reset it"
        )
    res = ctx.engine.reset(
        branch, fresh=a.fresh, from_snapshot=a.from_snapshot, progress=ctx.progress
    )
    if a.json:
        from branchdb.cli.output import branch_json, emit_json

        emit_json({**branch_json(res.record), "applied": res.applied})
    else:
        _print(
            f"{branch}: recreated from {res.record.source}, "
            f"{len(res.applied)} migrations applied"
        )
        _print(res.record.url)
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
    rec = ctx.engine.down(branch, force=a.force)
    if a.json:
        from branchdb.cli.output import branch_json, emit_json

        emit_json({**branch_json(rec), "dropped": True})
    else:
        _print(f"{branch}: dropped {rec.database}")
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
    from branchdb.cli.output import emit_json, human_size, iso, snapshot_json, table

    a = ctx.args
    eng = ctx.engine
    if a.action == "create":
        if not a.source:
            raise Refused("snapshot create needs --source PATH_OR_URL")
        snap = eng.snapshot_create(
            a.name,
            a.source,
            rules_path=a.rules,
            allow_unreviewed=a.allow_unreviewed,
            progress=ctx.progress,
        )
        if a.json:
            emit_json(snapshot_json(snap))
        else:
            _print(f"snapshot {snap.ref} created ({human_size(snap.size_bytes)})")
            if "sanitize" in snap.info:
                _print(_sanitize_summary(snap.info["sanitize"]))
    elif a.action == "check":
        return _snapshot_check(ctx)
    elif a.action == "refresh":
        snap = eng.snapshot_refresh(a.name, progress=ctx.progress)
        if a.json:
            emit_json(snapshot_json(snap))
        else:
            _print(f"snapshot {snap.ref} created ({human_size(snap.size_bytes)})")
            if "sanitize" in snap.info:
                _print(_sanitize_summary(snap.info["sanitize"]))
    elif a.action == "ls":
        snaps = eng.snapshot_list()
        if a.json:
            emit_json([snapshot_json(s) for s in snaps])
        elif not snaps:
            _print("no snapshots")
        else:
            rows = [
                [s.ref, human_size(s.size_bytes), iso(s.created_at), redact(s.source)]
                for s in snaps
            ]
            _print(table(rows, ["SNAPSHOT", "SIZE", "CREATED", "SOURCE"]))
    else:
        removed = eng.snapshot_rm(a.name)
        if a.json:
            emit_json([snapshot_json(s) for s in removed])
        else:
            _print("removed " + ", ".join(s.ref for s in removed))
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


def _snapshot_check(ctx: _Ctx) -> int:
    """``snapshot check``: the PII detector's report; 1 if a column lacks a rule."""
    from branchdb.cli.output import emit_json, table

    a = ctx.args
    if not a.source:
        raise Refused("snapshot check needs --source PATH_OR_URL")
    findings, unreviewed = ctx.engine.snapshot_check(a.source, a.rules)
    missing = {f.where for f in unreviewed} if a.rules else set()
    if a.write_rules:
        from branchdb.cli.files import atomic_write
        from branchdb.daemon.sanitize.detect import starter_rules

        target = Path(a.write_rules)
        if target.exists():
            raise Refused(f"{target} already exists; not overwriting it")
        atomic_write(target, starter_rules(findings))
        sys.stderr.write(f"wrote a starter rules file to {target}: review it\n")
    if a.json:
        emit_json(
            [
                {
                    "column": f.where,
                    "category": f.category,
                    "reason": f.reason,
                    "suggestion": f"[tables.{f.table}] {f.toml()}",
                    "has_rule": f.where not in missing if a.rules else None,
                }
                for f in findings
            ]
        )
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
    return 1 if missing else 0


def cmd_gc(ctx: _Ctx) -> int:
    from branchdb.cli.output import emit_json, gc_json, human_size, iso, table

    report = ctx.engine.gc(dry_run=ctx.args.dry_run, progress=ctx.progress)
    if ctx.args.json:
        emit_json(gc_json(report, dry_run=ctx.args.dry_run))
        return 0
    deleted = {id(c) for c in report.deleted}
    rows = []
    for c in report.candidates:
        if id(c) in deleted:
            state = "deleted"
        elif c.marked_at is None:
            state = (
                "collectable (a `gc` run marks it)" if ctx.args.dry_run else "marked"
            )
        else:
            state = f"marked {iso(c.marked_at)}, due {iso(c.due_at)}"
        rows.append([c.branch or "-", c.database, c.reason, state, c.evidence])
    if rows:
        _print(table(rows, ["BRANCH", "DATABASE", "POLICY", "STATE", "EVIDENCE"]))
    else:
        _print("nothing to collect")
    for branch in report.missing:
        _print(f"warning: {branch!r} has a record but its database is missing")
    if not ctx.args.dry_run:
        freed = sum(c.size_bytes for c in report.deleted)
        _print(f"deleted {len(report.deleted)} database(s), freed {human_size(freed)}")
    return 0


def _ttl_text(info: dict[str, Any]) -> str:
    from branchdb.daemon.gc import human_duration

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
    from branchdb.daemon.views import ttl_dict

    data = ttl_dict(ctx.engine.set_ttl(ctx.args.branch, ctx.args.ttl))
    if ctx.args.json:
        emit_json(data)
    else:
        _print(f"ttl of {data['branch']}: {_ttl_text(data)}")
    return 0


def _daemon_settings(ctx: _Ctx) -> Any:
    from branchdb.daemon import daemon_config

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

    from branchdb.daemon.api.app import create_app

    settings = _daemon_settings(ctx)
    app = create_app(settings)
    sys.stderr.write(
        f"branchdb: serving {', '.join(settings.projects)} "
        f"on http://{settings.host}:{settings.port} (API docs: /docs)\n"
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
    return 0


def cmd_token(ctx: _Ctx) -> int:
    from branchdb.daemon import tokens
    from branchdb.daemon.store.sqlite_store import SqliteStore

    a = ctx.args
    store = SqliteStore(_daemon_settings(ctx).data_dir / "state.db")
    if a.action == "create":
        if not a.scope:
            raise Refused("token create needs --scope read, ci or admin")
        secret, tok = tokens.create(store, a.scope, a.name)
        sys.stderr.write(
            f"token {tok.name!r} ({tok.scope}, id {tok.id}): shown once, keep it\n"
        )
        _print(secret)
    elif a.action == "ls":
        rows = [
            {k: r[k] for k in ("id", "name", "scope", "created_at", "last_used_at")}
            for r in store.list_tokens()
        ]
        if a.json:
            from branchdb.cli.output import emit_json

            emit_json(rows)
        else:
            from branchdb.cli.output import iso, table

            _print(
                table(
                    [
                        [r["id"], r["name"], r["scope"], iso(r["created_at"])]
                        for r in rows
                    ],
                    ["ID", "NAME", "SCOPE", "CREATED"],
                )
                if rows
                else "no tokens"
            )
    else:
        if not a.id or not tokens.revoke(store, a.id):
            raise Refused(f"no token with id {a.id!r} (see `branchdb token ls`)")
        _print(f"revoked {a.id}")
    return 0
