"""Crash recovery: clean up the provisioning a killed process left half done.

How a branch database is made (:meth:`Engine._create`, ``reset``): under the branch's
lock, the record is first written with status ``creating``, the backend builds the
database under a temp name (libsql ``branches/.tmp-<db>-<random>``, PostgreSQL
``bdbt_<digest>_<random>`` marked ``kind: tmp``), renames it to its final name, and
only then is the record written ``ready``. A process killed at any point (SIGKILL,
OOM, power cut) leaves a ``creating`` record, maybe a temp database, maybe the final
one; it never leaves a ``ready`` record for a database that is not complete.

:func:`recover` (run by the daemon at startup, before it serves, and safe to run at
any time) puts every project back into a consistent state:

- a branch whose lock is held is being worked on by a live process: left alone;
- a ``creating`` record: its database (final name, only if it carries this project's
  marker), its temp leftovers and its login role are dropped, and the record is
  deleted; the next create call builds the branch from scratch;
- a ``ready`` record whose database no longer exists: deleted (a create rebuilds it);
- temp databases and files of this project that no live create owns: dropped;
  PostgreSQL temps that still have sessions connected are left alone.

Never touched: anything without branchdb's marker or outside its layout, and
complete databases under a final name without a record (orphans are garbage
collection's business, after its grace period: they may belong to another state
store pointed at the same server).
"""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon import naming
from branchdb.daemon.errors import Refused

if TYPE_CHECKING:
    from branchdb.daemon.engine import Engine

log = logging.getLogger("branchdb.recovery")


@dataclass
class RecoveryReport:
    """What :func:`recover` did for one project."""

    cleaned: list[str] = field(default_factory=list)  # creating records undone
    forgotten: list[str] = field(default_factory=list)  # ready, database missing
    temps: list[str] = field(default_factory=list)  # temp databases/files dropped
    busy: list[str] = field(default_factory=list)  # skipped: a live process works

    def __bool__(self) -> bool:
        return bool(self.cleaned or self.forgotten or self.temps)


def recover(engine: Engine) -> RecoveryReport:
    """Make *engine*'s project consistent after a crash. Idempotent.

    Raises whatever the backend raises when it cannot be reached (the caller logs
    it); every branch is handled under its own lock, taken without waiting.
    """
    report = RecoveryReport()
    owned = set(engine.backend.list_owned())  # one look instead of one per record
    for rec in engine.list_branches():
        if rec.status == "ready" and rec.database in owned:
            continue
        try:
            with engine.lock(rec.branch, timeout=0):
                _fix_record(engine, rec.branch, report)
        except Refused:
            report.busy.append(rec.branch)
    temps = _TEMPS.get(engine.config.database.backend)
    if temps is not None:
        temps(engine, report)
    for what, names in (
        ("interrupted create undone", report.cleaned),
        ("record of a missing database forgotten", report.forgotten),
        ("temp leftover dropped", report.temps),
    ):
        for name in names:
            log.warning("recovery of %s: %s: %s", engine.project, what, name)
    return report


def _fix_record(engine: Engine, branch: str, report: RecoveryReport) -> None:
    # Re-read under the lock: the record may have changed since it was listed.
    rec = engine.store.get_branch(engine.project, branch)
    if rec is None:
        return
    if rec.status == "ready":
        if not engine.backend.exists(rec.database):
            engine.backend.drop(rec.database, rec.info)  # its role, if any
            engine.store.delete_branch(engine.project, branch)
            report.forgotten.append(branch)
        return
    info = dict(rec.info)
    if engine.config.database.backend == "postgres" and not info.get("role"):
        # A first create makes the role before the database; only the database's
        # marker or the record would name it otherwise.
        info["role"] = naming.pg_role(engine.project, branch)
    leftovers = _LEFTOVERS.get(engine.config.database.backend)
    if leftovers is not None:  # first: a temp database is owned by the role
        leftovers(engine, rec.database)
    engine.backend.drop(rec.database, info)
    engine.store.delete_branch(engine.project, branch)
    report.cleaned.append(branch)


