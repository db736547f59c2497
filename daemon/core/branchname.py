"""The one branch-name rule, used by the CLI, the engine, the API and the webhooks.

A name is accepted when ``git check-ref-format --branch`` would accept it and it is at
most 255 bytes in UTF-8 (a longer name cannot be a loose ref on common file systems).
Standard library only: the checkout hook's fast path checks names too.
"""

from __future__ import annotations

import re

MAX_BYTES = 255

#: ``git check-ref-format --branch`` as a regular expression. Published as the OpenAPI
#: ``pattern`` of ``{branch}`` (the byte limit is checked separately).
BRANCH_PATTERN = (
    r"^(?!@$)(?!-)(?!/)(?!.*/$)(?!.*\.$)(?!.*//)(?!.*\.\.)(?!.*@\{)"
    r"(?!.*\.lock(?:/|$))(?!(?:.*/)?\.)[^\x00-\x20\x7f~^:?*\[\\]{1,255}$"
)
_BRANCH = re.compile(BRANCH_PATTERN, re.DOTALL)


def is_valid(name: str) -> bool:
    """True if git could name a branch *name* and it fits in 255 bytes."""
    if not _BRANCH.fullmatch(name):
        return False
    try:
        return len(name.encode("utf-8")) <= MAX_BYTES
    except UnicodeEncodeError:  # lone surrogates: not a name git could store
        return False


def problem(name: str) -> str | None:
    """Why *name* is refused (one line, the name shortened), or None if it is fine."""
    if is_valid(name):
        return None
    shown = name if len(name) <= 80 else name[:80] + "..."
    return (
        f"invalid branch name {shown!r}: git could not name a branch so "
        "(see `git check-ref-format --branch`; at most 255 bytes)"
    )


def validate(name: str) -> str:
    """*name*, or GitError (a 400 at the API, exit 2 in the CLI) naming the rule."""
    why = problem(name)
    if why is not None:
        from branchdb.daemon.core.errors import GitError

        raise GitError(why)
    return name


def is_protected(branch: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """True if *branch* matches one of the ``branches.protected`` globs."""
    import fnmatch

    return any(fnmatch.fnmatchcase(branch, p) for p in patterns)
