"""``docker-compose`` stacks of the top-level docker-compose.yml for the tests.

CI swaps in images built on this machine (``.ci/compose.ci.yml``; names from
``.ci/docker``: ``BRANCHDB_TEST_IMAGE``, ``BRANCHDB_TEST_PG_IMAGE``,
``BRANCHDB_TEST_SQLD_IMAGE``). Every port is a free one, every secret a file in a
fresh directory, as the README's Deploy section has a team make them.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from apisupport import free_port

ROOT = Path(__file__).resolve().parent.parent
IMAGE = os.environ.get("BRANCHDB_TEST_IMAGE")
PG_IMAGE = os.environ.get("BRANCHDB_TEST_PG_IMAGE")
SQLD_IMAGE = os.environ.get("BRANCHDB_TEST_SQLD_IMAGE")
COMPOSE = shutil.which("docker-compose")
UID = 10001  # the image's user, who must own the project and read the secrets


def require_compose() -> None:
    """Skip without docker-compose and the images; fail instead under CI."""
    if IMAGE and PG_IMAGE and SQLD_IMAGE and COMPOSE:
        return
    if os.environ.get("CI"):
        pytest.fail("docker-compose and the images (.ci/docker) are required under CI")
    pytest.skip("needs docker-compose and .ci/docker's images", allow_module_level=True)


@dataclass
class Stack:
    root: Path
    project: Path
    env: dict[str, str]
    cmd: list[str]
    token: str
    webhook_secret: str
    pg_password: str
    ports: dict[str, int] = field(default_factory=dict)

    def base(self, service: str = "branchdb") -> str:
        return f"http://127.0.0.1:{self.ports[service]}"

    @property
    def pg_admin_url(self) -> str:
        return (
            f"postgresql://postgres:{self.pg_password}@127.0.0.1:"
            f"{self.ports['postgres']}/postgres"
        )

    def wait_ready(self, service: str = "branchdb", timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.base(service)}/v1/ready", timeout=2)
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"{service} did not become ready")


@contextmanager
def compose_stack(
    make_project: Callable[[Path], None],
    *,
    backend: str = "postgres",
    files: tuple[str, ...] = (),
    daemons: tuple[str, ...] = ("branchdb",),
) -> Iterator[Stack]:
    """``docker-compose up -d`` of docker-compose.yml (+ the CI override, + *files*)
    with the project *make_project* writes, served with *backend*; torn down after,
    its logs printed (shown when the test fails)."""
    root = Path(tempfile.mkdtemp(prefix="branchdb-compose-", dir="/tmp"))
    project, secrets_dir = root / "repo", root / "secrets"
    project.mkdir()
    secrets_dir.mkdir()
    make_project(project)
    ports = {name: free_port() for name in ("postgres", "sqld", "sqld_admin", *daemons)}
    password = secrets.token_urlsafe(16)
    token = "bdb_" + secrets.token_urlsafe(32)
    hook_secret = secrets.token_urlsafe(24)
    pg = f"postgresql://postgres:{password}@127.0.0.1:{ports['postgres']}"
    for name, value in {
        "pg_password": password,
        "pg_url": f"{pg}/postgres",
        "state_url": f"{pg}/branchdb_state",
        "admin_token": token,
        "webhook_secret": hook_secret,
    }.items():
        (secrets_dir / name).write_text(value + "\n")
    from branchdb.daemon.backends.sqld_auth import ensure_keypair

    ensure_keypair(secrets_dir / "sqld_key.pem", secrets_dir / "sqld_key.pub.pem")
    for path in [root, *root.rglob("*")]:
        os.chown(path, UID, UID)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRANCHDB_")},
        "BRANCHDB_PROJECT": str(project),
        "BRANCHDB_SECRETS": str(secrets_dir),
        "BRANCHDB_BACKEND": backend,
        "BRANCHDB_PG_PORT": str(ports["postgres"]),
        "BRANCHDB_SQLD_PORT": str(ports["sqld"]),
        "BRANCHDB_SQLD_ADMIN_PORT": str(ports["sqld_admin"]),
        "BRANCHDB_PORT": str(ports["branchdb"]),
        "BRANCHDB_IMAGE": IMAGE or "",
        "BRANCHDB_POSTGRES_IMAGE": PG_IMAGE or "",
        "BRANCHDB_SQLD_IMAGE": SQLD_IMAGE or "",
    }
    if "branchdb2" in ports:
        env["BRANCHDB_PORT_2"] = str(ports["branchdb2"])
    cmd = [str(COMPOSE), "-p", f"bdbci{secrets.token_hex(3)}"]
    for f in ("docker-compose.yml", *files, ".ci/compose.ci.yml"):
        cmd += ["-f", str(ROOT / f)]
    stack = Stack(root, project, env, cmd, token, hook_secret, password, ports)
    try:
        up = subprocess.run(
            [*cmd, "up", "-d"], env=env, capture_output=True, text=True, timeout=300
        )
        assert up.returncode == 0, up.stderr
        for name in daemons:
            stack.wait_ready(name)
        yield stack
    finally:
        logs = subprocess.run(
            [*cmd, "logs", "--no-color"], env=env, capture_output=True, text=True
        )
        print(logs.stdout[-12000:])
        subprocess.run([*cmd, "down", "-v"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
