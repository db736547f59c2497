"""Plan and apply migrations with a format's own ledger: one migration, one transaction.

:func:`plan` is read-only: it compares the branch's files with the ledger in the
database and says what is pending, or refuses with MigrationDrift (the ledger holds
migrations the branch lacks, or a pending migration sorts before an applied one: after
a rebase, main's ``0005`` arrives below the branch's applied ``0006``, which drizzle's
own migrator would silently skip) or MigrationEdited (an applied file changed). When
both are true, drift is reported: it is the likelier root cause (a rebase) and
``branchdb reset`` cures both.

:func:`apply` runs the pending migrations under the database's migration lock. Each
migration runs in its own transaction together with its ledger row, so a failing
statement leaves the database exactly as before that migration; earlier migrations of
the same run stay applied. A migration runs outside a transaction only when its file
opts out (dbmate ``transaction:false``, ``-- branchdb:no-transaction``) or when one of
its statements cannot run in one (``CREATE INDEX CONCURRENTLY``, ``VACUUM``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

from branchdb.daemon.core.dbsession import DbSession
from branchdb.daemon.core.errors import (
    DatabaseError,
    Divergence,
    MigrationDrift,
    MigrationEdited,
    MigrationError,
    MigrationFailed,
)
from branchdb.daemon.core.models import Applied, Migration, MigrationPlan
from branchdb.daemon.migrations import sqlsplit
from branchdb.daemon.migrations.base import Format

Progress = Callable[[Migration], None]

_NOT_ON_BRANCH = "applied in this database, but this branch has no such migration"


def plan(
    fmt: Format,
    migrations: Sequence[Migration],
    db: DbSession,
    known: Mapping[str, str] | None = None,
) -> MigrationPlan:
    """What :func:`apply` would run. Read-only.

    *known* maps key → checksum of what branchdb recorded as applied to this database
    earlier; it stands in for the ledger's checksum when the tool keeps none
    (golang-migrate, dbmate), and tells golang-migrate's high-water mark which
    versions really ran. Raises MigrationDrift, then MigrationEdited, or the format's
    MigrationError (a dirty golang-migrate ledger, a failed flyway row).
    """
    return evaluate(fmt, migrations, fmt.applied(db), known or {})


def evaluate(
    fmt: Format,
    migrations: Sequence[Migration],
    applied: Sequence[Applied],
    known: Mapping[str, str],
) -> MigrationPlan:
    """:func:`plan` without the database: compare *migrations* with ledger *applied*."""
    ordered = sorted(migrations, key=lambda m: m.order)
    if getattr(fmt, "ledger_is_high_water_mark", False):
        done, drift = _high_water_mark(ordered, applied, known)
    else:
        done, drift = _per_row(ordered, applied)
    if drift:
        raise MigrationDrift(drift)
    recorded = {a.key: a.checksum for a in applied}
    edited = [
        m.name
        for m in done
        if (expected := recorded.get(m.key) or known.get(m.key)) is not None
        and expected != m.checksum
        and expected not in m.meta.get("also_matches", ())
    ]
    if edited:
        raise MigrationEdited(edited)
    done_keys = {m.key for m in done}
    pending = [m for m in ordered if m.key not in done_keys]
    refused = [m for m in pending if m.meta.get("refused")]
    if refused:
        # A file the team's tool would refuse must not work on a branch database
        # and then fail in CI or production.
        raise MigrationError(
            "; ".join(f"migration {m.name}: {m.meta['refused']}" for m in refused)
        )
    if getattr(fmt, "ledger_is_high_water_mark", False):
        applied = [Applied(key=m.key, label=m.name) for m in done]
    return MigrationPlan(pending=pending, applied=list(applied))


def _per_row(
    ordered: list[Migration], applied: Sequence[Applied]
) -> tuple[list[Migration], list[Divergence]]:
    by_key = {m.key: m for m in ordered}
    in_ledger = {a.key for a in applied}
    drift = [
        Divergence("missing", a.label or a.key, _NOT_ON_BRANCH)
        for a in applied
        if a.key not in by_key
    ]
    done = [m for m in ordered if m.key in in_ledger]
    if done:
        last = max(i for i, m in enumerate(ordered) if m.key in in_ledger)
        drift += [
            Divergence(
                "out-of-order",
                m.name,
                f"not applied, but {ordered[last].name}, which comes after it, is",
            )
            for m in ordered[:last]
            if m.key not in in_ledger
        ]
    return done, drift


def _high_water_mark(
    ordered: list[Migration], applied: Sequence[Applied], known: Mapping[str, str]
) -> tuple[list[Migration], list[Divergence]]:
    """golang-migrate: the ledger names one version; everything up to it counts."""
    if not applied:
        return [], []
    mark = applied[-1]
    by_key = {m.key: m for m in ordered}
    top = by_key.get(mark.key)
    if top is None:
        return [], [Divergence("missing", mark.label or mark.key, _NOT_ON_BRANCH)]
    done = [m for m in ordered if m.order <= top.order]
    drift: list[Divergence] = []
    # The ledger cannot tell which versions below the mark really ran; what branchdb
    # recorded can, as long as that record is about this database (it has the mark).
    if mark.key in known:
        drift += [
            Divergence("missing", f"version {k}", _NOT_ON_BRANCH)
            for k in known
            if k not in by_key
        ]
        drift += [
            Divergence(
                "out-of-order",
                m.name,
                f"never applied here, but it sorts before the applied {top.name}; "
                "golang-migrate would skip it",
            )
            for m in done
            if m.key not in known
        ]
        done = [m for m in done if m.key in known]
    return done, drift


def apply(
    fmt: Format,
    plan: MigrationPlan,
    db: DbSession,
    progress: Progress | None = None,
) -> list[Migration]:
    """Apply *plan*'s pending migrations in order; return the ones applied.

    Holds ``db.migration_lock()``, creates the ledger if needed, and re-reads it
    inside the lock: migrations another process applied meanwhile are skipped.
    ``progress(m)`` is called before each migration starts. Raises MigrationFailed
    naming the file and statement; with a transaction, that migration was rolled
    back and the ones before it stay applied.
    """
    if not plan.pending:
        return []
    scripts = [(m, _statements(m, db.dialect)) for m in plan.pending]
    done: list[Migration] = []
    with db.migration_lock():
        try:
            with db.transaction() as tx:
                fmt.ensure_ledger(tx)
        except DatabaseError as e:
            raise DatabaseError(f"cannot create the {fmt.name} ledger: {e}") from None
        still = {m.key for m in _still_pending(fmt, plan, db)}
        for m, statements in scripts:
            if m.key not in still:
                continue
            if progress is not None:
                progress(m)
            autocommit = any(
                sqlsplit.needs_autocommit(s, db.dialect) for s in statements
            )
            if m.transactional and not autocommit:
                _run_in_transaction(fmt, db, m, statements)
            else:
                _run_without_transaction(fmt, db, m, statements)
            done.append(m)
    return done


def _statements(m: Migration, dialect: str) -> list[str]:
    if m.statements:
        return list(m.statements)
    try:
        return sqlsplit.split(m.sql, dialect)
    except MigrationError as e:
        raise MigrationError(f"migration {m.name}: {e}") from None


def _still_pending(fmt: Format, plan: MigrationPlan, db: DbSession) -> list[Migration]:
    fresh = fmt.applied(db)
    if not getattr(fmt, "ledger_is_high_water_mark", False):
        keys = {a.key for a in fresh}
        return [m for m in plan.pending if m.key not in keys]
    if not fresh:
        return plan.pending
    mark = fresh[-1].key
    pending_keys = [m.key for m in plan.pending]
    if mark in pending_keys:  # someone else got this far while we waited
        return plan.pending[pending_keys.index(mark) + 1 :]
    if mark in {a.key for a in plan.applied}:
        return plan.pending
    raise MigrationDrift(
        [Divergence("missing", fresh[-1].label or mark, _NOT_ON_BRANCH)]
    )


def _run_in_transaction(
    fmt: Format, db: DbSession, m: Migration, statements: list[str]
) -> None:
    number, current = 0, "BEGIN"
    try:
        with db.transaction() as tx:
            started = time.monotonic()
            for number, current in enumerate(statements, 1):  # noqa: B007
                tx.execute(current)
            number, current = len(statements) + 1, f"record in the {fmt.name} ledger"
            fmt.record(tx, m, _elapsed_ms(started))
            current = "COMMIT"
    except DatabaseError as e:
        raise MigrationFailed(m.name, number, current, str(e)) from None


def _run_without_transaction(
    fmt: Format, db: DbSession, m: Migration, statements: list[str]
) -> None:
    number, current = 0, f"mark as started in the {fmt.name} ledger"
    try:
        with db.transaction() as tx:
            fmt.before(tx, m)
        started = time.monotonic()
        for number, current in enumerate(statements, 1):  # noqa: B007
            db.execute(current)
        number, current = len(statements) + 1, f"record in the {fmt.name} ledger"
        with db.transaction() as tx:
            fmt.record(tx, m, _elapsed_ms(started))
    except DatabaseError as e:
        raise MigrationFailed(
            m.name, number, current, str(e), rolled_back=False
        ) from None


def _elapsed_ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
