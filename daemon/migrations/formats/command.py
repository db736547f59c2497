"""``command``: the team's own migrate command (alembic, atlas, knex, drizzle-kit, …).

branchdb does not read the migrations: it runs the configured shell command with
``DATABASE_URL`` (and the configured ``env_var``) set to the branch database's URL,
captures its output, and shows the end of it, passwords redacted, when it fails or
runs past its timeout. The tool keeps its own ledger.
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from branchdb.daemon.core.errors import MigrationError, redact
from branchdb.daemon.core.models import Applied, Migration
from branchdb.daemon.migrations.base import Executor, MigrationFiles

TAIL_LINES = 40


def _secrets(url: str) -> list[str]:
    try:
        password = urlsplit(url).password
    except ValueError:
        return []
    return [p for p in {password, unquote(password or "")} if p and len(p) >= 4]


def scrub(text: str, url: str, hidden: Sequence[str] = ()) -> str:
    """Redact URL passwords, the branch password wherever it appears alone, and
    each of *hidden*."""
    text = redact(text)
    for secret in [*_secrets(url), *hidden]:
        text = text.replace(secret, "***")
    return text


def tail(text: str, lines: int = TAIL_LINES) -> str:
    kept = text.rstrip().splitlines()[-lines:]
    return "\n".join(kept)


class CommandFormat:
    name: ClassVar[str] = "command"
    runs_command: ClassVar[bool] = True

    def detect(self, files: MigrationFiles) -> bool:
        return False  # chosen explicitly: format = "command"

    def load(self, files: MigrationFiles) -> list[Migration]:
        return []

    def applied(self, db: Executor) -> list[Applied]:
        return []

    def ensure_ledger(self, db: Executor) -> None:
        return None

    def before(self, db: Executor, migration: Migration) -> None:
        return None

    def record(self, db: Executor, migration: Migration, duration_ms: int) -> None:
        return None

    def run_command(
        self,
        command: str,
        url: str,
        cwd: Path,
        timeout: int,
        *,
        env_var: str = "DATABASE_URL",
        secret_env: Mapping[str, str] | None = None,
    ) -> str:
        """Run *command* in a shell in *cwd* with the branch URL in the environment,
        and *secret_env* too (a libsql server branch's auth token under each
        ``[libsql] token_env`` name); those values are redacted from its output.

        Returns its combined output (redacted). Raises MigrationError with the last
        lines of output on a non-zero exit, or after *timeout* seconds, when the
        command and every process it started are killed.
        """
        env = {**os.environ, "DATABASE_URL": url, env_var: url, **(secret_env or {})}
        hidden = sorted({v for v in (secret_env or {}).values() if len(v) >= 8})

        try:
            proc = subprocess.Popen(
                command,
                shell=True,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
                start_new_session=True,  # its own process group: killable as a whole
            )
        except OSError as e:
            raise MigrationError(
                f"cannot run migration command in {cwd}: {e}"
            ) from None
        try:
            out, _ = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            raise MigrationError(
                f"migration command `{scrub(command, url)}` did not finish within "
                f"{timeout} s and was killed; raise [migrations] timeout if it needs "
                f"longer. Last output:\n{tail(scrub(out or '', url, hidden))}"
            ) from None
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        text = scrub(out or "", url, hidden)
        if proc.returncode != 0:
            raise MigrationError(
                f"migration command `{scrub(command, url)}` failed with exit code "
                f"{proc.returncode}; the database may be partly migrated (the tool "
                f"decides). Last output:\n{tail(text)}"
            )
        return text
