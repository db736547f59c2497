"""Reading migrations from a git commit: the daemon's bare mirror of a repository.

Webhook flows and API calls without an upload never check anything out. The daemon
keeps one bare mirror per project under its data directory, fetches into it, and
reads the files of a commit with ``git ls-tree`` and ``git cat-file`` — so two pull
requests at different commits never share a working tree, and a half-finished
checkout cannot exist.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import threading
import time
from collections import OrderedDict
from pathlib import Path

from branchdb.daemon.config.project import Config
from branchdb.daemon.core.errors import (
    ConfigError,
    GitError,
    NotFound,
    Refused,
    RepositoryUnavailable,
)
from branchdb.daemon.migrations import files as migration_files

_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
#: What ``?sha=`` may be: a full or abbreviated commit id (SHA-1 or SHA-256).
SHA_PATTERN = r"^[0-9a-fA-F]{7,64}$"
#: A fetch slower than this fails (503): a caller is waiting for its answer.
FETCH_TIMEOUT = 120.0
#: Trees (commit, directory) whose listing and files a mirror keeps in memory.
TREE_CACHE = 64
# The branches webhooks give to forks' pull and merge requests (allow_forks), and
# the refs their commits are fetched through.
_FORK_REFS = (
    (re.compile(r"pull/([0-9]+)"), "refs/pull/{}/head"),
    (re.compile(r"mr/([0-9]+)"), "refs/merge-requests/{}/head"),
)
# Branches and pull/merge request heads (GitHub's refs/pull/N/head and GitLab's
# refs/merge-requests/N/head carry the commits of forks).
_REFSPECS = (
    "+refs/heads/*:refs/heads/*",
    "+refs/pull/*/head:refs/pull/*/head",
    "+refs/merge-requests/*/head:refs/merge-requests/*/head",
)


def _git(
    cwd: Path,
    *args: str,
    check: bool = True,
    binary: bool = False,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0"}  # never wait for a password
    try:
        if timeout is None:
            r = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, check=False, env=env
            )
        else:
            r = _bounded(["git", *args], cwd, env, timeout)
    except FileNotFoundError:
        raise GitError("git is not installed or not on PATH") from None
    if check and r.returncode != 0:
        err = r.stderr.decode("utf-8", "replace").strip()
        raise GitError(f"git {args[0]} failed: {err}")
    return r


def _bounded(
    cmd: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[bytes]:
    """Run *cmd* for at most *timeout* seconds; raise GitError past it.

    git is stopped with SIGTERM first (its process group: a fetch runs helpers), so
    it removes its ``.lock`` files: a SIGKILLed fetch would leave them and the next
    fetch of the mirror would fail.
    """
    import signal

    p = subprocess.Popen(
        cmd,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        raise RepositoryUnavailable(
            f"git {cmd[1]} took longer than {timeout:g}s; try again"
        ) from None
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


class Mirror:
    """A bare mirror of *url* at *path*; :meth:`fetch` is safe to call concurrently."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url
        self._fetched_since: float | None = None  # start of the last good fetch
        self._trees: OrderedDict[tuple[str, str], GitTreeFiles] = OrderedDict()
        self._trees_lock = threading.Lock()

    def tree(self, sha: str, subdir: str) -> GitTreeFiles:
        """The files under *subdir* at commit *sha* (a full id), kept for reuse: a
        commit never changes, so neither do its listing and files."""
        key = (sha, subdir)
        with self._trees_lock:
            found = self._trees.get(key)
            if found is None:
                found = self._trees[key] = GitTreeFiles(self.path, sha, subdir)
                while len(self._trees) > TREE_CACHE:
                    self._trees.popitem(last=False)
            else:
                self._trees.move_to_end(key)
            return found

    def has_commit(self, sha: str) -> bool:
        if not (self.path / "HEAD").exists():
            return False
        r = _git(self.path, "cat-file", "-e", f"{sha}^{{commit}}", check=False)
        return r.returncode == 0

    def fetch(
        self, timeout: float | None = None, *, newer_than: float | None = None
    ) -> None:
        """Create the mirror if missing and fetch every branch and pull request head.

        With *timeout* (seconds) the wait for another fetch and the fetch itself are
        bounded. With *newer_than* (a ``time.monotonic()``), a fetch that started at
        or after it and succeeded is enough: callers waiting together share one
        fetch. Raises RepositoryUnavailable (a GitError) when git fails or takes too
        long; the mirror keeps its previous refs.
        """
        started = time.monotonic()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        lock = self.path.parent / f"{self.path.name}.lock"
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o600)
        try:
            # One fetch at a time per mirror.
            if deadline is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise RepositoryUnavailable(
                                f"another fetch of {self.url} took longer than "
                                f"{timeout:g}s"
                            ) from None
                        time.sleep(0.05)
            done = self._fetched_since
            if newer_than is not None and done is not None and done >= newer_than:
                return
            if not (self.path / "HEAD").exists():
                self.path.mkdir(parents=True, exist_ok=True)
                _git(self.path, "init", "--quiet", "--bare")
            left = None if deadline is None else max(1.0, deadline - time.monotonic())
            r = _git(
                self.path,
                "fetch",
                "--quiet",
                "--prune",
                "--",
                self.url,
                *_REFSPECS,
                check=False,
                timeout=left,
            )
            if r.returncode != 0:
                err = r.stderr.decode("utf-8", "replace").strip()
                raise RepositoryUnavailable(f"cannot fetch {self.url}: {err}")
            self._fetched_since = started
        finally:
            os.close(fd)

    def branch_commit(
        self, branch: str, sha: str | None = None, *, forks: bool = False
    ) -> str:
        """The commit to read *branch*'s migrations from, after a fetch.

        Its tip, or with *sha* (a full or abbreviated commit id) that commit, which
        must be on the branch's history. With *forks*, ``pull/<N>`` and ``mr/<N>``
        (what webhooks name forks' requests) are also looked up as the pull/merge
        request heads. Raises NotFound (no such branch or commit in the repository),
        Refused (*sha* is not on the branch, or is ambiguous), RepositoryUnavailable.
        """
        self.fetch(FETCH_TIMEOUT, newer_than=time.monotonic())
        tip = self._tip(branch, forks)
        if tip is None:
            raise NotFound(
                f"branch {branch!r} is not in the repository {self.url}; push it "
                "first, or send the migrations with the request"
            )
        if sha is None:
            return tip
        commit = self._commit(sha.lower())
        if commit is None:
            raise NotFound(f"commit {sha} is not in the repository {self.url}")
        ancestor = _git(
            self.path, "merge-base", "--is-ancestor", commit, tip, check=False
        )
        if ancestor.returncode != 0:
            raise Refused(
                f"commit {sha} is not on the history of branch {branch!r} "
                f"(its tip is {tip[:12]})"
            )
        return commit

    def _tip(self, branch: str, forks: bool) -> str | None:
        refs = [f"refs/heads/{branch}"]
        for rx, ref in _FORK_REFS if forks else ():
            if m := rx.fullmatch(branch):
                refs.append(ref.format(*m.groups()))
        for ref in refs:
            # show-ref --verify takes the exact ref: no guessing among ref names.
            r = _git(self.path, "show-ref", "--verify", "--hash", ref, check=False)
            if r.returncode == 0:
                return r.stdout.decode().strip()
        return None

    def _commit(self, prefix: str) -> str | None:
        """The one commit whose id starts with hex *prefix*; None if there is none."""
        # --disambiguate lists objects only: a branch named like the prefix is not
        # taken for it, as rev-parse would.
        r = _git(self.path, "rev-parse", f"--disambiguate={prefix}", check=False)
        found = []
        for oid in r.stdout.decode().split():
            kind = _git(self.path, "cat-file", "-t", oid, check=False)
            if kind.stdout.decode().strip() == "commit":
                found.append(oid)
        if len(found) > 1:
            raise Refused(f"commit id {prefix} is ambiguous; give more of it")
        return found[0] if found else None

    def ensure(self, sha: str) -> None:
        """Make sure commit *sha* is in the mirror (fetching if it is not yet)."""
        if not _SHA.fullmatch(sha):
            raise GitError(f"not a commit id: {sha!r}")
        if self.has_commit(sha):
            return
        self.fetch()
        if not self.has_commit(sha):
            raise GitError(f"commit {sha} is not in {self.url} (force-pushed away?)")


