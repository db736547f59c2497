"""Property-based fuzzing of the daemon's API from its own OpenAPI document.

schemathesis (the real CLI, over real HTTP to uvicorn) generates requests for every
operation — schema-valid ones, invalid ones, edge cases (coverage phase) and chains
of calls (stateful phase) — against a real project with an admin token, and checks
every answer: no 5xx, the status documented, the body valid against its schema,
invalid data refused, 405 with a correct ``Allow``. Deterministic (no random seed)
and bounded (``--max-examples``) so it stays CI-sized.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apisupport import make_tokens, serve_in_thread, settings_for, setup_project

from branchdb.daemon.api.app import create_app
from branchdb.daemon.core.branchname import BRANCH_PATTERN

SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))

# Why each setting:
# - the project is fixed (random ones only ever reach the 404 of an unknown project);
# - tokens come from -H, not generated from the security scheme;
# - the stateful phase generates valid data only: in its negative mode schemathesis
#   4.32 labels some schema-invalid path parameters as positive (a false ST202);
# - "/branches/{branch}/reset" is *also* the path of branch "<x>/reset" (branch names
#   contain slashes), so PUT/GET/DELETE there are served, not 405 (same for /migrate,
#   /status, /diff);
# - POST /snapshots refuses rules/allow_unreviewed without a source (400): a rule
#   across two fields that the OpenAPI schema cannot state (null counts as present).
CONFIG = """\
[generation]
with-security-parameters = false

[parameters]
"path.project" = "shop"
"query.project" = "shop"

[phases.stateful.generation]
mode = "positive"

[[operations]]
include-path-regex = "/(reset|migrate|status|diff)$"
checks.unsupported_method.enabled = false
checks.allow_header_conformance.enabled = false

[[operations]]
include-path-regex = "/snapshots$"
include-method = "POST"
checks.positive_data_acceptance.enabled = false
"""


@pytest.fixture
def base(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, str]]:
    setup_project(repo)
    monkeypatch.setenv("BRANCHDB_WEBHOOK_SECRET", "fuzz-secret")
    settings = settings_for(repo)
    token = make_tokens(settings)["admin"]
    with serve_in_thread(create_app(settings)) as url:
        yield url, token


def test_openapi_documents_the_real_errors(base: tuple[str, str]) -> None:
    url, _ = base
    doc = httpx.get(f"{url}/openapi.json").json()
    put = doc["paths"]["/v1/projects/{project}/branches/{branch}"]["put"]
    (branch,) = [p for p in put["parameters"] if p["name"] == "branch"]
    assert branch["schema"]["pattern"] == BRANCH_PATTERN
    ref = {"$ref": "#/components/schemas/ErrorBody"}
    assert put["responses"]["422"]["content"]["application/json"]["schema"] == ref
    assert put["responses"]["400"]["content"]["application/json"]["schema"] == ref
    assert "HTTPValidationError" not in doc["components"]["schemas"]


def test_schemathesis_finds_nothing(base: tuple[str, str], tmp_path: Path) -> None:
    url, token = base
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    p = subprocess.run(
        [
            SCHEMATHESIS,
            "--config-file",
            str(config),
            "run",
            f"{url}/openapi.json",
            "-H",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "20",
            "--generation-deterministic",
            "--workers",
            "1",
            "--no-color",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-6000:]
    for phase in ("Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in out or f"✅  {phase}" in out, out[-3000:]
