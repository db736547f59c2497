"""Per-branch idle TTL: overriding ``branches.ttl`` for one branch.

Stored in the state store (``branch_ttl``; deleted with the branch's record) and
read by every GC plan (:attr:`gc.Policy.ttl_overrides`). ``never`` exempts the
branch from the idle policy only: merged, deleted, closed and quota still apply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from branchdb.daemon.config.project import parse_duration
from branchdb.daemon.core.errors import ConfigError
from branchdb.daemon.gc.policy import effective_ttl
from branchdb.daemon.gc.results import Ttl

if TYPE_CHECKING:
    from branchdb.daemon.core.context import ProjectContext


#: The longest TTL (99999 weeks): "idle after" must stay a representable date.
MAX_TTL = 99999 * 604800


def set_ttl(ctx: ProjectContext, branch: str, value: str) -> Ttl:
    """Set *branch*'s TTL to *value*: a duration (``"3d"``, ``"12h"``), ``"never"``
    or ``"default"`` (back to ``branches.ttl``). Idempotent; returns
    :func:`ttl_of`. Raises NotFound (no such branch), ConfigError (bad value)."""
    ctx.get(branch)
    store, project = ctx.store, ctx.project
    if value == "default":
        store.clear_branch_ttl(project, branch)
    elif value == "never":
        store.set_branch_ttl(project, branch, None)
    else:
        seconds = parse_duration(value, "ttl", f"TTL of {branch!r}")
        if seconds < 1:
            raise ConfigError(f"TTL of {branch!r}: must be at least 1s")
        if seconds > MAX_TTL:
            raise ConfigError(
                f'TTL of {branch!r}: at most 99999w; use "never" for no limit'
            )
        store.set_branch_ttl(project, branch, seconds)
    return ttl_of(ctx, branch)


def ttl_of(ctx: ProjectContext, branch: str) -> Ttl:
    """*branch*'s effective idle TTL, where it comes from, and when the branch
    becomes collectable for being idle. Read-only. Raises NotFound."""
    rec = ctx.get(branch)
    ttl, source = effective_ttl(
        branch, ctx.config.branches.ttl, ctx.store.branch_ttls(ctx.project)
    )
    return Ttl(
        branch=branch,
        ttl=ttl,
        ttl_source=source,
        idle_after=None if ttl is None else rec.last_used_at + ttl,
        protected=ctx.is_protected(branch),
    )
