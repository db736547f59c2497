"""What branchdb asks git: the current branch, where hooks live. Read-only."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from branchdb.daemon.core.errors import GitError
from branchdb.daemon.vcs import head as git_head

if TYPE_CHECKING:
    import subprocess


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


class BranchFacts:
    """What git knows about branches, read once per GC plan.

    Three git calls answer for every branch at once (refs with tip commit times; the
    refs merged into the default branch; its tree); only a branch that exists, is not
    an ancestor of the default branch, and has a record costs one more call (the
    squash/rebase check). ``merged_into_default`` answers for a merge commit or
    fast-forward (the tip is an ancestor of the default branch) and for a squash or
    rebase merge (merging the branch into the default branch would change nothing).
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

    def merged_into_default(self, branch: str, since: float) -> str | None:
        """How *branch* is merged into the default branch, or None if it is not.

        *since* is when its database was made. A tip that is an ancestor of the default
        branch but was committed no later than that is a branch with no work of its own
        (made from an older default branch), not a fast-forward merge: it is kept.
        """
        tip = self.tip(branch)
        if tip is None or self.default_sha is None or branch == self.default:
            return None
        if tip == self.default_sha:
            return None  # just created from the default branch: nothing merged yet
        if tip in self.ancestors:
            if self.committed.get(tip, 0) <= since:
                return None
            return (
                f"{tip[:10]} is an ancestor of {self.default} (merge or fast-forward)"
            )
        if self._contained(tip):
            return (
                f"the changes of {tip[:10]} are contained in {self.default} "
                "(squash or rebase merge)"
            )
        return None
