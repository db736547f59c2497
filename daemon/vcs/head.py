"""HEAD read without running git: standard library only (the checkout hook's path)."""

from __future__ import annotations

import os


def git_dir(cwd: str) -> str | None:
    """The git directory for *cwd*, found like git does (``$GIT_DIR``, ``.git``)."""
    env = os.environ.get("GIT_DIR")
    if env:
        return os.path.join(cwd, env)
    here = os.path.realpath(cwd)
    while True:
        dot = os.path.join(here, ".git")
        if os.path.isdir(dot):
            return dot
        if os.path.isfile(dot):  # a worktree or submodule: "gitdir: <path>"
            with open(dot, encoding="utf-8", errors="replace") as f:
                text = f.read().strip()
            if text.startswith("gitdir:"):
                return os.path.join(here, text.removeprefix("gitdir:").strip())
            return None
        parent = os.path.dirname(here)
        if parent == here:
            return None
        here = parent


def read_head(cwd: str) -> tuple[str, str] | None:
    """``("branch", name)`` or ``("detached", sha)`` from HEAD, read without git.

    None when HEAD cannot be read this way (no repository, a reftable repository,
    anything unusual): callers then ask git itself.
    """
    gd = git_dir(cwd)
    if gd is None:
        return None
    try:
        with open(os.path.join(gd, "HEAD"), encoding="utf-8", errors="replace") as f:
            head = f.read().strip()
    except OSError:
        return None
    if head.startswith("ref: refs/heads/"):
        branch = head.removeprefix("ref: refs/heads/")
        # ".invalid" marks a reftable repository: only git can tell.
        return None if branch == ".invalid" else ("branch", branch)
    if len(head) in (40, 64) and all(c in "0123456789abcdef" for c in head):
        return ("detached", head)
    return None
