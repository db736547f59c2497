"""The embedded store's file name and the schema version: standard library only.

Read by the checkout hook's fast path (which opens the SQLite store itself) and by
both stores (:mod:`.schema`), so the two can never disagree.
"""

#: The embedded store's file, under the project's data directory.
STATE_FILE = "state.db"
#: The schema of a PostgreSQL store when ``[state] schema`` is not set.
DEFAULT_SCHEMA = "branchdb"
#: Version of the state store's schema (:mod:`.schema`; both stores upgrade to it; the
#: hook's fast path reads only a store of exactly this version).
SCHEMA_VERSION = 8
