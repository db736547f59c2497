"""The in-place PostgreSQL pipeline: the oracle the streaming path is compared against.

branchdb builds sanitized PostgreSQL snapshots by streaming
(:mod:`branchdb.daemon.sanitize.pg.stream`); this older path, kept here for the tests
only, works on a staging database that already holds a full copy: detect → capture
the originals into TEMP tables → one UPDATE per table in one transaction (foreign keys
dropped and re-created, user triggers disabled) → ``VACUUM FULL`` → search every text
column for the captured originals. It shares the rules, the detector and the masked
expressions with the streaming path but copies, deletes, masks and verifies its own
way, so equal results from both are evidence for each (test_sanitize_pg.py).
"""

from __future__ import annotations

import time
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from branchdb.daemon.backends.pg_session import connect, describe_error
from branchdb.daemon.sanitize import detect, fakes
from branchdb.daemon.sanitize.detect import refuse_unreviewed
from branchdb.daemon.sanitize.leaks import (
    EMAIL_TOKEN,
    FAKE_WORDS,
    MAX_REPORTED,
    MIN_WORD,
    WORDS,
    LeakFound,
    VerifyReport,
    generated_columns,
    name_origins,
    original_sources,
)
from branchdb.daemon.sanitize.pg.introspect import pg_schema, sample_pg
from branchdb.daemon.sanitize.pg.masking import column_expr, digest
from branchdb.daemon.sanitize.pg.verify_sql import (
    PREFILTER_WORDS,
    REGEX_SPECIAL,
    WORD_SPLIT,
    pg_text,
)
from branchdb.daemon.sanitize.plan import (
    ApplyReport,
    Progress,
    masked,
    no_progress,
    prune,
    resolve,
)
from branchdb.daemon.sanitize.report import SanitizeReport
from branchdb.daemon.sanitize.rules import Rules, RulesError, TableRule
from branchdb.daemon.sanitize.schema import ForeignKey, Schema, Table

#: The TEMP table of captured originals.
TEMP = "_bdb_originals"


def sanitize_postgres(
    admin_url: str,
    staging_db: str,
    rules: Rules,
    *,
    allow_unreviewed: bool = False,
    progress: Progress = no_progress,
    sample: int = detect.SAMPLE,
) -> SanitizeReport:
    """Sanitize database *staging_db* in place (connecting with *admin_url*'s role).

    Raises UnreviewedColumns (flagged columns without a rule), RulesError (a rule
    cannot hold; nothing was changed) or LeakFound (an original survived).
    """
    started = time.monotonic()
    timings: dict[str, float] = {}
    mark = started

    def lap(phase: str) -> None:
        nonlocal mark
        now = time.monotonic()
        timings[phase] = now - mark
        mark = now

    conn = connect(make_conninfo(admin_url, dbname=staging_db), what="staging database")
    try:
        schema = pg_schema(conn)
        samples = sample_pg(conn, schema, sample)
        findings = detect.detect(schema, samples, "postgres")
        missing = refuse_unreviewed(findings, rules, allow_unreviewed)
        lap("detect")
        originals = capture_pg(conn, schema, rules)
        lap("capture")
        applied = apply(conn, schema, rules, progress)
        lap("mask")
        touched = [schema.tables[k] for k in applied.tables if k in schema.tables]
        for t in touched:
            # FULL rewrites the table: no dead tuple holding an original stays in
            # the pages a clone copies.
            conn.execute(
                sql.SQL("VACUUM (FULL, ANALYZE) {}").format(
                    sql.Identifier(t.schema, t.name)
                )
            )
            progress(t.key, "compacted", 0)
        lap("compact")
        verified = verify_pg(conn, schema, originals)
        lap("verify")

        def count(key: str) -> int:
            t = schema.tables[key]
            row = conn.execute(
                sql.SQL("SELECT count(*) FROM {}").format(
                    sql.Identifier(t.schema, t.name)
                )
            ).fetchone()
            return int(row[0]) if row else 0

        rows = sum(count(k) for k in schema.tables)
    finally:
        conn.close()  # drops the TEMP table of originals with the session
    return SanitizeReport(
        findings, missing, applied, verified, len(schema.tables), rows,
        time.monotonic() - started, timings,
    )  # fmt: skip


