"""Build a sanitized PostgreSQL copy without ever writing an original into it.

A copy-then-UPDATE path (tests/sanitize_oracle.py, the tests' reference) rewrites
every row, maintains every index, and must then ``VACUUM FULL`` the dead originals
away. This path instead streams, for a PostgreSQL source:

1. one ``REPEATABLE READ, READ ONLY`` transaction on the source; its snapshot is
   exported (``pg_export_snapshot``) so that ``pg_dump`` reads the very same view;
2. ``pg_dump --exclude-table-data='*.*'`` (schema, sequence values, large objects);
   its pre-data and data sections are restored into the staging database: tables
   without indexes, constraints or triggers;
3. per table, ``COPY … TO STDOUT (FORMAT binary)`` from the source, piped by two
   ``psql`` processes (:meth:`PgClient.copy`: no row passes through Python) into
   either the final table (no rule masks it: ``COPY FREEZE`` after a ``TRUNCATE`` in
   the same transaction, so no later pass rewrites it) or an UNLOGGED raw table in a
   private schema (big tables as two concurrent halves of their pages);
4. ``where`` and the rows it orphans (:func:`plan.prune`) move from the raw tables to
   "removed" twins, on the unmasked rows;
5. ``INSERT INTO final SELECT <masked expressions> FROM raw`` in page-range pieces,
   taken by two connections as they free up (:func:`background.pooled`): the
   published table never holds an original, not even in a dead tuple;
6. a third connection freezes the masked tables while :func:`verify.verify`
   measures the originals and splits the original names into words; then it searches
   every text column of every table for the originals, still in their raw tables;
7. every foreign key is checked; the raw schema is dropped while the post-data
   section (indexes, constraints, foreign keys, triggers) is restored, which
   re-validates every constraint; triggers never see the load.

Any exception means "publish nothing": the caller drops the staging database.
"""

from __future__ import annotations

import functools
import os
import secrets
import tempfile
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.errors import BackendError
from branchdb.daemon.sanitize import detect
from branchdb.daemon.sanitize.leaks import original_sources
from branchdb.daemon.sanitize.pg import stream_sql, verify
from branchdb.daemon.sanitize.pg.background import Background, pooled
from branchdb.daemon.sanitize.pg.client import CopyJob, PgClient
from branchdb.daemon.sanitize.pg.introspect import pg_schema, sample_pg
from branchdb.daemon.sanitize.plan import (
    ApplyReport,
    Progress,
    masked,
    no_progress,
    prune,
    resolve,
)
from branchdb.daemon.sanitize.report import SanitizeReport
from branchdb.daemon.sanitize.rules import Rules, TableRule
from branchdb.daemon.sanitize.schema import ForeignKey, Table

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql


#: Tables of at least this many pages are copied as two concurrent halves.
SPLIT_PAGES = 64
#: Pieces a big table is masked in, taken by the connections as they free up
#: (small enough that the last one leaves the other core idle only briefly).
PIECES = 24


