"""Reading migrations from a git commit: the daemon's bare mirror of a repository.

Webhook flows never check anything out. The daemon keeps one bare mirror per project
under its data directory, fetches into it, and reads the files of a commit with
``git ls-tree`` and ``git cat-file`` — so two pull requests at different commits
never share a working tree, and a half-finished checkout cannot exist.
"""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
from pathlib import Path

from branchdb.daemon.config.project import Config
from branchdb.daemon.core.errors import ConfigError, GitError
from branchdb.daemon.migrations import files as migration_files

_SHA = re.compile(r"[0-9a-f]{40}([0-9a-f]{24})?")
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
        raise GitError(f"git {cmd[1]} took longer than {timeout:g}s") from None
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


class Mirror:
    """A bare mirror of *url* at *path*; :meth:`fetch` is safe to call concurrently."""

    def __init__(self, path: Path, url: str) -> None:
        self.path = path
        self.url = url

    def has_commit(self, sha: str) -> bool:
        if not (self.path / "HEAD").exists():
            return False
        r = _git(self.path, "cat-file", "-e", f"{sha}^{{commit}}", check=False)
        return r.returncode == 0

    def fetch(self, timeout: float | None = None) -> None:
        """Create the mirror if missing and fetch every branch and pull request head.

        With *timeout* (seconds) the wait for another fetch and the fetch itself are
        bounded: past it, raises GitError (the mirror keeps its previous refs).
        """
        import time

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
                            raise GitError(
                                f"another fetch of {self.url} took longer than "
                                f"{timeout:g}s"
                            ) from None
                        time.sleep(0.05)
            if not (self.path / "HEAD").exists():
                self.path.mkdir(parents=True, exist_ok=True)
                _git(self.path, "init", "--quiet", "--bare")
            left = None if deadline is None else max(1.0, deadline - time.monotonic())
            _git(
                self.path,
                "fetch",
                "--quiet",
                "--prune",
                "--",
                self.url,
                *_REFSPECS,
                timeout=left,
            )
        finally:
            os.close(fd)

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
        return GitTreeFiles(mirror.path, sha, join(project_subdir, rel))
    for rel in migration_files.MIGRATION_DIRS:
        files = GitTreeFiles(mirror.path, sha, join(project_subdir, rel))
        if files.exists():
            return files
    return GitTreeFiles(
        mirror.path, sha, join(project_subdir, migration_files.MIGRATION_DIRS[0])
    )