def update_statement(
    trule: TableRule, table: Table, rules: Rules
) -> sql.Composed | None:
    """ONE UPDATE for every masked column of *table*, or None if nothing is masked."""
    cols = masked(trule)
    if not cols:
        return None
    target = sql.Identifier(table.schema, table.name)
    sets, joins = [], []
    for i, r in enumerate(cols):
        col = table.columns[r.column]
        ident = sql.Identifier(col.name)
        if r.strategy != "shuffle":
            sets.append(
                sql.SQL("{} = {}").format(ident, column_expr(r, col, rules.salt_for(r)))
            )
            continue
        # Row k (physical order) takes the k-th value in salted-hash order.
        alias = sql.Identifier(f"_bdb_p{i}")
        order = digest(
            rules.salt_for(r), sql.SQL("coalesce({}::text, '')").format(ident)
        )
        joins.append(
            sql.SQL(
                "JOIN (SELECT {c} AS v, row_number() OVER (ORDER BY {o}, {c}) AS rn "
                "FROM {t}) AS {a} ON {a}.rn = _bdb_r.rn"
            ).format(c=ident, o=order, t=target, a=alias)
        )
        sets.append(sql.SQL("{} = {}.v").format(ident, alias))
    stmt = sql.SQL("UPDATE {} AS _bdb_t SET {}").format(
        target, sql.SQL(", ").join(sets)
    )
    if joins:
        stmt = sql.SQL(
            "{} FROM (SELECT ctid AS id, row_number() OVER (ORDER BY ctid) AS rn "
            "FROM {}) AS _bdb_r {} WHERE _bdb_t.ctid = _bdb_r.id"
        ).format(stmt, target, sql.SQL(" ").join(joins))
    return stmt


def _run(conn: psycopg.Connection[Any], stmt: sql.Composed, what: str) -> int:
    try:
        cur = conn.execute(stmt)
    except psycopg.Error as e:
        raise RulesError(f"{what}: {describe_error(e)}") from None
    return max(int(cur.rowcount), 0)


def _delete_orphans(
    conn: psycopg.Connection[Any], schema: Schema, fk: ForeignKey
) -> int:
    child, parent = schema.tables[fk.child], schema.tables[fk.parent]
    c = [sql.SQL("_c.{}").format(sql.Identifier(x)) for x in fk.child_cols]
    p = [sql.SQL("_p.{}").format(sql.Identifier(x)) for x in fk.parent_cols]
    stmt = sql.SQL(
        "DELETE FROM {} AS _c WHERE {} AND NOT EXISTS (SELECT 1 FROM {} AS _p WHERE {})"
    ).format(
        sql.Identifier(child.schema, child.name),
        sql.SQL(" AND ").join(sql.SQL("{} IS NOT NULL").format(x) for x in c),
        sql.Identifier(parent.schema, parent.name),
        sql.SQL(" AND ").join(
            sql.SQL("{} = {}").format(a, b) for a, b in zip(c, p, strict=True)
        ),
    )
    return _run(conn, stmt, f"delete rows of {fk.child} orphaned by {fk.name}")


