"""What branchdb asks git: the current branch, where hooks live. Read-only."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from branchdb.daemon.core.errors import GitError
from branchdb.daemon.vcs import head as git_head

if TYPE_CHECKING:
    import subprocess
    from collections.abc import Callable, Sequence

_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")


def _git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    import subprocess  # not at module level: the hook's fast path never needs it

    try:
        return subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None


def current_branch(cwd: Path) -> str:
    """Name of the branch checked out in *cwd* (worktrees included).

    Reads ``HEAD`` directly when it can (the hook path: no git process), and asks
    git otherwise. Raises GitError outside a repository or on a detached HEAD.
    """
    head = git_head.read_head(str(cwd))
    if head is not None:
        kind, value = head
        if kind == "branch":
            return value
        raise GitError(_DETACHED)
    r = _git(cwd, "symbolic-ref", "--quiet", "--short", "HEAD")
    if r.returncode == 0:
        return r.stdout.strip()
    if r.returncode == 1:
        raise GitError(_DETACHED)
    raise GitError(f"{cwd} is not inside a git repository; name the branch explicitly")


_DETACHED = (
    "HEAD is detached (no branch is checked out); name the branch, "
    "e.g. `branchdb up feature/x`"
)


def hooks_dir(cwd: Path) -> Path:
    """The hooks directory git uses for *cwd* (respects core.hooksPath, worktrees)."""
    r = _git(cwd, "rev-parse", "--path-format=absolute", "--git-path", "hooks")
    if r.returncode != 0:
        raise GitError(f"{cwd} is not inside a git repository")
    return Path(r.stdout.strip())


def default_heads(cwd: Path, default_branch: str) -> list[str]:
    """The commits *default_branch* points at in the repository at *cwd*: the local
    branch and each remote-tracking branch of that name, distinct, local first.

    Recorded with a branch's database when it is made (the merge rule of
    :class:`BranchFacts`): local and remote-tracking both, because a branch may be
    made from either and one of them may be stale. One git call; never raises
    (outside a repository, or without such a branch, the answer is empty).
    """
    try:
        r = _git(
            cwd,
            "for-each-ref",
            "--format=%(refname)%00%(objectname)",
            f"refs/heads/{default_branch}",
            f"refs/remotes/*/{default_branch}",
        )
    except (GitError, OSError):
        return []
    if r.returncode != 0:
        return []
    local: list[str] = []
    remote: list[str] = []
    for line in r.stdout.splitlines():
        ref, _, sha = line.partition("\0")
        (local if ref.startswith("refs/heads/") else remote).append(sha)
    return list(dict.fromkeys(local + remote))


def heads_of(cwd: Path, default_branch: str) -> Callable[[], list[str]]:
    """:func:`default_heads` of *cwd*, bound: what a ProjectContext takes as
    ``heads`` (the core never imports git)."""
    return lambda: default_heads(cwd, default_branch)


class BranchFacts:
    """What git knows about branches, read once per GC plan.

    Three git calls answer for every branch at once (refs with tip commit times; the
    refs merged into the default branch; its tree); only a branch that exists, is not
    an ancestor of the default branch, and has a record costs one more call (the
    squash/rebase check). ``merged_into_default`` answers for a merge commit or
    fast-forward (the tip is an ancestor of the default branch) and for a squash or
    rebase merge (merging the branch into the default branch would change nothing),
    and tells those apart from a branch with no work of its own by the default
    branch's heads recorded when the database was made (one more call per distinct
    recorded head, only for branches that look merged).
    """

    def __init__(self, cwd: Path, default_branch: str) -> None:
        self.cwd = cwd
        self.default = default_branch
        self.local: dict[str, str] = {}
        self.remote: dict[str, str] = {}  # branch name -> sha, over every remote
        self.committed: dict[str, int] = {}  # sha -> committer time
        for ref, sha, when in self._refs():
            self.committed[sha] = when
            if ref.startswith("refs/heads/"):
                self.local[ref.removeprefix("refs/heads/")] = sha
            elif ref.startswith("refs/remotes/") and not ref.endswith("/HEAD"):
                name = ref.removeprefix("refs/remotes/").partition("/")[2]
                self.remote.setdefault(name, sha)
        self.default_sha = self.local.get(default_branch) or self.remote.get(
            default_branch
        )
        self._squash: dict[str, bool] = {}  # tip -> contained in the default branch
        self._seeded: set[str] = set()  # tips whose answer came from the cache
        self.ancestors: set[str] = set()  # tips reachable from the default branch
        self.default_tree = ""
        # recorded default head -> the ref tips reachable from it (None: not in
        # this repository)
        self._reach: dict[str, set[str] | None] = {}
        if self.default_sha is not None:
            self.ancestors = {sha for _, sha, _ in self._refs(self.default_sha)}
            own = _git(cwd, "rev-parse", f"{self.default_sha}^{{tree}}")
            self.default_tree = own.stdout.strip()

    def _refs(self, merged_into: str | None = None) -> list[tuple[str, str, int]]:
        args = [
            "for-each-ref",
            "--format=%(refname)%00%(objectname)%00%(committerdate:unix)",
        ]
        if merged_into is not None:
            args.append(f"--merged={merged_into}")
        r = _git(self.cwd, *args, "refs/heads", "refs/remotes")
        if r.returncode != 0:
            raise GitError(f"{self.cwd} is not inside a git repository")
        out = []
        for line in r.stdout.splitlines():
            ref, sha, when = line.split("\0")
            out.append((ref, sha, int(when or 0)))
        return out

    def _contained(self, tip: str) -> bool:
        """Squash and rebase merges leave no ancestry: merge the tip into the default
        branch in memory; if the result is the default's own tree, every change of
        the branch is already there. Cached per tip."""
        if tip not in self._squash:
            assert self.default_sha is not None
            tree = _git(self.cwd, "merge-tree", "--write-tree", self.default_sha, tip)
            first = tree.stdout.split("\n", 1)[0]
            self._squash[tip] = tree.returncode == 0 and first == self.default_tree
        return self._squash[tip]

    def seed(self, answers: dict[str, bool]) -> None:
        """Reuse squash-check answers computed earlier for this default tip."""
        self._seeded = set(answers)
        self._squash.update(answers)

    def new_answers(self) -> dict[str, bool]:
        """Squash-check answers computed by this instance (not seeded)."""
        return {t: c for t, c in self._squash.items() if t not in self._seeded}

    def prefetch(self, branches: list[str]) -> None:
        """Run the squash check of *branches* concurrently (each is a git process)."""
        from concurrent.futures import ThreadPoolExecutor

        tips = {
            t
            for b in branches
            if (t := self.tip(b)) is not None
            and self.default_sha is not None
            and t != self.default_sha
            and t not in self.ancestors
            and t not in self._squash
        }
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(self._contained, sorted(tips)))

    def exists(self, branch: str) -> bool:
        return branch in self.local or branch in self.remote

    def tip(self, branch: str) -> str | None:
        return self.local.get(branch) or self.remote.get(branch)

    def reachable_from(self, head: str) -> set[str] | None:
        """The ref tips (local and remote-tracking) reachable from commit *head*;
        None if this repository does not have *head*. Cached per head."""
        if head not in self._reach:
            found: set[str] | None = None
            if _SHA.fullmatch(head):  # never let a name resolve as a ref
                r = _git(
                    self.cwd,
                    "for-each-ref",
                    "--format=%(objectname)",
                    f"--merged={head}",
                    "refs/heads",
                    "refs/remotes",
                )
                found = set(r.stdout.split()) if r.returncode == 0 else None
            self._reach[head] = found
        return self._reach[head]

    def has_own_work(self, tip: str, heads: Sequence[str]) -> bool | None:
        """False if *tip* is reachable from one of the default branch's *heads*
        recorded when the database was made (nothing committed on the branch since
        it left the default branch), True if not; None when none of *heads* is
        known here (a record made before heads were recorded, or made from another
        clone's commits): the caller falls back to commit times."""
        known = [r for h in heads if (r := self.reachable_from(h)) is not None]
        if not known:
            return None
        return not any(tip in r for r in known)

    def merged_into_default(
        self, branch: str, since: float, heads: Sequence[str] = ()
    ) -> str | None:
        """How *branch* is merged into the default branch, or None if it is not.

        The rule is history, not time: *heads* are the default branch's heads
        recorded when the branch's database was made (:func:`default_heads`). A tip
        reachable from one of them has no work of its own (the branch was made from
        the default branch and nothing was committed on it since): never merged,
        however the default branch moves. Any other tip is merged when the default
        branch contains it (merge commit, or fast-forward — also when the default
        branch now points exactly at it) or contains its changes (squash, rebase).

        Fallback, for records made before heads were recorded (or whose heads this
        repository lacks): *since* (when the database was made) and the tip's commit
        time — a tip the default branch contains counts as merged only if it is not
        the default's own tip and was committed after *since*; a squash or rebase
        merge counts whatever the time. It misses a merge when the database was made
        after the branch's last commit (those branches wait for the idle TTL).
        """
        tip = self.tip(branch)
        if tip is None or self.default_sha is None or branch == self.default:
            return None
        if tip == self.default_sha:
            how = f"{self.default} points at {tip[:10]} (fast-forward)"
        elif tip in self.ancestors:
            how = f"{tip[:10]} is an ancestor of {self.default} (merge or fast-forward)"
        elif self._contained(tip):
            how = (
                f"the changes of {tip[:10]} are contained in {self.default} "
                "(squash or rebase merge)"
            )
        else:
            return None
        own = self.has_own_work(tip, heads)
        if own is None and tip in self.ancestors:
            # The fallback: by commit time (see the docstring).
            own = tip != self.default_sha and self.committed.get(tip, 0) > since
        return how if own is not False else None
