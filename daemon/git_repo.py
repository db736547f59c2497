"""What branchdb asks git: the current branch, where hooks live. Read-only."""

from __future__ import annotations

import subprocess
from pathlib import Path

from branchdb.daemon.errors import GitError


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None


def current_branch(cwd: Path) -> str:
    """Name of the branch checked out in *cwd* (worktrees included).

    Raises GitError outside a repository or on a detached HEAD.
    """
    r = _git(cwd, "symbolic-ref", "--quiet", "--short", "HEAD")
    if r.returncode == 0:
        return r.stdout.strip()
    if r.returncode == 1:
        raise GitError(
            "HEAD is detached (no branch is checked out); name the branch, "
            "e.g. `branchdb up feature/x`"
        )
    raise GitError(f"{cwd} is not inside a git repository; name the branch explicitly")


def hooks_dir(cwd: Path) -> Path:
    """The hooks directory git uses for *cwd* (respects core.hooksPath, worktrees)."""
    r = _git(cwd, "rev-parse", "--path-format=absolute", "--git-path", "hooks")
    if r.returncode != 0:
        raise GitError(f"{cwd} is not inside a git repository")
    return Path(r.stdout.strip())


def validate_branch_name(name: str) -> str:
    """Refuse names git itself could never have (empty, NUL, control characters)."""
    if not name or len(name) > 1024 or any(ord(c) < 32 or c == "\x7f" for c in name):
        raise GitError(f"invalid branch name {name!r}")
    return name