def apply(
    conn: psycopg.Connection[Any],
    schema: Schema,
    rules: Rules,
    progress: Progress = no_progress,
) -> ApplyReport:
    """Apply *rules* to the staging database behind *conn*, all in one transaction.

    Raises RulesError (nothing changed) when a rule cannot hold or a statement fails.
    """
    pairs = resolve(schema, rules)
    report = ApplyReport()
    with conn.transaction():
        for fk in schema.fks:
            child = schema.tables[fk.child]
            _run(
                conn,
                sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.Identifier(child.schema, child.name), sql.Identifier(fk.name)
                ),
                f"drop foreign key {fk.name}",
            )
        for trule, table in pairs:
            ident = sql.Identifier(table.schema, table.name)
            if trule.truncate:
                _run(
                    conn, sql.SQL("TRUNCATE {}").format(ident), f"truncate {table.key}"
                )
                report.count(table.key, "truncated", table.rows)
                progress(table.key, "truncated", table.rows)
            elif trule.where:
                n = _run(
                    conn,
                    sql.SQL("DELETE FROM {} WHERE NOT coalesce(({}), false)").format(
                        ident, sql.SQL(trule.where)
                    ),
                    f"{table.key}: where = {trule.where!r}",
                )
                report.count(table.key, "deleted by where", n)
                progress(table.key, "deleted by where", n)
        prune(
            schema.fks, lambda fk: _delete_orphans(conn, schema, fk), progress, report
        )
        for trule, table in pairs:
            stmt = update_statement(trule, table, rules)
            if stmt is None or trule.truncate:
                continue
            ident = sql.Identifier(table.schema, table.name)
            _run(
                conn,
                sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(ident),
                "disable triggers",
            )
            n = _run(
                conn,
                stmt,
                f"mask {table.key} ({', '.join(r.column for r in masked(trule))})",
            )
            _run(
                conn,
                sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(ident),
                "enable triggers",
            )
            report.count(table.key, "masked", n)
            report.rules_applied += len(masked(trule))
            progress(table.key, "masked", n)
        for fk in schema.fks:
            child = schema.tables[fk.child]
            _run(
                conn,
                sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.Identifier(child.schema, child.name),
                    sql.Identifier(fk.name),
                    sql.SQL(fk.definition),
                ),
                f"foreign key {fk.name} ({fk.child} → {fk.parent}) no longer holds "
                "after masking: mask both sides with the same strategy and salt_key",
            )
    report.seconds = time.monotonic() - report.started
    return report


def capture_pg(
    conn: psycopg.Connection[Any],
    schema: Schema,
    rules: Rules,
    min_len: int = 4,
) -> VerifyReport:
    """Copy the originals of masked columns into a TEMP table (before masking)."""
    # Hash aggregates, hash joins and sorts of a few million originals stay in
    # memory; the TEMP tables get local buffers (allocated only as they fill).
    conn.execute("SET work_mem = '256MB'")
    conn.execute("SET temp_buffers = '256MB'")
    conn.execute(
        f"CREATE TEMP TABLE {TEMP} (v text NOT NULL, lv text, origin text NOT NULL)"
    )
    report = VerifyReport(generated=generated_columns(rules))
    for table, col, r in original_sources(schema, rules):
        origin = f"{table.key}.{col.name}"
        v = pg_text(sql.Identifier(col.name), col)
        skip: list[sql.Composable] = [sql.SQL("false")]
        if r.strategy == "fixed":
            skip.append(sql.SQL("v = {}").format(sql.Literal(str(r.value))))
        if shape := fakes.shape(r.strategy, r.part):
            skip.append(sql.SQL("v ~ {}").format(sql.Literal(shape)))
        # One pass: distinct originals, the ambiguous ones counted and left out.
        row = conn.execute(
            sql.SQL(
                "WITH d AS (SELECT DISTINCT {v} AS v FROM {t} "
                "WHERE {v} IS NOT NULL AND length({v}) >= {n}), "
                "s AS (SELECT v, ({skip}) AS amb FROM d), "
                "i AS (INSERT INTO {tmp} (v, lv, origin) SELECT v, "
                "CASE WHEN v LIKE '%@%' THEN lower(v) END, {o} FROM s "
                "WHERE NOT amb RETURNING 1) "
                "SELECT (SELECT count(*) FROM s WHERE amb), (SELECT count(*) FROM i)"
            ).format(
                tmp=sql.Identifier(TEMP), v=v, o=sql.Literal(origin),
                t=sql.Identifier(table.schema, table.name),
                n=sql.Literal(min_len),
                skip=sql.SQL(" OR ").join(skip),
            )
        ).fetchone()  # fmt: skip
        report.ambiguous += int(row[0]) if row else 0
    conn.execute(f"CREATE TEMP TABLE {WORDS} (w text NOT NULL, origin text NOT NULL)")
    conn.execute(
        sql.SQL(
            "INSERT INTO {} SELECT DISTINCT x, o.origin FROM {} AS o, "
            "regexp_split_to_table(lower(o.v), {}) AS x WHERE o.origin = ANY({}) "
            "AND length(x) >= {} AND x <> ALL({})"
        ).format(
            sql.Identifier(WORDS), sql.Identifier(TEMP), sql.Literal(WORD_SPLIT),
            sql.Literal(name_origins(schema, rules)), sql.Literal(MIN_WORD),
            sql.Literal(FAKE_WORDS),
        )
    )  # fmt: skip
    conn.execute(f"CREATE INDEX ON {WORDS} (w)")
    conn.execute(f"CREATE INDEX ON {TEMP} (v)")
    conn.execute(f"CREATE INDEX ON {TEMP} (lv) WHERE lv IS NOT NULL")
    conn.execute(f"ANALYZE {TEMP}")
    conn.execute(f"ANALYZE {WORDS}")
    row = conn.execute(f"SELECT count(*) FROM {TEMP}").fetchone()
    report.originals = int(row[0]) if row else 0
    return report


