"""Garbage collection, above the engine: :mod:`.policy` (which databases may go, and
why: pure), :mod:`.collector` (mark, wait the grace period, delete through
:meth:`~branchdb.daemon.core.context.ProjectContext.drop_branch`),
:mod:`.activity` (real connections count as use), :mod:`.ttl` (per-branch idle TTL),
:mod:`.results` (what they answer)."""
