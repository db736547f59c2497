"""A project's migrations: where they are, whether they changed, applying them.

Plain functions over a :class:`~branchdb.daemon.config.project.Config`; the engine
calls them under its per-branch lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.config.project import Config
from branchdb.daemon.core.errors import ConfigError, MigrationError
from branchdb.daemon.core.models import BranchRecord, Migration
from branchdb.daemon.migrations import files as migration_files
from branchdb.daemon.migrations.base import DirFiles, Format, MigrationFiles

if TYPE_CHECKING:
    from branchdb.daemon.core.dbsession import DbSession

Progress = Callable[[str], None]


def _folder(config: Config) -> str | None:
    cfg = config.migrations
    return migration_files.migrations_dir(
        str(config.root), str(cfg.dir) if cfg.dir else None, cfg.format
    )


def source(
    config: Config, files: MigrationFiles | None = None
) -> tuple[str, MigrationFiles] | None:
    """The format name and files of *config*'s migrations, or None if it has none.

    *files* replaces the migrations directory on disk (the daemon passes a git tree
    at a pull request's head commit). Raises ConfigError for a missing configured
    directory or a layout no format recognises.
    """
    cfg = config.migrations
    if files is not None:
        if cfg.format == "command":
            return "command", files
    else:
        folder = _folder(config)
        if cfg.format == "command":
            return "command", DirFiles(Path(folder or config.root))
        if folder is None:
            return None
        if not os.path.isdir(folder):
            raise ConfigError(
                f"migrations.dir {cfg.dir} does not exist (looked in {folder})"
            )
        files = DirFiles(Path(folder))
    name = cfg.format
    if name == "auto":
        from branchdb.daemon.migrations import detect_format

        detected = detect_format(files)
        if detected is None:
            if not files.paths():
                return None
            where = getattr(files, "root", files)
            raise ConfigError(
                f"cannot tell the migrations format of {where}; set "
                "[migrations] format (drizzle, prisma, golang-migrate, flyway, "
                "dbmate, sql or command)"
            )
        name = detected
    return name, files


def _format(config: Config, name: str) -> Format:
    """The format *name*, with drizzle's ledger table and schema when configured
    (``[migrations] table``/``schema``, else ``migrations: { table, schema }`` in
    the project's drizzle config)."""
    from branchdb.daemon.migrations import get_format

    if name != "drizzle":
        return get_format(name)
    from branchdb.daemon.migrations.formats.drizzle import DrizzleFormat, config_ledger

    table, schema = config_ledger(config.root)
    return DrizzleFormat(
        table=config.migrations.table or table,
        schema=config.migrations.schema or schema,
    )


def fingerprint(config: Config, files: MigrationFiles | None = None) -> str:
    """Hash of everything that decides what ``migrate`` would do (cheap).

    Raises MigrationError naming a file that cannot be read (a dangling link)."""
    cfg = config.migrations
    if files is not None:
        return migration_files.fingerprint_files(
            files.paths(), files.read, cfg.format, cfg.command
        )
    folder = _folder(config)
    try:
        return migration_files.fingerprint(folder, cfg.format, cfg.command)
    except OSError as e:
        raise MigrationError(
            migration_files.unreadable(e.filename or str(folder), e)
        ) from None


def run(
    config: Config,
    rec: BranchRecord,
    session: DbSession,
    src: tuple[str, MigrationFiles] | None,
    *,
    dry_run: bool,
    progress: Progress,
    outcome: dict[str, Any] | None = None,
) -> tuple[list[Migration], list[Migration], dict[str, str]]:
    """Apply (or with *dry_run* only plan) *src* on *session*.

    Returns (applied now, pending, key→checksum of everything applied). For
    ``format = "command"`` it fills *outcome* with what ran: ``command``, its
    ``output`` (redacted) and what the tool's ledger said ``before`` and ``after``
    (:func:`~branchdb.daemon.migrations.ledger.describe`). Raises what
    :mod:`branchdb.daemon.migrations.runner` raises.
    """
    if src is None:
        return [], [], dict(rec.applied)
    from branchdb.daemon.migrations import runner

    name, files = src
    fmt = _format(config, name)
    if fmt.runs_command:
        if dry_run:
            return [], [], dict(rec.applied)
        from branchdb.daemon.migrations import ledger

        tables = config.migrations.ledger_tables
        before = ledger.describe(session, tables, config.migrations.schema)
        progress(f"running {config.migrations.command}")
        from branchdb.daemon.core.urlforms import convert

        # A libsql server branch's URL opens nothing without its token.
        token = getattr(session, "auth_token", None)
        output = fmt.run_command(  # type: ignore[attr-defined]
            config.migrations.command,
            convert(session.url, config.database.url_format),
            config.root,
            config.migrations.timeout,
            env_var=config.database.env_var,
            secret_env={n: token for n in config.libsql.token_env} if token else None,
        )
        after = ledger.describe(session, tables, config.migrations.schema)
        if outcome is not None:
            outcome.update(
                command=config.migrations.command,
                output=output,
                before=before,
                after=after,
            )
        return [], [], dict(rec.applied)
    migrations = fmt.load(files)
    plan = runner.plan(fmt, migrations, session, known=rec.applied)
    if dry_run:
        return [], plan.pending, dict(rec.applied)

    def announce(m: Migration) -> None:
        progress(f"applying {m.name}")

    done = runner.apply(fmt, plan, session, progress=announce)
    pending_keys = {m.key for m in plan.pending}
    applied = {m.key: m.checksum for m in migrations if m.key not in pending_keys}
    applied.update({m.key: m.checksum for m in done})
    return done, [], applied


def inspect(
    config: Config,
    rec: BranchRecord,
    session: DbSession,
    src: tuple[str, MigrationFiles] | None,
) -> tuple[list[str] | None, list[str], str | None]:
    """(applied, pending, ledger) as the database's own ledger says now. Read-only.

    *applied* names what the tool's ledger records (a file name where the branch has
    the file, else the ledger's own label); *ledger* is its one-line description.
    For ``format = "command"`` only *ledger* is known (*applied* is None). Raises what
    :func:`~branchdb.daemon.migrations.runner.plan` raises.
    """
    from branchdb.daemon.migrations import ledger, runner

    text = ledger.describe(
        session, config.migrations.ledger_tables, config.migrations.schema
    )
    if src is None:
        return [], [], text
    name, files = src
    fmt = _format(config, name)
    if fmt.runs_command:
        return None, [], text
    migrations = fmt.load(files)
    plan = runner.plan(fmt, migrations, session, known=rec.applied)
    by_key = {m.key: m.name for m in migrations}
    applied = [by_key.get(a.key, a.label or a.key) for a in plan.applied]
    return applied, [m.name for m in plan.pending], text