def verify_pg(
    conn: psycopg.Connection[Any], schema: Schema, report: VerifyReport
) -> VerifyReport:
    """Search every text-like column for captured originals; raise LeakFound."""
    started = time.monotonic()
    leaks: list[tuple[str, str, str]] = []
    tmp = sql.Identifier(TEMP)
    has_emails = conn.execute(
        f"SELECT EXISTS (SELECT 1 FROM {TEMP} WHERE lv IS NOT NULL)"
    ).fetchone()
    row = conn.execute(
        f"SELECT count(*), array_agg(DISTINCT w ORDER BY w) FROM {WORDS}"
    ).fetchone()
    n_words, words = (int(row[0]), list(row[1] or [])) if row else (0, [])
    # A value can hold a name word only if it has the word as a substring: with few
    # words, one regex test skips splitting the values that cannot (every word is
    # letters, apostrophes and hyphens, none special in a regex).
    prefilter = None
    if 0 < n_words <= PREFILTER_WORDS and not any(
        REGEX_SPECIAL.search(w) for w in words
    ):
        prefilter = sql.Literal("(" + "|".join(words) + ")")
    for table, col in schema.text_columns():
        where = f"{table.key}.{col.name}"
        t = sql.Identifier(table.schema, table.name)
        v = pg_text(sql.Identifier("_t", col.name), col)
        checks = [
            ("whole value", sql.SQL(
                "SELECT o.origin FROM {} AS _t JOIN {} AS o ON o.v = {} LIMIT 1"
            ).format(t, tmp, v)),
        ]  # fmt: skip
        # A column replaced by a generated fake holds no free text: its whole values
        # are searched (above), not the words or addresses inside them.
        free_text = where not in report.generated and col.kind != "inet"
        if free_text and has_emails and has_emails[0]:
            checks.append(("email in text", sql.SQL(
                "SELECT o.origin FROM {} AS _t CROSS JOIN LATERAL "
                "regexp_matches({}, {}, 'g') AS m(a) "
                "JOIN {} AS o ON o.lv = lower(m.a[1]) WHERE {} LIKE '%@%' LIMIT 1"
            ).format(t, v, sql.Literal(f"({EMAIL_TOKEN})"), tmp, v)))  # fmt: skip
        if free_text and n_words:
            checks.append(("name in text", sql.SQL(
                "SELECT o.origin FROM {} AS _t CROSS JOIN LATERAL "
                "regexp_split_to_table(lower({}), {}) AS m(w) "
                "JOIN {} AS o ON o.w = m.w WHERE {} LIMIT 1"
            ).format(
                t, v, sql.Literal(WORD_SPLIT), sql.Identifier(WORDS),
                sql.SQL("lower({}) ~ {}").format(v, prefilter)
                if prefilter is not None
                else sql.SQL("true"),
            )))  # fmt: skip
        for how, stmt in checks:
            row = conn.execute(stmt).fetchone()
            if row:
                leaks.append((str(row[0]), where, how))
        report.columns_searched += 1
    report.seconds = time.monotonic() - started
    if leaks:
        raise LeakFound(leaks[:MAX_REPORTED])
    return report
