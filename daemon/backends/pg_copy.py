"""Copy a live PostgreSQL database into a new one with ``pg_dump | pg_restore``.

Used to build snapshots from ``--source postgresql://…`` (without ``--rules``; with
them, :mod:`branchdb.daemon.sanitize.pg.stream` is handed a :class:`Client`: it uses
:func:`dump` for the schema and :func:`restore` by section, and streams the rows itself
through :class:`Stream`). ``pg_dump`` reads one consistent MVCC snapshot (REPEATABLE
READ, READ ONLY) and writes nothing to the source, so the source may be in use.
Passwords travel in ``PGPASSWORD``, never on a command line (which ``ps`` shows to every
user of the machine).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from branchdb.daemon.backends import pg_session
from branchdb.daemon.core.errors import BackendError, redact

if TYPE_CHECKING:
    import psycopg

    from branchdb.daemon.sanitize.pg.client import CopyJob

_TAIL = 20


#: The client programs branchdb runs from the directory :func:`find_bin` picks.
PROGRAMS = ("pg_dump", "pg_restore", "psql")


def find_bin(major: int) -> str:
    """Directory with pg_dump, pg_restore and psql for a server of version *major*."""
    candidates = [
        os.environ.get("BRANCHDB_PG_BIN", ""),
        f"/usr/lib/postgresql/{major}/bin",
        os.path.dirname(shutil.which("pg_dump") or ""),
    ]
    for d in candidates:
        if d and all((Path(d) / p).is_file() for p in PROGRAMS):
            return d
    raise BackendError(
        f"pg_dump, pg_restore and psql for PostgreSQL {major} not found: install the "
        "client (Debian: postgresql-client) or set BRANCHDB_PG_BIN to its bin directory"
    )


def _split(url: str) -> tuple[str, dict[str, str]]:
    """(conninfo without password, environment carrying it)."""
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(url)
    password = params.pop("password", None)
    env = {**os.environ, "PGAPPNAME": "branchdb"}
    if password:
        env["PGPASSWORD"] = str(password)
    return make_conninfo("", **params), env


def source_encoding(url: str) -> tuple[str, str, str]:
    """(encoding, LC_COLLATE, LC_CTYPE) of the database at *url* (read-only)."""
    conn = pg_session.connect(url, what="snapshot source")
    try:
        row = conn.execute(
            "SELECT pg_encoding_to_char(encoding), datcollate, datctype "
            "FROM pg_database WHERE datname = current_database()"
        ).fetchone()
    finally:
        conn.close()
    assert row is not None
    return str(row[0]), str(row[1]), str(row[2])


def _run(cmd: list[str], env: dict[str, str], what: str) -> str:
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if p.returncode != 0:
        tail = "\n".join((p.stderr or p.stdout).strip().splitlines()[-_TAIL:])
        raise BackendError(f"{what} failed (exit {p.returncode}): {redact(tail)}")
    return p.stdout


def dump(
    source: str,
    bindir: str,
    path: str,
    *,
    snapshot: str | None = None,
    schema_only_data: bool = False,
) -> None:
    """``pg_dump --format=custom`` of *source* into *path*.

    *snapshot* (from ``pg_export_snapshot()`` in a still-open transaction on the
    source) makes the dump read that exact MVCC view; *schema_only_data* leaves out
    every table's rows (the caller streams them itself) but keeps sequence values and
    large objects.
    """
    src, src_env = _split(source)
    _run(
        [
            f"{bindir}/pg_dump",
            "--format=custom",
            "--no-owner",
            "--no-acl",
            "--no-publications",
            "--no-subscriptions",
            "--no-security-labels",
            "--no-tablespaces",
            "--lock-wait-timeout=120000",
            *([f"--snapshot={snapshot}"] if snapshot else []),
            *(["--exclude-table-data=*.*"] if schema_only_data else []),
            f"--file={path}",
            f"--dbname={src}",
        ],
        src_env,
        "pg_dump of the snapshot source",
    )  # fmt: skip


def restore(
    path: str,
    target: str,
    role: str,
    bindir: str,
    sections: tuple[str, ...] = (),
    say: Callable[[str], Any] = lambda _msg: None,
) -> None:
    """Restore the custom dump *path* into *target* (all of it, or only *sections*).

    Objects are created as *role* (``pg_restore --role``) so that they are owned by
    it, except extensions, which may need the admin's rights and stay the admin's
    (they are restored with the pre-data section).
    """
    dst, dst_env = _split(target)
    # Index builds sort in memory; a crash loses only a database being built.
    dst_env["PGOPTIONS"] = "-c maintenance_work_mem=512MB -c synchronous_commit=off"
    toc = _run([f"{bindir}/pg_restore", "--list", path], dst_env, "pg_restore -l")
    entries = [ln for ln in toc.splitlines() if ln and not ln.startswith(";")]
    ext = [ln for ln in entries if " EXTENSION " in ln]
    rest = [ln for ln in entries if " EXTENSION " not in ln]
    if sections and "pre-data" not in sections:
        ext = []
    base = [
        f"{bindir}/pg_restore",
        "--no-owner",
        "--no-acl",
        "--exit-on-error",
        *(f"--section={s}" for s in sections),
        f"--dbname={dst}",
    ]
    with tempfile.TemporaryDirectory(prefix="branchdb-toc-") as tmp:
        for lines, extra in ((ext, []), (rest, [f"--role={role}", "--jobs=2"])):
            if not lines:
                continue
            listing = os.path.join(tmp, "toc.list")
            Path(listing).write_text("\n".join(lines) + "\n")
            say("restoring" if extra else "creating extensions")
            _run([*base, *extra, f"--use-list={listing}", path], dst_env, "pg_restore")


def copy(
    source: str,
    target: str,
    role: str,
    bindir: str,
    progress: Callable[[str], Any] | None = None,
) -> None:
    """Dump *source* and restore it into the empty database *target*.

    Source owners and privileges are not copied (``--no-owner --no-acl``).
    """
    say = progress if callable(progress) else (lambda _msg: None)
    with tempfile.TemporaryDirectory(prefix="branchdb-dump-") as tmp:
        path = os.path.join(tmp, "db.dump")
        say("dumping source")
        dump(source, bindir, path)
        restore(path, target, role, bindir, say=say)


class Stream:
    """``COPY … TO STDOUT`` on one database piped into ``COPY … FROM STDIN`` on another.

    Two ``psql`` processes joined by an OS pipe: no row passes through Python, whose
    per-row overhead (and lock) made it the bottleneck of two parallel copies. The
    reader runs *before* (e.g. joining an exported snapshot) then its COPY; the
    writer runs *setup* then its COPY in one transaction (``psql -1``), so that a
    ``TRUNCATE`` or ``CREATE`` in *setup* allows ``COPY … FREEZE``. Passwords travel
    in ``PGPASSWORD``. :meth:`wait` returns the rows written or raises BackendError;
    :meth:`kill` stops both (the caller then drops the half-written target).
    """

    def __init__(
        self,
        bindir: str,
        source: str,
        before: list[str],
        out: str,
        target: str,
        setup: list[str],
        into: str,
        what: str,
    ) -> None:
        psql = [f"{bindir}/psql", "--no-psqlrc", "-v", "ON_ERROR_STOP=1"]
        src, src_env = _split(source)
        dst, dst_env = _split(target)
        # Binary COPY sends text in the client encoding: the same lossless one on
        # both sides, whatever PGCLIENTENCODING the daemon's environment has.
        src_env["PGCLIENTENCODING"] = dst_env["PGCLIENTENCODING"] = "UTF8"
        self.what = what
        # Messages go to files: a pipe nobody reads yet could fill and stall psql.
        # (Closed by wait() or kill(), which every caller reaches: see streams().)
        self.errs = (tempfile.TemporaryFile(), tempfile.TemporaryFile())  # noqa: SIM115
        # -q: the reader's stdout is the data; no command tag may be printed there.
        self.reader = subprocess.Popen(
            [*psql, "-q", f"--dbname={src}", *_commands([*before, out])],
            env=src_env,
            stdout=subprocess.PIPE,
            stderr=self.errs[0],
        )
        try:
            self.writer = subprocess.Popen(
                [*psql, "-1", f"--dbname={dst}", *_commands([*setup, into])],
                env=dst_env,
                stdin=self.reader.stdout,
                stdout=subprocess.PIPE,
                stderr=self.errs[1],
            )
        except BaseException:
            self.reader.kill()
            self.reader.wait()
            for err in self.errs:
                err.close()
            raise
        assert self.reader.stdout is not None
        self.reader.stdout.close()  # the writer holds the only read end

    def wait(self) -> int:
        """Rows written; BackendError naming each side that failed."""
        w_out, _ = self.writer.communicate()
        self.reader.wait()
        failed = []
        for side, proc, err in (
            ("reading the source", self.reader, self.errs[0]),
            ("writing the copy", self.writer, self.errs[1]),
        ):
            err.seek(0)
            text = err.read().decode(errors="replace")
            err.close()
            if proc.returncode != 0:
                tail = redact(" ".join(text.split()[-60:]))
                failed.append(f"{side} (psql exit {proc.returncode}): {tail}")
        if failed:
            raise BackendError(f"{self.what} failed: " + "; ".join(failed))
        found = re.findall(rb"^COPY (\d+)$", w_out, re.MULTILINE)
        return int(found[-1]) if found else 0

    def kill(self) -> None:
        """Stop both processes (if still running) and release their files."""
        for proc in (self.reader, self.writer):
            if proc.poll() is None:
                proc.kill()
            proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        for err in self.errs:
            err.close()


def _commands(statements: list[str]) -> list[str]:
    return [arg for s in statements for arg in ("-c", s)]


def streams(jobs: list[Stream]) -> list[int]:
    """Wait for every running *jobs* (concurrent); on any failure kill the rest."""
    try:
        return [j.wait() for j in jobs]
    except BaseException:
        for j in jobs:
            j.kill()
        raise


class Client:
    """The client programs of *bindir* and restored objects owned by *role*: what a
    sanitized build needs (``branchdb.daemon.sanitize.pg.client.PgClient``)."""

    def __init__(self, bindir: str, role: str) -> None:
        self.bindir = bindir
        self.role = role

    def connect(self, url: str, *, what: str) -> psycopg.Connection[Any]:
        return pg_session.connect(url, what=what)

    def describe_error(self, e: Exception) -> str:
        return pg_session.describe_error(e)

    def dump_schema(self, source: str, path: str, *, snapshot: str) -> None:
        dump(source, self.bindir, path, snapshot=snapshot, schema_only_data=True)

    def restore(
        self,
        path: str,
        target: str,
        sections: tuple[str, ...],
        say: Callable[[str], Any],
    ) -> None:
        restore(path, target, self.role, self.bindir, sections, say)

    def copy(self, jobs: Sequence[CopyJob]) -> list[int]:
        running: list[Stream] = []
        try:
            for j in jobs:
                running.append(Stream(
                    self.bindir, j.source, list(j.before), j.out, j.target,
                    list(j.setup), j.into, j.what,
                ))  # fmt: skip
        except BaseException:
            for s in running:  # one failed to start: stop those that did
                s.kill()
            raise
        return streams(running)
