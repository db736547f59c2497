"""Installing and removing branchdb's git ``post-checkout`` hook.

An existing hook is kept: it is moved to ``post-checkout.branchdb-previous`` and our
hook runs it first with the same arguments and keeps its exit status. Uninstalling
puts it back. The hook runs ``branchdb up --hook`` only for branch checkouts (git's
third argument is 1) and never fails the checkout.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

from branchdb.daemon.core.errors import Refused
from branchdb.daemon.vcs.repo import hooks_dir

MARKER = "# installed by branchdb"
PREVIOUS = "post-checkout.branchdb-previous"

_SCRIPT = """#!/bin/sh
{marker} (`branchdb hook uninstall` removes it and restores any previous hook)
status=0
here=$(dirname "$0")
if [ -x "$here/{previous}" ]; then
  "$here/{previous}" "$@" || status=$?
fi
# $3 = 1: a branch checkout (not a file checkout). Never fail or block the checkout.
if [ "$3" = "1" ]; then
  if [ -x {exe} ]; then
    {exe} up --hook || true
  elif command -v branchdb >/dev/null 2>&1; then
    branchdb up --hook || true
  else
    echo "branchdb: warning: branchdb is not installed; branch database not updated" >&2
  fi
fi
exit $status
"""


def _exe() -> str:
    found = shutil.which("branchdb")
    argv0 = Path(sys.argv[0])
    if argv0.name == "branchdb" and argv0.exists():
        found = str(argv0.resolve())
    return shlex.quote(found or "branchdb")


def install(cwd: Path) -> Path:
    """Install the hook (idempotent). Returns its path."""
    hooks = hooks_dir(cwd)
    hooks.mkdir(parents=True, exist_ok=True)
    hook = hooks / "post-checkout"
    if hook.exists() and MARKER not in hook.read_text(errors="replace"):
        previous = hooks / PREVIOUS
        if previous.exists():
            raise Refused(
                f"{hook} is not branchdb's and {previous} already exists; "
                "merge them by hand"
            )
        os.rename(hook, previous)
        if not os.access(previous, os.X_OK):
            previous.chmod(previous.stat().st_mode | 0o111)
    tmp = hook.with_name(".post-checkout.branchdb-tmp")
    tmp.write_text(_SCRIPT.format(marker=MARKER, previous=PREVIOUS, exe=_exe()))
    tmp.chmod(0o755)
    os.replace(tmp, hook)
    return hook


def uninstall(cwd: Path) -> Path | None:
    """Remove branchdb's hook and restore the previous one. Returns the hook path."""
    hooks = hooks_dir(cwd)
    hook = hooks / "post-checkout"
    if not hook.exists() or MARKER not in hook.read_text(errors="replace"):
        return None
    hook.unlink()
    previous = hooks / PREVIOUS
    if previous.exists():
        os.rename(previous, hook)
    return hook


def installed(cwd: Path) -> bool:
    hook = hooks_dir(cwd) / "post-checkout"
    return hook.exists() and MARKER in hook.read_text(errors="replace")
