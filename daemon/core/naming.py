"""The one place that turns branch and project names into database, file and role names.

Every name is ``<readable slug>-<hash>`` where the hash is taken over the *exact*
original string, so two branches that differ only in case, punctuation or unicode
normalisation never share a name, and the slug keeps names recognisable in ``ls`` or
``\\l``. All outputs are pure functions of their inputs (tests/test_naming.py).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

#: Every object branchdb creates starts with this prefix (files, databases, roles).
PREFIX = "bdb"
_HASH_LEN = 10  # 40 bits: a collision needs ~1M branches in one project
PG_MAX_IDENT = 63  # NAMEDATALEN - 1 bytes


def _slug(text: str, limit: int) -> str:
    ascii_text = (
        unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    )
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:limit].strip("-") or "x"


def _digest(*parts: str) -> str:
    h = hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass"))
    return h.hexdigest()[:_HASH_LEN]


def branch_key(branch: str) -> str:
    """File-system-safe, collision-free name for *branch* (at most 52 characters).

    ``branch_key("feature/Login")`` is ``"feature-login-"`` plus ten hex digits.
    """
    return f"{_slug(branch, 40)}-{_digest(branch)}"


def _pg_name(kind: str, project: str, name: str, extra: str = "") -> str:
    # <kind>_<project slug>_<name slug><extra>_<hash>, at most 63 ASCII bytes: the
    # name slug gets whatever the fixed parts leave.
    head = f"{kind}_{_slug(project, 16)}_"
    tail = f"{extra}_{_digest(project, name)}"
    slug = _slug(name, min(24, PG_MAX_IDENT - len(head) - len(tail)))
    return f"{head}{slug}{tail}".replace("-", "_")


def pg_database(project: str, branch: str) -> str:
    """PostgreSQL database name for *branch* of *project*, within 63 bytes."""
    return _pg_name(PREFIX, project, branch)


def pg_role(project: str, branch: str) -> str:
    """Login role of the branch database (same shape as the database name)."""
    return _pg_name(PREFIX + "r", project, branch)


def snapshot_key(name: str) -> str:
    """Validated snapshot name: 1-40 characters of ``[a-z0-9_-]``, starting alnum."""
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name):
        raise ValueError(
            f"invalid snapshot name {name!r}: use 1-40 characters a-z, 0-9, '-', '_'"
        )
    return name


def pg_snapshot_database(project: str, snapshot: str, version: int) -> str:
    """Template database name holding version *version* of *snapshot*."""
    return _pg_name(PREFIX + "s", project, snapshot, f"_v{version}")


def docker_snapshot_image(project: str, snapshot: str, version: int) -> str:
    """Image reference of version *version* of *snapshot* on the docker backend's
    layered clones: ``branchdb-snap/<project slug>-<hash>/<snapshot slug>-<hash>:vN``
    (Docker's grammar: lowercase path components, no trailing separator)."""
    project_part = f"{_slug(project, 40)}-{_digest(project)}"
    snapshot_part = f"{_slug(snapshot, 40)}-{_digest(project, snapshot)}"
    return f"branchdb-snap/{project_part}/{snapshot_part}:v{int(version)}"


def sqld_namespace(project: str, branch: str) -> str:
    """sqld namespace for *branch* of *project*: a DNS label (``[a-z0-9-]``, at most
    63 characters), because clients choose a namespace by the first label of the
    host name they connect to."""
    return (
        f"{PREFIX}-{_slug(project, 12)}-{_slug(branch, 24)}-{_digest(project, branch)}"
    )


def spares_lock(snapshot: str) -> str:
    """The lock key (``ProjectContext.lock``) a builder of spares of snapshot
    *snapshot* holds: one builder per snapshot name, and crash recovery leaves a
    spare half made by a live builder alone."""
    return f"spares\0{snapshot}"
