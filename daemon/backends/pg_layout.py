"""Who owns a branch database on PostgreSQL, what its branch role may do, and how
branchdb proves a database is its own.

The layout: the admin role owns every branch database; the branch login role gets
CONNECT, TEMPORARY and CREATE on it (schemas, trusted extensions), owns schema
``public`` and every object it creates or is cloned with. Nobody else, PUBLIC
included, has any right on it.

Why not let the branch role own its database (the previous layout): its password is
handed to developers and preview deployments, and a database's owner may ``COMMENT
ON`` it, make it a template, change its settings or grant rights on it. Ownership
was decided by the ``COMMENT`` marker, so a branch role could erase it; a later delete
then answered "dropped" while the database and role stayed on the server, unseen by
garbage collection. Owned by the admin, the marker, name, owner, settings and rights
of the database are the admin's alone, and the branch role keeps everything migration
tools need inside it (drizzle, dbmate and plain SQL create schemas, tables and
extensions, alter and drop them). A registry of branchdb's databases in the state
store was the alternative; it was not chosen because the server itself would then
hold nothing proving what is branchdb's, and garbage collection must compare the
server with the store, not the store with itself.

The proof (:func:`find`): a database is a branch database of this project when the
admin owns it and its marker says so, or (the previous layout) when its owner is a
role whose own marker says it was made for the branch whose database has exactly this
name: ``COMMENT ON ROLE`` needs CREATEROLE and renaming a database CREATEDB, which
branch roles lack, so neither can be forged by the role. Such a database is listed
and dropped as before, never taken for an orphan of any state store (its marker may
have been rewritten), and :func:`adopt` moves it to the current layout.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import NamedTuple

from branchdb.daemon.backends.pg_admin import TMP, Admin, parse_marker
from branchdb.daemon.core import naming
from branchdb.daemon.core.errors import Refused


class Found(NamedTuple):
    """A database as :func:`find` sees it."""

    name: str
    #: "admin": owned by the admin role, with this project's branch marker;
    #: "legacy": the previous layout, owned by the branch role made for this very
    #: name; None: not provably a branch database of this project (never touched).
    layout: str | None
    #: The state store its marker names; None when it names none or cannot be
    #: trusted (a legacy database's owner could rewrite its own marker).
    store: str | None
    role: str | None  # its branch login role
    branch: str | None  # the git branch it was made for


def find(admin: Admin, names: list[str] | None = None) -> dict[str, Found]:
    """Every database on the server (or those of *names* that exist), classified
    as the module docstring says. Read-only, one query."""
    rows = admin.query(
        "SELECT d.datname, shobj_description(d.oid, 'pg_database'), "
        "d.datdba = (SELECT oid FROM pg_roles WHERE rolname = current_user), "
        "o.rolname, shobj_description(o.oid, 'pg_authid') "
        "FROM pg_database d JOIN pg_roles o ON o.oid = d.datdba "
        "WHERE %s::text[] IS NULL OR d.datname = ANY(%s::text[])",
        names,
        names,
    )
    out: dict[str, Found] = {}
    for name, comment, by_admin, owner, owner_comment in rows:
        data = parse_marker(comment) or {}
        role = parse_marker(owner_comment) or {}
        # A temp carries its final marker just before its rename: never a branch.
        if by_admin and admin.ours(comment, "branch") and not name.startswith(TMP):
            store, who, branch = (data.get(k) for k in ("store", "role", "branch"))
            found = Found(
                name,
                "admin",
                str(store) if store else None,
                str(who) if who else None,
                str(branch) if branch is not None else None,
            )
        elif (
            admin.ours(owner_comment, "role")
            and isinstance(role.get("branch"), str)
            and naming.pg_database(admin.project, role["branch"]) == name
        ):
            found = Found(name, "legacy", None, str(owner), role["branch"])
        else:
            found = Found(name, None, None, None, None)
        out[str(name)] = found
    return out


def refusal(found: Found, admin: Admin) -> Refused | None:
    """Why *found* must not be dropped by the store ``admin.store``, if it must not."""
    if found.layout is None:
        return Refused(
            f"database {found.name} on {admin.server} is not a branch database "
            f"branchdb made for project {admin.project!r} (neither owned by the "
            "admin role with branchdb's marker nor by its branch role); nothing was "
            "dropped. Find out what it is; drop or rename it by hand"
        )
    if found.store and admin.store and found.store != admin.store:
        return Refused(
            f"database {found.name} on {admin.server} was made by another branchdb "
            f"state store (id {found.store}); nothing was dropped. Delete it with "
            "the branchdb that uses that store"
        )
    return None


def grant_branch(admin: Admin, database: str, role: str) -> None:
    """Make *role* the only non-admin role with rights on *database*: CONNECT,
    TEMPORARY and CREATE, never ownership.

    Every other grant is revoked (PUBLIC's defaults, and whatever an owner of the
    previous layout granted). Idempotent.
    """
    from psycopg import sql

    ident = sql.Identifier(database)
    others = admin.query(
        "SELECT DISTINCT r.rolname FROM pg_database d, aclexplode(d.datacl) a "
        "JOIN pg_roles r ON r.oid = a.grantee "
        "WHERE d.datname = %s AND a.grantee <> d.datdba",
        database,
    )
    for (name,) in others:
        admin.run(
            sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
                ident, sql.Identifier(name)
            ),
            f"revoke the rights of {name} on {database}",
        )
    admin.run(
        sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(ident),
        f"revoke public access to {database}",
    )
    admin.run(
        sql.SQL("GRANT CONNECT, TEMPORARY, CREATE ON DATABASE {} TO {}").format(
            ident, sql.Identifier(role)
        ),
        f"grant {role} access to {database}",
    )


def give_public(inner: Admin, role: str) -> None:
    """On an admin connection *inside* a branch database: hand schema ``public`` to
    *role* while the database's owner holds it (PostgreSQL 15 makes it
    ``pg_database_owner``'s), so that migrations create and drop in it."""
    from psycopg import sql

    rows = inner.query(
        "SELECT 1 FROM pg_namespace "
        "WHERE nspname = 'public' AND nspowner IN "
        "((SELECT oid FROM pg_roles WHERE rolname = 'pg_database_owner'), "
        "(SELECT oid FROM pg_roles WHERE rolname = current_user), "
        "(SELECT datdba FROM pg_database WHERE datname = current_database()))"
    )
    if rows:
        inner.run(
            sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(role)),
            f"give {role} schema public",
        )


