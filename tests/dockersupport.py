"""What the docker backend's tests need: a Docker Engine, the PostgreSQL image
.ci/docker builds (``BRANCHDB_TEST_PG_IMAGE``, default ``local/postgres:15``) and a
copy-on-write file system (``BRANCHDB_TEST_COW_DIR``, made by .ci/cowfs). Under
``CI=true`` a missing one fails the test; elsewhere it is skipped."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

IMAGE = os.environ.get("BRANCHDB_TEST_PG_IMAGE") or "local/postgres:15"


def _missing(why: str) -> Any:
    if os.environ.get("CI"):
        pytest.fail(f"the docker backend's tests need {why} under CI (.ci/test)")
    pytest.skip(f"needs {why}")


def require_docker(cow_dir: bool = True) -> tuple[str, Path]:
    """(image, a folder on a copy-on-write file system) for the docker backend;
    without *cow_dir*, the folder is :func:`plain_dir` (layered clones)."""
    cow = os.environ.get("BRANCHDB_TEST_COW_DIR") if cow_dir else str(plain_dir())
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


def plain_dir() -> Path:
    """A folder on the machine's ordinary file system (ext4 here, no reflinks) for
    the docker backend's layered clones; shared, like the CoW one's, so that the
    empty cluster's image is built once."""
    folder = Path(tempfile.gettempdir()) / "branchdb-test-overlay"
    folder.mkdir(exist_ok=True)
    return folder


def remove_project(project: str) -> None:
    """Remove every container, volume and image labelled with *project* (test
    cleanup)."""
    import docker

    client = docker.from_env(timeout=60)
    try:
        flt = {"label": f"branchdb.project={project}"}
        for c in client.containers.list(all=True, filters=flt):
            c.remove(force=True)
        for v in client.volumes.list(filters=flt):
            v.remove(force=True)
        for i in client.images.list(filters=flt):
            with contextlib.suppress(docker.errors.NotFound):
                client.images.remove(i.id, force=True)
    finally:
        client.close()
