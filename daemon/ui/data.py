"""What the pages show, read through the same engine calls and views as the API.

Every function here blocks (state store, files, database servers): call it in the
thread pool. Each row starts from the API's JSON shape (:mod:`branchdb.daemon.views`)
and adds what a page needs besides (size, TTL, pull request), read in bulk: one
state-store query per kind of fact for the whole table, never one per branch, so a
project of 1,000 branches renders in well under a second
(``bench/bench_ui.py``). Nothing here counts as a use of a branch: looking at a
branch in the dashboard does not keep it from being collected.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from branchdb.daemon import views
from branchdb.daemon.api.deps import ProjectRuntime
from branchdb.daemon.core.errors import BranchdbError
from branchdb.daemon.core.models import BranchRecord
from branchdb.daemon.core.urlforms import convert
from branchdb.daemon.gc.collector import collect, totals
from branchdb.daemon.gc.policy import effective_ttl
from branchdb.daemon.gc.ttl import ttl_of
from branchdb.daemon.review import render as render_review
from branchdb.daemon.review import review as engine_review

MASK = "••••••"
#: Sortable columns of the branch table -> the row key they sort by.
SORTS = {
    "name": "branch",
    "status": "status",
    "backend": "backend",
    "source": "source",
    "size": "size_bytes",
    "migrations": "migrations_applied",
    "created": "created_ts",
    "used": "used_ts",
    "expires": "expires_ts",
    "pr": "pr",
    "protected": "protected",
}


def branch_rows(project: ProjectRuntime) -> list[dict[str, Any]]:
    """Every branch of *project* with its list facts (see the module docstring).

    Sizes come from the backend only where that is a file ``stat`` (libsql); a
    server backend's size is on the branch's page (one query per database).
    """
    engine = project.engine()
    store, name = engine.store, project.name
    recs = engine.list_branches()
    overrides = store.branch_ttls(name)
    default_ttl = engine.config.branches.ttl
    open_prs = store.open_branches(name)
    closed = store.closed_branches(name)
    backend = engine.backend
    rows = []
    for rec in recs:
        row: dict[str, Any] = dict(views.branch_dict(rec))
        del row["url"], row["auth_token"]  # never on the list page
        ttl, ttl_source = effective_ttl(rec.branch, default_ttl, overrides)
        pr = open_prs.get(rec.branch)
        if pr is None and rec.branch in closed:
            c = closed[rec.branch]
            pr = f"{c['reference']} ({'merged' if c['merged'] else 'closed'})"
        row.update(
            size_bytes=backend.size_bytes(rec.database)
            if backend.exists_is_stat
            else None,
            ttl=ttl,
            ttl_source=ttl_source,
            expires_ts=None if ttl is None else rec.last_used_at + ttl,
            created_ts=rec.created_at,
            used_ts=rec.last_used_at,
            pr=pr or "",
            protected=engine.is_protected(rec.branch),
        )
        rows.append(row)
    return rows


def sort_rows(
    rows: list[dict[str, Any]], sort: str, descending: bool
) -> list[dict[str, Any]]:
    """*rows* sorted by the column *sort* (:data:`SORTS`); missing values last."""
    key = SORTS.get(sort, "branch")

    def value(row: dict[str, Any]) -> tuple[int, Any]:
        v = row.get(key)
        return (v is None or v == "") != descending, v if v is not None else 0

    return sorted(rows, key=value, reverse=descending)


def secrets_of(rec: BranchRecord) -> list[str]:
    """The secrets a branch's URL or token carries (what the page hides)."""
    found: list[str] = []
    password = urlsplit(rec.url).password if "://" in rec.url else None
    if password:
        # As written in the URL and decoded: forms and tools write it either way.
        found.extend(dict.fromkeys((unquote(password), password)))
    token = rec.info.get("auth_token")
    if token:
        found.append(str(token))
    return found


def mask(text: str, secrets: list[str]) -> str:
    """*text* with every secret (as given or percent-encoded) replaced by a mask."""
    for secret in secrets:
        for form in {secret, quote(secret, safe="")}:
            text = text.replace(form, MASK)
    return text


