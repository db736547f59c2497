"""Shared fixtures: real git repositories in temp dirs."""

from __future__ import annotations

from pathlib import Path

import pytest
from pgcluster import pg_cluster  # noqa: F401  (session fixture, re-exported)
from support import git


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """An empty git repository on branch main with one commit."""
    root = tmp_path / "app"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "dev@example.com")
    git(root, "config", "user.name", "Dev")
    (root / "README").write_text("app\n")
    git(root, "add", "README")
    git(root, "commit", "-q", "-m", "init")
    return root
