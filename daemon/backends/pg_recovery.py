"""Crash recovery of the postgres backend: temp databases and spares a killed
process left half made (:meth:`PostgresBackend.recover_temps`).

Only what carries this project's marker, or (unmarked spares) a name that carries
the digest of one of this project's snapshot databases, is ever dropped; each under
the lock of the branch or snapshot it was being made for, taken without waiting.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import TYPE_CHECKING

from branchdb.daemon.backends import pg_pool
from branchdb.daemon.backends.base import Recovered
from branchdb.daemon.backends.pg_admin import TMP, parse_marker
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import Refused

if TYPE_CHECKING:
    from branchdb.daemon.backends.postgres_backend import PostgresBackend
    from branchdb.daemon.core.context import ProjectContext


def recover_temps(backend: PostgresBackend, ctx: ProjectContext) -> Recovered:
    """``bdbt_`` databases marked by this project that no live run owns; temps
    that still have sessions connected are someone's build: left. Then the spares
    (:mod:`.pg_pool`) a killed build left unmarked, and those of snapshot versions
    the state store no longer has.

    A temp is marked ``kind: tmp`` (with its final name) while it is built and
    gets its final marker (branch or snapshot) just before its rename: a
    build killed in between leaves a temp carrying the final marker. A spare
    claimed for a branch is such a temp from the moment it is renamed.
    """
    out = Recovered([], [])
    with backend._admin() as admin:
        rows = admin.query(
            "SELECT d.datname, shobj_description(d.oid, 'pg_database'), "
            "(SELECT count(*) FROM pg_stat_activity a "
            "WHERE a.datname = d.datname) "
            "FROM pg_database d WHERE starts_with(d.datname, %s) "
            "ORDER BY d.datname",
            TMP,
        )
    snapshots = _snapshot_finals(ctx)
    for tmp, comment, sessions in rows:
        mark = parse_marker(comment)
        if not mark or mark.get("project") != backend.project:
            continue  # another project's, or not marked yet: its owner cleans it
        if sessions:
            out.busy.append(tmp)  # someone is still building it
            continue
        final = str(mark.get("final", ""))
        key: str | None
        if mark["kind"] == "branch":  # killed between its marker and rename
            key = str(mark["branch"])
        elif mark["kind"] == "snapshot":
            key = f"snapshot\0{mark['snapshot']}"
        elif final.startswith(naming.PREFIX + "s_"):
            key = snapshots.get(final)
            if key is None:
                continue  # no way to tell its lock: the next build drops it
        else:
            owner = ctx.store.branch_by_database(backend.name, final)
            key = owner.branch if owner else None
        _drop_under(backend, ctx, key, [tmp], out)
    _recover_spares(backend, ctx, out)
    return out


def _recover_spares(
    backend: PostgresBackend, ctx: ProjectContext, out: Recovered
) -> None:
    records = ctx.store.list_snapshots(ctx.project)
    with backend._admin() as admin:
        gone = pg_pool.orphans(admin, {s.location for s in records})
        half: dict[str, list[str]] = {}
        for s in records:
            if s.backend == backend.name:
                half.setdefault(s.name, []).extend(pg_pool.leftovers(admin, s.location))
    # The store no longer knows their snapshot: nobody builds or claims these.
    _drop_under(backend, ctx, None, gone, out)
    for name, names in half.items():
        if names:  # a live `snapshot warm` of that name holds this lock
            _drop_under(backend, ctx, naming.spares_lock(name), names, out)


def _drop_under(
    backend: PostgresBackend,
    ctx: ProjectContext,
    key: str | None,
    names: list[str],
    out: Recovered,
) -> None:
    try:
        with (
            ctx.lock(key, timeout=0) if key else nullcontext(),
            backend._admin() as admin,
        ):
            for name in names:
                admin.drop_database(name)
                out.dropped.append(name)
    except Refused:
        out.busy.extend(n for n in names if n not in out.dropped)


def _snapshot_finals(ctx: ProjectContext) -> dict[str, str]:
    """Final database name of each snapshot's *next* version -> its lock key."""
    names = {s.name for s in ctx.store.list_snapshots(ctx.project)}
    names |= set(ctx.config.snapshots.definitions)
    out = {}
    for name in names:
        version = ctx.store.next_snapshot_version(ctx.project, name)
        final = naming.pg_snapshot_database(ctx.project, name, version)
        out[final] = f"snapshot\0{name}"
    return out