def build(
    client: PgClient,
    source: str,
    admin_url: str,
    staging_db: str,
    rules: Rules,
    *,
    allow_unreviewed: bool = False,
    progress: Progress = no_progress,
    say: Callable[[str], Any] = lambda _msg: None,
    sample: int = detect.SAMPLE,
) -> SanitizeReport:
    """Fill the empty database *staging_db* with the sanitized copy of *source*.

    *client* connects and runs ``pg_dump``, ``pg_restore`` and the COPY pipes (the
    restored objects belong to its role). Returns a :class:`report.SanitizeReport`.
    Raises UnreviewedColumns, RulesError (a rule cannot hold), LeakFound or
    BackendError; the caller then drops *staging_db*. The source sees one read-only
    transaction and ACCESS SHARE locks.
    """
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    started = mark = time.monotonic()
    timings: dict[str, float] = {}

    def lap(phase: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[phase] = timings.get(phase, 0.0) + now - mark
        mark = now

    staging_url = make_conninfo(admin_url, dbname=staging_db)
    raw_ns = f"_bdb_raw_{secrets.token_hex(4)}"
    applied = ApplyReport()
    loaded: dict[str, int] = {}
    src = client.connect(source, what="snapshot source")
    dst: psycopg.Connection[Any] | None = None
    dst2: psycopg.Connection[Any] | None = None
    dst3: psycopg.Connection[Any] | None = None
    tmp = tempfile.TemporaryDirectory(prefix="branchdb-dump-")
    try:
        src.autocommit = False
        src.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        src.read_only = True
        # Like pg_dump: a row-level security policy that would hide rows is an
        # error, never a silently partial copy.
        src.execute("SET row_security = off")
        row = src.execute("SELECT pg_export_snapshot()").fetchone()
        assert row is not None
        schema = pg_schema(src)
        samples = sample_pg(src, schema, sample)
        findings = detect.detect(schema, samples, "postgres")
        missing = detect.refuse_unreviewed(findings, rules, allow_unreviewed)
        pairs = {t.key: tr for tr, t in resolve(schema, rules)}
        lap("detect")
        dump = os.path.join(tmp.name, "schema.dump")
        say("dumping the source schema")
        client.dump_schema(source, dump, snapshot=str(row[0]))
        # Every COPY of the source reads this transaction's exported snapshot.
        joined = [
            "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            sql.SQL("SET TRANSACTION SNAPSHOT {}")
            .format(sql.Literal(str(row[0])))
            .as_string(src),
            "SET row_security = off",
            # A half of a table is a TID range scan: no parallel workers on the
            # source reading the whole table for each half.
            "SET max_parallel_workers_per_gather = 0",
        ]

        def job(
            out: sql.Composable,
            setup: list[sql.Composable],
            into: sql.Composable,
            what: str,
        ) -> CopyJob:
            return CopyJob(
                source, joined, out.as_string(src), staging_url,
                ["SET synchronous_commit = off", "SET row_security = off",
                 *(x.as_string(src) for x in setup)],
                into.as_string(src), what,
            )  # fmt: skip

        client.restore(dump, staging_url, ("pre-data", "data"), say)
        lap("schema")
        # Two cores, two connections: big tables are masked in pieces each takes as
        # it frees up (background.pooled), and the verifier splits its checks so.
        dst = client.connect(staging_url, what="staging database")
        dst2 = client.connect(staging_url, what="staging database")
        conns = (dst, dst2)
        for c in conns:
            # A crash loses only this staging database, which is dropped anyway; JIT
            # compiling the masking and verifying statements costs more than it saves.
            c.execute("SET synchronous_commit = off")
            c.execute("SET jit = off")
            # Work is split over the connections in pieces of page ranges; parallel
            # workers on top would only compete for the same cores.
            c.execute("SET max_parallel_workers_per_gather = 0")
            # A row-level security policy hiding rows from the verifier is an error.
            c.execute("SET row_security = off")
        stream_sql.copy_sequences(src, dst)
        dst.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(raw_ns)))
        raws: dict[str, sql.Composable] = {}
        todo: list[tuple[TableRule, Table, list[str]]] = []
        # Tables whose originals the verifier searches for (a truncated one too).
        searched = {t.key for t, _c, _r in original_sources(schema, rules)}
        for i, table in enumerate(schema.tables.values()):
            trule = pairs.get(table.key)
            final = sql.Identifier(table.schema, table.name)
            if trule is not None and trule.truncate:
                applied.count(table.key, "truncated", table.rows)
                progress(table.key, "truncated", table.rows)
                if table.key not in searched:
                    continue
            cols, partitioned, pages = stream_sql.copyable(src, table)
            if not cols:
                continue
            names = sql.SQL(", ").join(map(sql.Identifier, cols))
            out = sql.SQL(
                "COPY (SELECT {} FROM {} {}) TO STDOUT (FORMAT binary)"
            ).format(names, sql.SQL("" if partitioned else "ONLY"), final)
            plain = trule is None or (
                not trule.where
                and all(r.strategy == "keep" for r in trule.columns.values())
            )
            # A raw table of the public schema keeps the table's name: where
            # expressions, run with the raw schema first in search_path, then read
            # the unmasked rows of the tables they name, as in the in-place paths.
            raw_name = table.name if table.schema == "public" else f"_bdb_t{i}"
            target = final if plain else sql.Identifier(raw_ns, raw_name)
            what = f"copy of {table.key}"
            if not plain and not partitioned and pages >= SPLIT_PAGES:
                # Two streams, two halves of the source's pages, one snapshot.
                dst.execute(sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {})").format(
                    target, final
                ))  # fmt: skip
                into = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(
                    target, names
                )
                halves = [
                    job(sql.SQL(
                        "COPY (SELECT {} FROM ONLY {} WHERE {}) TO STDOUT "
                        "(FORMAT binary)"
                    ).format(names, final, cond), [], into, what)
                    for cond in stream_sql.ctid_ranges(pages, 2)
                ]  # fmt: skip
                loaded[table.key] = sum(client.copy(halves))
            else:
                setup: list[sql.Composable] = []
                if plain and not partitioned:
                    setup.append(sql.SQL("TRUNCATE {}").format(final))
                elif not plain:
                    setup.append(sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {})").format(
                        target, final
                    ))  # fmt: skip
                # FREEZE: the table was created or truncated in the same transaction.
                freeze = "" if partitioned and plain else ", FREEZE"
                into = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary{})").format(
                    target, names, sql.SQL(freeze)
                )
                loaded[table.key] = client.copy([job(out, setup, into, what)])[0]
            progress(table.key, "copied", loaded[table.key])
            if not plain:
                assert trule is not None
                raws[table.key] = target
                if not trule.truncate:
                    todo.append((trule, table, cols))
        src.rollback()  # the source's snapshot and locks end here
        lap("copy")
        # Rows removed by where (and, below, orphans) move from a raw table to its
        # "removed" twin: out of the snapshot, still searched by the verifier.
        removed: dict[str, sql.Composable] = {}
        searched_in: dict[str, sql.Composable] = {}
        for key, raw in raws.items():
            removed[key] = sql.Identifier(raw_ns, f"_bdb_removed{len(removed)}")
            dst.execute(sql.SQL("CREATE UNLOGGED TABLE {} (LIKE {})").format(
                removed[key], raw
            ))  # fmt: skip
            searched_in[key] = sql.SQL(
                "(SELECT * FROM {} UNION ALL SELECT * FROM {}) AS _bdb_r"
            ).format(raw, removed[key])
        with dst.transaction():
            dst.execute(
                sql.SQL("SET LOCAL search_path = {}, public").format(
                    sql.Identifier(raw_ns)
                )
            )
            # In the rules' order, as the in-place paths delete.
            for key, trule in pairs.items():
                if not trule.where or trule.truncate or key not in raws:
                    continue
                cond = sql.SQL("NOT coalesce(({}), false)").format(sql.SQL(trule.where))
                what = f"{key}: where = {trule.where!r}"
                with stream_sql.blame_rules(client.describe_error, what):
                    n = stream_sql.move(dst, raws[key], removed[key], cond)
                loaded[key] -= n
                applied.count(key, "deleted by where", n)
                progress(key, "deleted by where", n)
            # Orphans are pruned on the unmasked rows (as the in-place paths do), so
            # a key masked differently on its two sides fails below, loudly.
            live = {k: r for k, r in raws.items() if not pairs[k].truncate}

            def orphans(fk: ForeignKey) -> int:
                assert dst is not None
                what = f"delete rows of {fk.child} orphaned by {fk.name}"
                with stream_sql.blame_rules(client.describe_error, what):
                    return stream_sql.delete_orphans(dst, schema, fk, live, removed)

            prune(schema.fks, orphans, progress, applied)
        lap("prune")
        row = dst.execute("SELECT current_setting('server_encoding')").fetchone()
        utf8 = bool(row and row[0] == "UTF8")
        for trule, table, cols in todo:
            # (shuffle permutes the whole column: one statement)
            whole = any(r.strategy == "shuffle" for r in trule.columns.values())
            parts = stream_sql.page_ranges(dst, raws[table.key], 1 if whole else PIECES)
            n = sum(pooled(conns, [
                functools.partial(stream_sql.insert_masked, trule=trule, table=table,
                                  cols=cols, raw=p, rules=rules, utf8=utf8,
                                  describe=client.describe_error)
                for p in parts
            ]))  # fmt: skip
            loaded[table.key] = n
            applied.count(table.key, "masked", n)
            applied.rules_applied += len(masked(trule))
            progress(table.key, "masked", n)
        lap("mask")
        applied.seconds = time.monotonic() - applied.started
        # A third connection freezes the masked tables (no index to maintain yet:
        # the backend's VACUUM (FREEZE) then skips them) while the verifier splits
        # the original names into words; it scans the masked tables only once they
        # are frozen (a scan of fresh rows would first set a hint bit on each).
        dst3 = client.connect(staging_url, what="staging database")
        frozen = [sql.Identifier(t.schema, t.name) for _r, t, _c in todo]

        def freeze_masked() -> None:
            assert dst3 is not None
            for ident in frozen:
                dst3.execute(sql.SQL("VACUUM (FREEZE) {}").format(ident))

        freezer = Background(freeze_masked)
        post: list[Background] = []

        def settled() -> None:
            """The masked tables are frozen: their foreign keys are checked, then
            indexes and constraints build while the verifier searches them (reads
            and index builds do not conflict; a leak still publishes nothing)."""
            freezer.result()
            if not post:
                assert dst3 is not None
                stream_sql.check_fks(dst3, schema)
                say("creating indexes and constraints")
                post.append(Background(functools.partial(
                    client.restore, dump, staging_url, ("post-data",), say
                )))  # fmt: skip

        try:
            verified = verify.verify(
                dst,
                schema,
                rules,
                searched_in,
                other=dst2,
                settled=settled,
                scratch=raw_ns,
                pieces={
                    key: [
                        sql.SQL("{} AS _bdb_r").format(p)
                        for p in (
                            *stream_sql.page_ranges(dst, raw, PIECES),
                            removed[key],
                        )
                    ]
                    for key, raw in raws.items()
                },
            )
            settled()
        except BaseException:
            dst3.cancel()
            freezer.join()
            for b in post:
                b.join()
            raise
        lap("verify")
        dst2.close()
        # The originals are dropped (mostly waiting for the disk) while the indexes
        # finish; both are done before anything is published.
        drop = sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(raw_ns))
        dropper = Background(functools.partial(dst.execute, drop))
        try:
            post[0].result()
        finally:
            dropper.join()
        dropper.result()
        lap("post-data")
    except psycopg.Error as e:
        raise BackendError(
            f"sanitized copy failed: {client.describe_error(e)}"
        ) from None
    finally:
        for opened in (dst, dst2, dst3):
            if opened is not None:
                opened.close()
        src.close()
        tmp.cleanup()
    for key, per in applied.tables.items():
        loaded[key] = loaded.get(key, 0) - per.get("orphans deleted", 0)
    return SanitizeReport(
        findings, missing, applied, verified, len(schema.tables), sum(loaded.values()),
        time.monotonic() - started, timings, samples.limits(),
    )  # fmt: skip