def hand_over(
    admin: Admin,
    inside: Callable[[str], AbstractContextManager[Admin]],
    database: str,
    role: str,
    content: str | None,
) -> None:
    """Give *role* what migrations need in the new *database*: its rights on the
    database, schema public and, in a clone, the objects the snapshot's content
    role *content* owns. *inside* opens an admin connection to a database."""
    from psycopg import sql

    grant_branch(admin, database, role)
    if content is not None:
        admin.ensure_member(content)
    with inside(database) as inner:
        if content is not None:
            # The content role owns no database or tablespace, so REASSIGN moves
            # exactly the objects inside this clone (see the backend's docstring).
            inner.run(
                sql.SQL("REASSIGN OWNED BY {} TO {}").format(
                    sql.Identifier(content), sql.Identifier(role)
                ),
                f"give {role} ownership of the objects in {database}",
            )
        give_public(inner, role)


def adopt(
    admin: Admin,
    inside: Callable[[str], AbstractContextManager[Admin]],
    database: str,
) -> bool:
    """Move *database* from the previous layout to the current one; False if it
    was not of the previous layout. *inside* opens an admin connection to a
    database. Idempotent: interrupted, the next call does it all again.
    """
    from psycopg import sql

    found = find(admin, [database]).get(database)
    if found is None or found.layout != "legacy" or not found.role:
        return False
    role, ident = found.role, sql.Identifier(database)
    admin.ensure_member(role)
    # While the role still owns it, public is the role's anyway (as
    # pg_database_owner): make that explicit before ownership moves.
    with inside(database) as inner:
        give_public(inner, role)
    with admin.conn.transaction():
        # Two sessions adopting at once: the second finds it done.
        admin.query("SELECT pg_advisory_xact_lock(%s)", _lock_key(database))
        again = find(admin, [database]).get(database)
        if again is None or again.layout != "legacy":
            return False
        admin.run(
            sql.SQL(
                "ALTER DATABASE {} WITH IS_TEMPLATE false ALLOW_CONNECTIONS true"
            ).format(ident),
            f"unseal database {database}",
        )
        admin.comment_on(database, admin.mark("branch", branch=found.branch, role=role))
        admin.run(
            sql.SQL("ALTER DATABASE {} OWNER TO CURRENT_USER").format(ident),
            f"take ownership of {database}",
        )
        # After the owner changed: what the old owner granted is now the admin's
        # grant, so the whole list is rewritten.
        grant_branch(admin, database, role)
    return True


def _lock_key(database: str) -> int:
    """A signed 64-bit advisory-lock key for layout work on *database*."""
    digest = hashlib.sha256(f"branchdb\0layout\0{database}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
