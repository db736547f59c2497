"""branchdb's markers on sqld namespaces: ``<data_dir>/sqld/owned/<namespace>.json``.

A namespace is branchdb's only if it carries this project's marker (sqld itself has
nowhere to keep one that a branch's token could not touch: its namespace config is
the admin API's, and the data is the branch's). The marker is written
(``"creating"``) before the namespace is made, turned ``"ready"`` once it is, and
removed after it is deleted; it names the branch, the state store that made it and
the ``key_id`` of the namespace's own JWT key (not a secret: deriving the key needs
the daemon's key file).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class Markers:
    def __init__(self, owned: Path, project: str) -> None:
        self.owned = owned
        self.project = project

    def path(self, namespace: str) -> Path:
        return self.owned / f"{namespace}.json"

    def _read(self, namespace: str) -> dict[str, Any]:
        try:
            data = json.loads(self.path(namespace).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _field(self, namespace: str, key: str) -> str | None:
        value = self._read(namespace).get(key)
        return value if isinstance(value, str) else None

    def state(self, namespace: str) -> str | None:
        """``"creating"`` or ``"ready"`` if *namespace* carries this project's
        marker, else None."""
        data = self._read(namespace)
        if not data or data.get("project") != self.project:
            return None
        return str(data.get("state", "ready"))

    def mine(self, namespace: str) -> bool:
        return self.state(namespace) is not None

    def made_by(self, namespace: str) -> str | None:
        """The id of the state store that made *namespace* (None: unknown)."""
        return self._field(namespace, "store")

    def branch(self, namespace: str) -> str | None:
        return self._field(namespace, "branch")

    def key_id(self, namespace: str) -> str | None:
        return self._field(namespace, "key_id")

    def mark(
        self,
        namespace: str,
        branch: str,
        state: str,
        *,
        key_id: str | None,
        store: str | None,
    ) -> None:
        """Write the marker atomically (never half a marker); *store*: the id of
        the state store making the namespace."""
        self.owned.mkdir(parents=True, exist_ok=True)
        body = {
            "project": self.project,
            "kind": "branch",
            "branch": branch,
            "state": state,
            "at": time.time(),
            **({"store": store} if store else {}),
            **({"key_id": key_id} if key_id else {}),
        }
        tmp = self.owned / f".tmp-{namespace}-{os.urandom(4).hex()}"
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.path(namespace))

    def names(self) -> list[str]:
        """Every namespace with a marker file (any project, any state)."""
        if not self.owned.is_dir():
            return []
        return sorted(p.stem for p in self.owned.glob("bdb-*.json"))
