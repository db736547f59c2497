"""Schema review: what a branch changes in the schema, and which migrations hurt.

- :mod:`.model`: one change (:class:`~.model.Change`) and a whole diff
  (:class:`~.model.SchemaDiff`), its text; shared by both dialects.
- :mod:`.pg_schema`: PostgreSQL, through the ``results`` library (migra's successor):
  catalog inspection, the structured changes and the SQL that turns one schema
  into the other.
- :mod:`.sqlite_schema`: SQLite/libsql, read from ``sqlite_schema`` and the
  ``pragma_*`` table functions (small enough to read by hand), and its SQL.
- :mod:`.lint`: the branch's own migrations linted — ``squawk`` on PostgreSQL,
  the rebuild-the-table pattern and destructive drops on SQLite.
- :mod:`.review`: the engine entry points (:func:`~.review.diff`,
  :func:`~.review.lint`, :func:`~.review.drift`) over a
  :class:`~branchdb.daemon.core.context.ProjectContext`; they open what they compare
  (branch databases, a scratch clone of a snapshot) and never read a row of data.
- :mod:`.render`: the Markdown of a pull-request comment and the Checks API
  annotations.

Like :mod:`branchdb.daemon.gc`, this package sits above the engine: it takes a
context, the core never imports it.
"""
