"""Admin-side building blocks of the postgres backend: markers, roles, temp databases.

Every statement is composed with :mod:`psycopg.sql` (identifiers and literals are
never formatted into SQL text) and every server refusal becomes one BackendError that
names the server and what was being done, never a password.
What is branchdb's, and what a branch role is given, is :mod:`.pg_layout`'s business.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from typing import TYPE_CHECKING, Any

from branchdb.daemon.backends.pg_session import describe_error
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import BackendError, Refused

if TYPE_CHECKING:
    import psycopg
    from psycopg import sql

MARKER = "branchdb:"


def marker(project: str, kind: str, **extra: Any) -> str:
    """``branchdb:{"project": …, "kind": …}``: what COMMENT ON DATABASE/ROLE says."""
    return MARKER + json.dumps({"project": project, "kind": kind, **extra})


def parse_marker(comment: str | None) -> dict[str, Any] | None:
    if not comment or not comment.startswith(MARKER):
        return None
    try:
        data = json.loads(comment[len(MARKER) :])
    except ValueError:
        return None
    return data if isinstance(data, dict) and "kind" in data else None


#: Every database being built is named so, whatever its marker says: a build marks
#: it with its final marker just before renaming it.
TMP = naming.PREFIX + "t_"


def tmp_prefix(final: str) -> str:
    """Name prefix of databases being built for *final* (ties leftovers to it)."""
    return f"{TMP}{hashlib.sha256(final.encode()).hexdigest()[:16]}_"


def content_role(snapshot_db: str) -> str:
    """NOLOGIN role owning the objects inside snapshot database *snapshot_db*."""
    return "bdbo" + snapshot_db.removeprefix(naming.PREFIX + "s")


class Admin:
    """One admin connection, with the operations the backend composes.

    *store* (the state store's id, if known) goes into every marker written.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        server: str,
        project: str,
        superuser: bool,
        store: str | None = None,
    ) -> None:
        self.conn = conn
        self.server = server
        self.project = project
        self.superuser = superuser
        self.store = store

    def mark(self, kind: str, **extra: Any) -> str:
        """This project's marker of *kind*, naming the state store when known."""
        if self.store:
            extra["store"] = self.store
        return marker(self.project, kind, **extra)

    def run(self, stmt: sql.Composable | str, what: str) -> list[tuple[Any, ...]]:
        import psycopg

        try:
            cur = self.conn.execute(stmt)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
        except psycopg.Error as e:
            raise BackendError(
                f"PostgreSQL server {self.server} refused to {what}: "
                f"{describe_error(e)}"
            ) from None

    def query(self, text: str, *params: Any) -> list[tuple[Any, ...]]:
        return self.conn.execute(text.encode(), list(params)).fetchall()

    def db_comment(self, database: str) -> str | None:
        """The database's comment ("" if none), or None if it does not exist."""
        rows = self.query(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE datname = %s",
            database,
        )
        return None if not rows else (rows[0][0] or "")

    def role_comment(self, role: str) -> str | None:
        rows = self.query(
            "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles "
            "WHERE rolname = %s",
            role,
        )
        return None if not rows else (rows[0][0] or "")

    def ours(self, comment: str | None, kind: str | None = None) -> bool:
        data = parse_marker(comment)
        return bool(
            data
            and data.get("project") == self.project
            and (kind is None or data["kind"] == kind)
        )

    def check_privileges(self, user: str) -> None:
        """BackendError unless the admin role may create databases and roles."""
        rows = self.query(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
            "WHERE rolname = current_user"
        )
        superuser, createdb, createrole = rows[0]
        self.superuser = bool(superuser)
        flags = (("CREATEDB", createdb), ("CREATEROLE", createrole))
        missing = [name for name, ok in flags if not ok]
        if not superuser and missing:
            raise BackendError(
                f"role {user} on PostgreSQL server {self.server} lacks "
                f"{' and '.join(missing)}: a superuser must run "
                f"ALTER ROLE {user} {' '.join(missing)}"
            )

    def ensure_member(self, role: str) -> None:
        # A non-superuser admin (CREATEROLE) must be a member of a role to create
        # databases owned by it or reassign objects to it (PG 15 allows the grant).
        from psycopg import sql

        if not self.superuser:
            self.run(
                sql.SQL("GRANT {} TO CURRENT_USER").format(sql.Identifier(role)),
                f"grant role {role} to the admin role",
            )

    def ensure_role(self, role: str, password: str | None, **mark: Any) -> None:
        """Create *role* (LOGIN with *password*, else NOLOGIN), or update ours.

        Raises Refused if a role of that name exists without branchdb's marker.
        """
        from psycopg import sql

        ident = sql.Identifier(role)
        comment = self.role_comment(role)
        # Only a SCRAM verifier is sent: the password never reaches server logs.
        secret = None
        if password:
            verifier = self.conn.pgconn.encrypt_password(
                password.encode(), role.encode(), b"scram-sha-256"
            )
            secret = sql.Literal(verifier.decode())
        if comment is None:
            create = "CREATE ROLE {} NOSUPERUSER NOCREATEDB NOCREATEROLE"
            stmt = sql.SQL(create).format(ident)
            if secret:
                stmt += sql.SQL(" LOGIN PASSWORD {}").format(secret)
            self.run(stmt, f"create role {role}")
            text = sql.Literal(self.mark("role", **mark))
            self.run(
                sql.SQL("COMMENT ON ROLE {} IS {}").format(ident, text),
                f"mark role {role}",
            )
        elif parse_marker(comment) is None:
            raise Refused(
                f"role {role} exists on {self.server} but was not created by "
                "branchdb; drop or rename it first"
            )
        elif secret:
            self.run(
                sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(ident, secret),
                f"set the password of role {role}",
            )
        self.ensure_member(role)

    def drop_database(self, database: str) -> None:
        from psycopg import sql

        ident = sql.Identifier(database)
        if self.db_comment(database) is None:
            return
        # A template cannot be dropped; FORCE ends sessions still connected.
        self.run(
            sql.SQL("ALTER DATABASE {} IS_TEMPLATE false").format(ident),
            f"unseal database {database}",
        )
        self.run(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident),
            f"drop database {database}",
        )

    def drop_role(self, role: str) -> None:
        """Drop *role* if it exists and carries this project's marker."""
        from psycopg import sql

        if self.ours(self.role_comment(role)):
            self.run(
                sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)),
                f"drop role {role}",
            )

    def drop_leftovers(self, final: str) -> None:
        """Drop the databases an interrupted build of *final* left behind."""
        rows = self.query(
            "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database "
            "WHERE starts_with(datname, %s)",
            tmp_prefix(final),
        )
        for name, comment in rows:
            # No comment at all: interrupted between CREATE and COMMENT; the digest
            # of our final name inside the database's name then marks it as ours.
            if comment is None or self.ours(comment):
                self.drop_database(name)

    def new_tmp(self, final: str, create: str, *args: sql.Composable) -> str:
        """Run *create* (a CREATE DATABASE with ``{tmp}``) under a new temp name."""
        from psycopg import sql

        tmp = tmp_prefix(final) + secrets.token_hex(4)
        stmt = sql.SQL(create).format(*args, tmp=sql.Identifier(tmp))
        try:
            self.run(stmt, f"create database {final}")
        except BackendError as e:
            if "being accessed by other users" in str(e):
                raise Refused(self._who_is_connected(e)) from None
            raise
        self.comment_on(tmp, self.mark("tmp", final=final))
        return tmp

    def comment_on(self, database: str, text: str) -> None:
        from psycopg import sql

        self.run(
            sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                sql.Identifier(database), sql.Literal(text)
            ),
            f"mark database {database}",
        )

    def rename(self, old: str, new: str) -> None:
        from psycopg import sql

        self.run(
            sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(old), sql.Identifier(new)
            ),
            f"rename database {old} to {new}",
        )

    def _who_is_connected(self, error: BackendError) -> str:
        # "source database "x" is being accessed by other users"
        source = str(error).split('"')[1] if '"' in str(error) else "?"
        rows = self.query(
            "SELECT pid, usename, application_name FROM pg_stat_activity "
            "WHERE datname = %s",
            source,
        )
        who = ", ".join(
            f"{u} (pid {p}, {a or 'no application name'})" for p, u, a in rows
        )
        return (
            f"cannot copy database {source}: other sessions are connected to it: "
            f"{who or 'sessions that have just left'}. Close them and retry"
        )

    def size(self, database: str) -> int:
        rows = self.query(
            "SELECT pg_database_size(oid) FROM pg_database WHERE datname = %s", database
        )
        return int(rows[0][0]) if rows else 0
