"""What the docker backend's tests need: a Docker Engine, the PostgreSQL image
.ci/docker builds (``BRANCHDB_TEST_PG_IMAGE``, default ``local/postgres:15``) and a
copy-on-write file system (``BRANCHDB_TEST_COW_DIR``, made by .ci/cowfs). Under
``CI=true`` a missing one fails the test; elsewhere it is skipped."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

IMAGE = os.environ.get("BRANCHDB_TEST_PG_IMAGE") or "local/postgres:15"


def _missing(why: str) -> Any:
    if os.environ.get("CI"):
        pytest.fail(f"the docker backend's tests need {why} under CI (.ci/test)")
    pytest.skip(f"needs {why}")


def require_docker() -> tuple[str, Path]:
    """(image, a folder on a copy-on-write file system) for the docker backend."""
    cow = os.environ.get("BRANCHDB_TEST_COW_DIR")
    if not cow or not Path(cow).is_dir():
        _missing("BRANCHDB_TEST_COW_DIR (a btrfs/XFS mount: .ci/cowfs)")
    if os.geteuid() != 0 or not shutil.which("cp"):
        _missing("root (the clones keep the image's postgres uid)")
    import docker

    try:
        client = docker.from_env(timeout=30)
    except docker.errors.DockerException as e:
        _missing(f"dockerd (.ci/docker): {e}")
    try:
        client.images.get(IMAGE)
    except docker.errors.DockerException as e:
        _missing(f"the image {IMAGE} (.ci/docker): {e}")
    finally:
        client.close()
    return IMAGE, Path(str(cow))


def remove_project(project: str) -> None:
    """Remove every container and volume labelled with *project* (test cleanup)."""
    import docker

    client = docker.from_env(timeout=60)
    try:
        flt = {"label": f"branchdb.project={project}"}
        for c in client.containers.list(all=True, filters=flt):
            c.remove(force=True)
        for v in client.volumes.list(filters=flt):
            v.remove(force=True)
    finally:
        client.close()
