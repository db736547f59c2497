"""Sealed PostgreSQL data directories for the docker backend: the empty cluster a
fresh branch is cloned from, and snapshots.

Both are built the same way: a data directory in a temp folder, a container that
serves it on its Unix socket only (``listen_addresses=''``: nothing on the network
while it is being filled), a clean shutdown (exit code 0 and no ``postmaster.pid``
left: a clone then starts without crash recovery), and a ``rename`` to the final
name last. What a clone of either holds (the same in every cluster, so the
branch's URL only differs in port and passwords)::

    role postgres   superuser, no password (each branch sets its own)
    role app        LOGIN, not superuser, no password (each branch sets its own);
                    owns schema public and every object restored into it
    database app    owned by postgres; CONNECT, CREATE, TEMPORARY for app only
    pg_hba.conf     local: trust (the socket directory is root's and the
                    cluster user's only); host: scram-sha-256

Layout under ``[docker] dir`` (layered clones: :mod:`.docker_layers`)::

    base/<image digest>/                 the empty cluster per image
    <project>/snapshots/<name>/v<N>/     a sealed snapshot (its data directory)
    <project>/snapshots/<name>/.tmp-v<N>-<hex>/{data,run}   one being built
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from branchdb.daemon.backends import cow
from branchdb.daemon.backends import docker_runtime as rt
from branchdb.daemon.core.errors import BackendError

OWNER = "app"
DATABASE = "app"
#: The port number inside build containers (their socket's name; no TCP).
BUILD_PORT = 5432

_SETUP = [
    "CREATE ROLE {owner} LOGIN",
    "CREATE DATABASE {db} OWNER postgres TEMPLATE template0",
    "REVOKE ALL ON DATABASE {db} FROM PUBLIC",
    "GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {db} TO {owner}",
]


def _identifiers(stmt: str) -> Any:
    from psycopg import sql

    return sql.SQL(stmt).format(
        owner=sql.Identifier(OWNER), db=sql.Identifier(DATABASE)
    )


@contextlib.contextmanager
def serving(
    image: str,
    data: Path,
    run_dir: Path,
    marks: dict[str, str],
    user: str,
) -> Iterator[Any]:
    """Serve *data* on the socket in *run_dir* while the block runs (a superuser
    connection is yielded), then shut it down cleanly and remove the container.
    Raises BackendError if the shutdown was not clean."""
    name = rt.TMP + secrets.token_hex(6)
    container = rt.run_postgres(
        image,
        name,
        marks,
        data={"source": str(data), "type": "bind"},
        run_dir=run_dir,
        user=user,
        port=BUILD_PORT,
        listen="",
        # Old WAL is deleted at checkpoints, not kept for reuse: a snapshot then
        # holds a segment or two, not max_wal_size of them (thousands of extents
        # every clone would have to share one by one).
        settings=("wal_recycle=off", "min_wal_size=32MB", "max_wal_size=2GB"),
    )
    try:
        conn = rt.wait_ready(run_dir, BUILD_PORT, container)
        try:
            yield conn
        finally:
            conn.close()
        code = rt.stop(container)
        if code != 0 or (data / "postmaster.pid").exists():
            raise BackendError(
                f"PostgreSQL in {name} did not shut down cleanly (exit {code})"
            )
    finally:
        rt.remove(container)


def ensure_base(image: str, root: Path) -> Path:
    """The sealed empty cluster for *image* under *root*/base (built once)."""
    img = rt.ensure_image(image)
    final: Path = root / "base" / str(img.id).split(":")[-1][:16]
    if (final / "PG_VERSION").is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(final.parent / ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # one build per image, other callers wait
        if (final / "PG_VERSION").is_file():
            return final
        remove_base_builds(final.parent)
        tmp = final.parent / f".tmp-{secrets.token_hex(6)}"
        try:
            _build_base(image, img.id, tmp, root)
            os.rename(tmp / "data", final)  # sealed: complete, cleanly shut down
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    finally:
        os.close(fd)
    return final


def remove_base_builds(folder: Path) -> None:
    """Remove what a killed build of an empty cluster left in *folder* (``base/``):
    its containers (labelled with their folder) and folders. Only the holder of
    ``base/.lock`` builds there, so only it may call this."""
    every = rt.client().containers.list(
        all=True, filters={"label": f"{rt.LABEL}kind=base"}
    )
    for c in every:
        if Path(rt.label(c, "dir") or "/").parent == folder:
            rt.remove(c)
    for old in folder.glob(".tmp-*"):
        shutil.rmtree(old, ignore_errors=True)


def _build_base(image: str, image_id: str, tmp: Path, root: Path) -> None:
    uid, gid = rt.image_user(image)
    user = f"{uid}:{gid}"
    data = tmp / "data"
    tmp.mkdir()
    data.mkdir(mode=0o700)
    os.chown(data, uid, gid)
    marks = rt.labels("-", "base", image_id, dir=str(tmp))
    rt.client().containers.run(
        image_id,
        entrypoint=["initdb"],
        command=[
            "-D",
            rt.PGDATA,
            "-U",
            rt.SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
        ],
        user=user,
        network_mode="none",
        mounts=[_bind(data, rt.PGDATA)],
        labels=marks,
        remove=True,
        stderr=True,
    )
    with open(data / "pg_hba.conf", "a") as f:  # any address [docker] listen allows
        f.write("host all all all scram-sha-256\n")
    rt.make_run_dir(tmp / "run", uid, gid)
    with serving(image, data, tmp / "run", marks, user) as conn:
        setup(conn, tmp / "run")


def setup(conn: Any, run_dir: Path) -> None:
    """Make role and database ``app`` in a new cluster served on *run_dir*
    (*conn*: its superuser), then checkpoint."""
    import psycopg

    for stmt in _SETUP:
        conn.execute(_identifiers(stmt))
    db = rt.admin_conninfo(run_dir, BUILD_PORT, DATABASE)
    with psycopg.connect(db, autocommit=True) as inner:
        inner.execute(_identifiers("ALTER SCHEMA public OWNER TO {owner}"))
        inner.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
    conn.execute("CHECKPOINT")


def _bind(source: Path, target: str) -> Any:
    from docker.types import Mount

    return Mount(target, str(source), type="bind")


def build_snapshot(
    image: str,
    root: Path,
    tmp: Path,
    marks: dict[str, str],
    fill: Callable[[str, str], None],
) -> Path:
    """Clone the empty cluster into *tmp*/data, serve it, let *fill* restore into
    it (called with the superuser's conninfo to database ``postgres`` and the
    name of the database to fill), vacuum, shut down cleanly. Returns the data
    directory, ready to be renamed to its final name; the caller removes *tmp*
    on failure."""
    base = ensure_base(image, root)
    tmp.mkdir(parents=True)
    data = tmp / "data"
    cow.clone_tree(base, data)
    st = os.stat(data)
    rt.make_run_dir(tmp / "run", st.st_uid, st.st_gid)
    user = f"{st.st_uid}:{st.st_gid}"
    with serving(image, data, tmp / "run", marks, user) as conn:
        fill_and_freeze(conn, tmp / "run", fill)
    shutil.rmtree(tmp / "run", ignore_errors=True)
    os.sync()  # sealed means on disk
    return data


def fill_and_freeze(conn: Any, run_dir: Path, fill: Callable[[str, str], None]) -> None:
    """Let *fill* restore into database ``app`` of the cluster served on *run_dir*
    (*conn*: its superuser), then freeze, analyse and checkpoint it."""
    import psycopg

    fill(rt.admin_conninfo(run_dir, BUILD_PORT), DATABASE)
    db = rt.admin_conninfo(run_dir, BUILD_PORT, DATABASE)
    with psycopg.connect(db, autocommit=True) as inner:
        # Frozen, analysed pages: branches never rewrite hint bits (every such
        # write would unshare a block of a reflink clone).
        inner.execute("VACUUM (FREEZE, ANALYZE)")
    conn.execute("CHECKPOINT")
    conn.execute("SELECT pg_switch_wal()")
    conn.execute("CHECKPOINT")  # the segments before it go


def set_passwords(conn: Any, superuser: str, password: str) -> None:
    """Give the superuser and the owner role their (per-branch) passwords."""
    from psycopg import sql

    for role, secret in ((rt.SUPERUSER, superuser), (OWNER, password)):
        # Only a SCRAM verifier is sent: the password never reaches server logs.
        verifier = conn.pgconn.encrypt_password(
            secret.encode(), role.encode(), b"scram-sha-256"
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier.decode())
            )
        )
