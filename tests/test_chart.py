"""The Helm chart: Helm's own SDK lints and renders it (no helm binary or cluster
here), every rendered manifest validates against the Kubernetes schemas offline, the
value sets a user would pick render what they promise, and the daemon configuration
it renders is one the daemon loads."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import helm_python as helm
import kubernetes_validate as kv
import pytest
import yaml

CHART = Path(__file__).resolve().parent.parent / "charts" / "branchdb"
KUBE = "1.30.0"
#: Kinds of the Prometheus Operator: no bundled schema, checked by hand below.
CRDS = {"ServiceMonitor"}

SHOP = {
    "name": "shop",
    "repository": "https://github.com/acme/shop.git",
    "config": {
        "project": {"name": "shop", "default_branch": "main"},
        "database": {"backend": "postgres"},
        "migrations": {"dir": "drizzle", "format": "drizzle"},
    },
}
VALUE_SETS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "sqlite-single": {
        "projects": [
            {"name": "notes", "config": {"project": {"name": "notes"}}},
        ],
        "persistence": {"enabled": True, "size": "5Gi"},
        "secrets": {
            "adminToken": "bdb_admin_example",
            "webhookSecrets": {"notes": "s"},
        },
    },
    "postgres-3-ingress": {
        "replicaCount": 3,
        "state": {"backend": "postgres", "url": "postgresql://bdb:pw@db/ops"},
        "database": {"adminUrl": "postgresql://admin:pw@db/postgres"},
        "projects": [SHOP],
        "ingress": {
            "enabled": True,
            "className": "nginx",
            "hosts": [
                {
                    "host": "branchdb.example.com",
                    "paths": [{"path": "/", "pathType": "Prefix"}],
                }
            ],
            "tls": [{"hosts": ["branchdb.example.com"], "secretName": "bdb-tls"}],
        },
        "serviceMonitor": {"enabled": True},
    },
    "existing-secret": {
        "replicaCount": 2,
        "state": {"backend": "postgres"},
        "existingSecret": "branchdb-prod",
        "projects": [SHOP],
    },
}


def render(values: dict[str, Any], chart: Path = CHART) -> list[dict[str, Any]]:
    c = helm.Chart.load(str(chart))
    try:
        out = c.render(values, name="bdb", namespace="previews")
    finally:
        c.close()
    docs = []
    for name, text in sorted(out.items()):
        if name.endswith("NOTES.txt"):
            continue
        docs += [d for d in yaml.safe_load_all(text) if d]
    return docs


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def test_the_chart_lints_clean() -> None:
    for values in VALUE_SETS.values():
        report = helm.lint(str(CHART), values, strict=True)
        assert report["errors"] == [], report
        assert not [m for m in report["messages"] if m["severity"] > 1], report


@pytest.mark.parametrize("which", sorted(VALUE_SETS))
def test_every_manifest_validates(which: str) -> None:
    docs = render(VALUE_SETS[which])
    assert {"ConfigMap", "Deployment", "Service"} <= {d["kind"] for d in docs}
    for doc in docs:
        if doc["kind"] in CRDS:
            assert doc["apiVersion"] == "monitoring.coreos.com/v1"
            continue
        kv.validate(doc, KUBE, strict=True)  # raises ValidationError


def test_postgres_state_runs_three_replicas_behind_an_ingress() -> None:
    docs = render(VALUE_SETS["postgres-3-ingress"])
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 3
    assert "strategy" not in dep["spec"]  # rolling: replicas share the state store
    (pdb,) = by_kind(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    (ing,) = by_kind(docs, "Ingress")
    assert ing["spec"]["rules"][0]["host"] == "branchdb.example.com"
    (secret,) = by_kind(docs, "Secret")
    assert secret["stringData"]["BRANCHDB_STATE_URL"] == "postgresql://bdb:pw@db/ops"
    assert secret["stringData"]["BRANCHDB_PG_URL"].startswith("postgresql://admin")
    assert not by_kind(docs, "PersistentVolumeClaim")
    (pod,) = [dep["spec"]["template"]["spec"]]
    (c,) = pod["containers"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert c["readinessProbe"]["httpGet"]["path"] == "/v1/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v1/health"
    # No secret value in the ConfigMap or the pod spec: only the Secret holds them.
    assert "pw@" not in yaml.safe_dump(by_kind(docs, "ConfigMap"))
    assert "pw@" not in yaml.safe_dump(dep)


def test_sqlite_state_is_one_replica_on_a_volume() -> None:
    docs = render(VALUE_SETS["sqlite-single"])
    (dep,) = by_kind(docs, "Deployment")
    assert dep["spec"]["replicas"] == 1
    assert dep["spec"]["strategy"] == {"type": "Recreate"}
    (pvc,) = by_kind(docs, "PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert not by_kind(docs, "PodDisruptionBudget")
    (secret,) = by_kind(docs, "Secret")
    assert secret["stringData"]["BRANCHDB_WEBHOOK_SECRET_NOTES"] == "s"
    assert secret["stringData"]["BRANCHDB_ADMIN_TOKEN"] == "bdb_admin_example"


def test_existing_secret_is_used_and_none_is_made() -> None:
    docs = render(VALUE_SETS["existing-secret"])
    assert not by_kind(docs, "Secret")
    (dep,) = by_kind(docs, "Deployment")
    (c,) = dep["spec"]["template"]["spec"]["containers"]
    assert c["envFrom"] == [{"secretRef": {"name": "branchdb-prod", "optional": True}}]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "replicaCount > 1 needs state.backend: postgres"),
        (
            {
                "replicaCount": 1,
                "persistence": {"enabled": True},
                "state": {"backend": "postgres", "url": "postgresql://x/y"},
            },
            None,  # allowed: one replica with a volume
        ),
        (
            {
                "replicaCount": 2,
                "persistence": {"enabled": True},
                "state": {"backend": "postgres", "url": "postgresql://x/y"},
            },
            "persistence (the libsql file backend) needs replicaCount: 1",
        ),
        ({"state": {"backend": "postgres"}}, "needs state.url"),
        ({"replicaCount": 0}, "replicaCount"),
        ({"image": {"repository": "x", "colour": "red"}}, "colour"),
    ],
)
def test_value_sets_that_cannot_work_are_refused(
    values: dict[str, Any], message: str | None
) -> None:
    if message is None:
        assert render(values)
        return
    with pytest.raises(helm.HelmError, match=re.escape(message)):
        render(values)


def test_a_broken_template_fails(tmp_path: Path) -> None:
    chart = tmp_path / "branchdb"
    shutil.copytree(CHART, chart)
    (chart / "templates" / "broken.yaml").write_text("kind: {{ .Values.nope.deeper }\n")
    report = helm.lint(str(chart))
    assert report["errors"] or [m for m in report["messages"] if m["severity"] > 1]
    with pytest.raises(helm.HelmError):
        render({}, chart)


def test_the_rendered_configuration_is_one_the_daemon_loads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The ConfigMap, laid out as the pod mounts it, loads in the daemon's settings
    loader: the projects, their repositories and a writable data directory."""
    from branchdb.daemon.api import settings

    docs = render(VALUE_SETS["postgres-3-ingress"])
    (cm,) = by_kind(docs, "ConfigMap")
    (dep,) = by_kind(docs, "Deployment")
    (vol,) = [
        v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "config"
    ]
    etc = tmp_path / "etc"
    for item in vol["configMap"]["items"]:
        target = etc / item["path"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(cm["data"][item["key"]])
    project = tomllib.loads((etc / "projects/shop/branchdb.toml").read_text())
    assert project["database"] == {
        "backend": "postgres",
        "data_dir": "/var/lib/branchdb/projects/shop",
    }
    monkeypatch.setenv("BRANCHDB_PG_URL", "postgresql://admin:pw@127.0.0.1/postgres")
    monkeypatch.setenv("BRANCHDB_STATE_URL", "postgresql://bdb:pw@127.0.0.1/ops")
    loaded = settings.load(etc / "daemon.toml")
    assert loaded.host == "0.0.0.0" and loaded.port == 8765
    assert loaded.state_url == "postgresql://bdb:pw@127.0.0.1/ops"
    assert loaded.state_schema == "branchdb"
    (shop,) = loaded.projects.values()
    assert shop.repository == "https://github.com/acme/shop.git"
    assert shop.config.data_dir == Path("/var/lib/branchdb/projects/shop")
    assert shop.config.database.backend == "postgres"
