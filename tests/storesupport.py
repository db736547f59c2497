"""Helpers for the state-store tests: a fresh PostgreSQL database per test, and a
store of either kind opened on it (the contract suite runs every case on both)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from pgcluster import Cluster
from psycopg import sql

from branchdb.daemon.store.base import Store
from branchdb.daemon.store.postgres_store import PostgresStore
from branchdb.daemon.store.sqlite_store import SqliteStore

KINDS = ("sqlite", "postgres")


@contextmanager
def fresh_database(cluster: Cluster) -> Iterator[str]:
    """A new empty database on *cluster*; yields its URL, drops it afterwards."""
    name = f"state_{secrets.token_hex(4)}"
    with psycopg.connect(cluster.admin_url, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield cluster.url(name)
    finally:
        with psycopg.connect(cluster.admin_url, autocommit=True) as c:
            c.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )


class Backing:
    """Where a store lives; :meth:`open` makes another handle on the same state
    (another thread's connection, or another replica)."""

    def __init__(self, kind: str, path: Path, url: str | None) -> None:
        self.kind = kind
        self.path = path
        self.url = url

    def open(self) -> Store:
        if self.kind == "sqlite":
            return SqliteStore(self.path)
        assert self.url is not None
        return PostgresStore(self.url)


@contextmanager
def backing(kind: str, tmp_path: Path, cluster: Cluster | None) -> Iterator[Backing]:
    if kind == "sqlite":
        yield Backing(kind, tmp_path / "state.db", None)
        return
    assert cluster is not None
    with fresh_database(cluster) as url:
        yield Backing(kind, tmp_path / "unused.db", url)