# ------------------------------------------------------------------ libsql
def _libsql_leftovers(engine: Engine, database: str) -> None:
    folder = engine.config.data_dir / "branches"
    if folder.is_dir():
        for stale in folder.glob(f".tmp-{database}-*"):
            stale.unlink(missing_ok=True)


def _libsql_temps(engine: Engine, report: RecoveryReport) -> None:
    """``.tmp-*`` files in ``branches/`` and ``snapshots/<name>/`` no live run owns."""
    root = engine.config.data_dir
    branches = root / "branches"
    if branches.is_dir():
        for tmp in sorted(branches.glob(".tmp-bdb-*")):
            # .tmp-<database>-<8 hex>: a create in progress has a record (written
            # first) and holds that branch's lock.
            database = tmp.name[len(".tmp-") : -len("-12345678")]
            owner = engine.store.branch_by_database(
                engine.config.database.backend, database
            )
            _under_lock(engine, owner.branch if owner else None, tmp, report)
    snapshots = root / "snapshots"
    if snapshots.is_dir():
        for tmp in sorted(snapshots.glob("*/.tmp-*")):
            _under_lock(engine, f"snapshot\0{tmp.parent.name}", tmp, report)


def _under_lock(
    engine: Engine, key: str | None, tmp: Path, report: RecoveryReport
) -> None:
    if key is None:
        tmp.unlink(missing_ok=True)
        report.temps.append(tmp.name)
        return
    try:
        with engine.lock(key, timeout=0):
            if tmp.exists():
                tmp.unlink()
                report.temps.append(tmp.name)
    except Refused:
        report.busy.append(tmp.name)


# ---------------------------------------------------------------- postgres
def _pg_leftovers(engine: Engine, database: str) -> None:
    with engine.backend._admin() as admin:  # type: ignore[attr-defined]
        admin.drop_leftovers(database)


def _pg_temps(engine: Engine, report: RecoveryReport) -> None:
    """Databases marked ``kind: tmp`` by this project that no live run owns."""
    from branchdb.daemon.backends.pg_admin import parse_marker

    backend: Any = engine.backend
    with backend._admin() as admin:
        rows = admin.query(
            "SELECT d.datname, shobj_description(d.oid, 'pg_database'), "
            "(SELECT count(*) FROM pg_stat_activity a WHERE a.datname = d.datname) "
            "FROM pg_database d WHERE starts_with(d.datname, 'bdbt_') "
            "ORDER BY d.datname"
        )
    snapshots = _snapshot_finals(engine)
    for tmp, comment, sessions in rows:
        mark = parse_marker(comment)
        if not mark or mark.get("project") != engine.project or mark["kind"] != "tmp":
            continue  # another project's, or not marked yet: its owner cleans it
        if sessions:
            report.busy.append(tmp)  # someone is still building it
            continue
        final = str(mark.get("final", ""))
        if final.startswith(naming.PREFIX + "s_"):
            key = snapshots.get(final)
            if key is None:
                continue  # no way to tell its lock: the next build of it drops it
        else:
            owner = engine.store.branch_by_database(backend.name, final)
            key = owner.branch if owner else None
        try:
            with engine.lock(key, timeout=0) if key else nullcontext():
                with backend._admin() as admin:
                    admin.drop_database(tmp)
                report.temps.append(tmp)
        except Refused:
            report.busy.append(tmp)


def _snapshot_finals(engine: Engine) -> dict[str, str]:
    """Final database name of each snapshot's *next* version → its lock key."""
    names = {s.name for s in engine.store.list_snapshots(engine.project)}
    names |= set(engine.config.snapshots.definitions)
    out = {}
    for name in names:
        version = engine.store.next_snapshot_version(engine.project, name)
        final = naming.pg_snapshot_database(engine.project, name, version)
        out[final] = f"snapshot\0{name}"
    return out


_LEFTOVERS = {"libsql": _libsql_leftovers, "postgres": _pg_leftovers}
_TEMPS = {"libsql": _libsql_temps, "postgres": _pg_temps}