class GitTreeFiles:
    """The files under *subdir* of commit *sha* in *repo* (a MigrationFiles).

    Listed like :class:`~branchdb.daemon.migrations.base.DirFiles` lists a directory
    (sorted POSIX paths, no dot files), so the fingerprints of a commit and of the
    same files on disk are equal. Symbolic links and submodules are skipped.
    """

    def __init__(self, repo: Path, sha: str, subdir: str) -> None:
        self.repo = repo
        self.sha = sha
        self.subdir = subdir.strip("/")
        self._blobs: dict[str, str] | None = None
        self._cache: dict[str, bytes] = {}

    def __str__(self) -> str:
        return f"{self.subdir or '.'} at {self.sha[:12]}"

    def _list(self) -> dict[str, str]:
        if self._blobs is None:
            args = ["ls-tree", "-r", "-z", "--full-tree", self.sha]
            if self.subdir:
                args += ["--", self.subdir + "/"]
            out = _git(self.repo, *args).stdout.decode("utf-8", "surrogateescape")
            blobs: dict[str, str] = {}
            prefix = self.subdir + "/" if self.subdir else ""
            for entry in out.split("\0"):
                if not entry:
                    continue
                meta, _, path = entry.partition("\t")
                mode, kind, oid = meta.split()
                if kind != "blob" or mode not in ("100644", "100755"):
                    continue
                rel = path.removeprefix(prefix)
                if any(part.startswith(".") for part in rel.split("/")):
                    continue
                blobs[rel] = oid
            self._blobs = blobs
        return self._blobs

    def exists(self) -> bool:
        return bool(self._list())

    def paths(self) -> list[str]:
        return sorted(self._list())

    def read(self, path: str) -> bytes:
        if path not in self._cache:
            oid = self._list().get(path)
            if oid is None:
                raise FileNotFoundError(f"{path} is not in {self}")
            self._cache[path] = _git(self.repo, "cat-file", "blob", oid).stdout
        return self._cache[path]


