"""Where the libsql backend keeps a branch database: standard library only.

The backend (:mod:`.libsql_backend`) and the checkout hook's fast path (which checks
the file is still there without importing the backend) share this one definition.
"""

from __future__ import annotations

import os


def libsql_path(data_dir: str, database: str) -> str:
    """Where the libsql backend keeps a branch database file."""
    return os.path.join(data_dir, "branches", f"{database}.db")