def branch_detail(project: ProjectRuntime, branch: str) -> dict[str, Any]:
    """The branch page: record, URL and ``.env`` line (with their secrets, for
    the template to mask or reveal), TTL, pull request, audit trail. Raises
    NotFound."""
    engine = project.engine()
    rec = engine.get(branch)
    config = engine.config
    try:
        url = convert(rec.url, config.database.url_format)
    except BranchdbError:
        url = rec.url
    ttl = ttl_of(engine, branch)
    store = engine.store
    return {
        "record": views.branch_dict(rec),
        "url": url,
        "env_line": f"{config.database.env_var}={url}",
        "secrets": secrets_of(rec),
        "ttl": views.ttl_dict(ttl),
        "expires_ts": ttl.idle_after,
        "pr": store.open_branches(project.name).get(branch, ""),
        "protected": ttl.protected,
        "audit": [
            views.audit_dict(e) for e in engine.audit_log(branch=branch, limit=50)
        ],
    }


def branch_status(project: ProjectRuntime, branch: str) -> dict[str, Any]:
    """Live facts (size, applied/pending) as ``POST …/status`` answers them,
    against the branch's committed migrations. Raises NotFound, GitError."""
    engine = project.engine()
    engine.get(branch)
    files = project.committed_migrations(branch)
    st = engine.status(branch, files=files)
    return dict(views.status_dict(st, protected=False, ttl=ttl_of(engine, branch)))


def row_facts(
    project: ProjectRuntime, branch: str
) -> tuple[dict[str, Any] | None, str | None]:
    """:func:`branch_status` for one row of the branch table: (facts, None), or
    (None, why) when they cannot be read (e.g. its git branch is gone). Raises
    NotFound only when the branch has no record."""
    project.engine().get(branch)
    try:
        return branch_status(project, branch), None
    except BranchdbError as e:
        return None, str(e)


def branch_review(project: ProjectRuntime, branch: str) -> dict[str, Any]:
    """The schema review of *branch* against the default branch's database, as
    ``GET …/diff?format=text`` renders it (schema only, never data). Raises
    NotFound (either has no database), Refused (it is the default branch)."""
    engine = project.engine()
    engine.get(branch)
    files = project.committed_migrations(branch)
    r = views.review_dict(engine_review.review(engine, branch, files=files))
    return {"text": render_review.text(r), "changes": len(r["diff"]["changes"])}


def snapshot_rows(project: ProjectRuntime) -> list[dict[str, Any]]:
    """Every snapshot version with its sanitize summary and the branches using it."""
    engine = project.engine()
    using = Counter(r.source for r in engine.list_branches())
    out = []
    for s in engine.snapshot_list():
        row: dict[str, Any] = dict(views.created_snapshot_dict(s))
        sanitize = row["sanitize"] or {}
        row.update(
            sanitized=bool(row["sanitize"]),
            rules_applied=sanitize.get("rules_applied"),
            unreviewed=list(sanitize.get("allowed_unreviewed") or []),
            branches=using.get(f"snapshot:{s.ref}", 0),
        )
        out.append(row)
    return out


def gc_plan(project: ProjectRuntime) -> dict[str, Any]:
    """``GET …/gc``: the plan (a dry run) and the persistent totals."""
    return dict(views.gc_dict(collect(project.engine(), dry_run=True), dry_run=True))


_FREED = re.compile(r"; freed (\d+) bytes$")


def gc_history(project: ProjectRuntime, days: int = 14) -> dict[str, Any]:
    """Databases and bytes collected per day over the last *days* days (from the
    audit log's counted deletions), and the all-time totals."""
    engine = project.engine()
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    per_day = {first + timedelta(days=i): [0, 0] for i in range(days)}
    for e in engine.audit_log(action="delete", limit=1000):
        m = _FREED.search(e.detail)
        if m is None:
            continue  # a delete by hand, not a collection
        day = datetime.fromtimestamp(e.at, UTC).date()
        if day in per_day:
            per_day[day][0] += 1
            per_day[day][1] += int(m.group(1))
    return {
        "days": [(d.isoformat(), n, b) for d, (n, b) in sorted(per_day.items())],
        "totals": views.gc_totals_dict(totals(engine)),
    }