def migrations_at(
    config: Config, mirror: Mirror, sha: str, project_subdir: str
) -> GitTreeFiles:
    """The project's migrations directory at commit *sha* (maybe empty).

    The directory is ``migrations.dir`` of *config* (relative to branchdb.toml, which
    sits at *project_subdir* in the repository), else the first of the usual
    directories present in that commit.
    """
    mirror.ensure(sha)

    def join(*parts: str) -> str:
        kept = (p.strip("/") for p in parts)
        return "/".join(p for p in kept if p and p != ".")

    if config.migrations.dir is not None:
        rel = os.path.normpath(config.migrations.dir.as_posix())
        if rel.startswith("..") or os.path.isabs(rel):
            raise ConfigError(
                "migrations.dir must be inside the repository for webhook flows"
            )
        return mirror.tree(sha, join(project_subdir, rel))
    for rel in migration_files.MIGRATION_DIRS:
        files = mirror.tree(sha, join(project_subdir, rel))
        if files.exists():
            return files
    return mirror.tree(sha, join(project_subdir, migration_files.MIGRATION_DIRS[0]))


def checkout_migrations(config: Config, branch: str) -> GitTreeFiles | None:
    """*branch*'s migrations as committed in the local checkout's repository (the
    CLI reviewing a branch that is not checked out), or None when the project has
    no migrations directory or *branch* is not a local branch. Raises GitError."""
    folder = migration_files.migrations_dir(
        str(config.root),
        str(config.migrations.dir) if config.migrations.dir else None,
        config.migrations.format,
    )
    if folder is None:
        return None
    top = Path(
        _git(config.root, "rev-parse", "--show-toplevel").stdout.decode().strip()
    )
    try:
        sub = Path(folder).relative_to(top.resolve()).as_posix()
    except ValueError:
        return None  # outside the repository
    ref = _git(
        top, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}^{{commit}}",
        check=False,
    )  # fmt: skip
    if ref.returncode != 0:
        return None
    return GitTreeFiles(top, ref.stdout.decode().strip(), "" if sub == "." else sub)
