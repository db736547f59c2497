"""Sanitized snapshots: rules, a PII detector, set-based masking and a leak verifier.

A snapshot built with rules is screened by the detector (fail closed: a column that
looks personal and has no rule refuses it; every type that can carry text is read,
arrays, JSON, bytes, composites, hstore and XML included), masked set-based by the
database itself and verified (no original value of a masked column is left
anywhere, inside structured values too) before the back-end seals it; any exception
means "publish nothing". PostgreSQL snapshots are streamed from the source so that no
original is ever written into a published table; SQLite snapshots are masked in place
on the back-end's staging copy.

Modules (tests/test_sanitize_layout.py keeps this list and the files in step)::

    rules.py              the rules file: parsed and validated, nothing else
    schema.py             tables, columns and foreign keys, as both dialects see them
    fakes.py              the fake values, sliced from a salted SHA-256 digest
    detect.py             the PII detector: findings, the sample's bounds, refusal
    structured.py         texts inside sampled values (JSON paths…); suggestions
    classify.py           does a column name, or a list of texts, look personal?
    people.py             people's names in free text (names.txt: the word list)
    values.py             JSON paths, leaves and masking; bytes, hstore, XML texts
    plan.py               rules checked against the live columns; orphan pruning
    leaks.py              what the verifiers share: originals searched, LeakFound
    report.py             SanitizeReport, and progress as lines
    check.py              ``snapshot check``: the detector on a live source, read-only
    pg/                   PostgreSQL
    pg/client.py            PgClient: connections and client programs, handed in
    pg/introspect.py        schema and value samples of a live database
    pg/masking.py           the masked expression of each strategy
    pg/stream.py            build(): the sanitized copy, streamed from the source
    pg/stream_sql.py        its statements: copy, mask, move, prune, check keys
    pg/background.py        threads, and the pool of connections pieces run on
    pg/verify.py            the verifier: originals read in the raw tables
    pg/verify_sql.py        its SQL pieces: forms of fakes, name words, prefilter
    sqlite/               SQLite
    sqlite/introspect.py    schema and value samples of a file
    sqlite/masking.py       one UPDATE per table, all in one transaction
    sqlite/verify.py        the verifier: originals captured before masking
    sqlite/pipeline.py      sanitize_sqlite(): detect, mask, compact, verify in place

Dependencies point down this list: a module imports only from the lines below its
own, or from its own sub-package on the same line (the test checks this too)::

    check  pg.stream  sqlite.pipeline    entry points (engine, back-ends call them)
    pg  sqlite                           dialects; no module below touches a database
    report
    detect  plan  leaks
    structured
    classify
    rules  schema  fakes
    values  people

Nothing here imports :mod:`branchdb.daemon.backends`: the PostgreSQL back-end hands
``pg.stream.build`` a ``pg.client.PgClient``, and the engine hands
``check.check_postgres`` a connection.
"""
