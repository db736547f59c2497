"""The container image, run as a user would: built by ``.ci/docker`` (its name in
``BRANCHDB_TEST_IMAGE``), started with the Docker SDK on host networking, serving a
project mounted from the host, as the non-root user it declares."""

from __future__ import annotations

import os
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apisupport import CONFIG, free_port

IMAGE = os.environ.get("BRANCHDB_TEST_IMAGE")
TOKEN = "bdb_" + "i" * 40

if not IMAGE:
    if os.environ.get("CI"):
        pytest.fail("BRANCHDB_TEST_IMAGE is not set under CI (.ci/docker builds it)")
    pytest.skip(
        "no image: run .ci/docker and set BRANCHDB_TEST_IMAGE", allow_module_level=True
    )

docker = pytest.importorskip("docker")


@pytest.fixture(scope="module")
def client() -> Iterator[object]:
    c = docker.from_env()
    yield c
    c.close()


@pytest.fixture
def project() -> Iterator[Path]:
    # Not under pytest's 0700 tmp: the container's user must reach it.
    root = Path(tempfile.mkdtemp(prefix="branchdb-image-", dir="/tmp"))
    try:
        (root / "branchdb.toml").write_text(CONFIG)
        mig = root / "migrations"
        mig.mkdir()
        (mig / "001_users.sql").write_text(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT NOT NULL);\n"
        )
        for path in [root, *root.rglob("*")]:
            os.chown(path, 10001, 10001)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_image_is_lean_labelled_and_unprivileged(client: object) -> None:
    image = client.images.get(IMAGE)  # type: ignore[attr-defined]
    config = image.attrs["Config"]
    assert config["User"] == "10001:10001"
    assert config["Entrypoint"] == ["branchdb"] and config["Cmd"] == ["serve"]
    assert config["Healthcheck"]["Test"][0] == "CMD"
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "branchdb"
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    size_mb = image.attrs["Size"] / 1e6
    print(f"image {IMAGE}: {size_mb:.0f} MB")  # reported in the README
    assert size_mb < 500
    out = client.containers.run(  # type: ignore[attr-defined]
        IMAGE,
        ["--version"],
        remove=True,
        network_mode="host",
    )
    assert b"branchdb" in out
    for tool in ("pg_dump", "pg_restore", "psql", "git"):
        client.containers.run(  # type: ignore[attr-defined]
            IMAGE,
            [],
            entrypoint=["sh", "-c", f"command -v {tool}"],
            remove=True,
            network_mode="host",
        )


def test_the_container_serves_a_project_and_stops_cleanly(
    client: object, project: Path
) -> None:
    port = free_port()
    container = client.containers.run(  # type: ignore[attr-defined]
        IMAGE,
        detach=True,
        network_mode="host",
        working_dir="/srv/project",
        volumes={str(project): {"bind": "/srv/project", "mode": "rw"}},
        environment={
            "BRANCHDB_PORT": str(port),
            "BRANCHDB_ADMIN_TOKEN": TOKEN,
            "BRANCHDB_DAEMON_DATA_DIR": "/srv/project/.daemon",
        },
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/v1/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            container.reload()
            assert container.status == "running", container.logs().decode()
            assert time.monotonic() < deadline, container.logs().decode()
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert httpx.get(f"{base}/v1/projects/shop/branches").status_code == 401
        # The dashboard's templates and static files are in the image.
        page = httpx.get(f"{base}/ui/login")
        assert page.status_code == 200 and 'name="token"' in page.text
        assert httpx.get(f"{base}/ui/static/htmx.min.js").status_code == 200
        r = httpx.put(f"{base}/v1/projects/shop/branches/feature/x", headers=auth)
        assert r.status_code == 201, r.text
        url = r.json()["url"]
        assert url.startswith("file:/srv/project/.branchdb/branches/")
        # The database the container made is a real file on the host's mount.
        on_host = project / url.removeprefix("file:/srv/project/")
        con = sqlite3.connect(on_host)
        try:
            assert con.execute("SELECT count(*) FROM users").fetchone() == (0,)
        finally:
            con.close()
        assert on_host.stat().st_uid == 10001
        # Listening on every interface inside the container (host networking here).
        logs = container.logs().decode()
        assert "0.0.0.0" in logs or f":{port}" in logs, logs
        container.stop(timeout=30)  # SIGTERM, then the grace period
        container.reload()
        assert container.attrs["State"]["ExitCode"] == 0, container.logs().decode()
    finally:
        container.remove(force=True)
