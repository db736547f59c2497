"""Backends registered by name. Modules are imported only when a backend is used."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from branchdb.daemon.core.errors import ConfigError

if TYPE_CHECKING:
    from branchdb.daemon.backends.base import Backend
    from branchdb.daemon.config.project import Config

#: Backends whose ``exists`` is a ``stat()`` (``Backend.exists_is_stat``): the hook's
#: fast path checks existence without importing them (tests/test_backend_contract.py
#: keeps this in step with the classes).
STAT_EXISTS = frozenset({"libsql"})

#: Every backend by name. ``fake`` (in memory, for tests) is built only from a
#: configuration made in-process (:func:`.fake.configure`): branchdb.toml refuses it.
REGISTRY: dict[str, str] = {
    "libsql": "branchdb.daemon.backends.libsql_backend:LibsqlBackend",
    "postgres": "branchdb.daemon.backends.postgres_backend:PostgresBackend",
    # [database] backend = "libsql" with a [libsql] server (or managed = true)
    "sqld": "branchdb.daemon.backends.sqld_backend:SqldBackend",
    # one PostgreSQL container per branch on a copy-on-write clone ([docker])
    "docker": "branchdb.daemon.backends.docker_backend:DockerBackend",
    "fake": "branchdb.daemon.backends.fake:FakeBackend",
}


def get_backend(config: Config, **kwargs: Any) -> Backend:
    """Build the backend named by ``[database] backend`` for *config*."""
    target = REGISTRY.get(config.database.backend)
    if target is None:
        raise ConfigError(
            f"unknown backend {config.database.backend!r}; "
            f"choose one of: {', '.join(sorted(REGISTRY))}"
        )
    module, cls = target.split(":")
    backend: Backend = getattr(importlib.import_module(module), cls)(config, **kwargs)
    return backend
