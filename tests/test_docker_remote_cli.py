"""The CLI on the docker backend prints the same in embedded and remote mode (as
tests/test_remote_cli.py checks on libsql): the real CLI in one clone with no server,
and in another with ``BRANCHDB_SERVER`` pointing at a real daemon whose project uses
``backend = "docker"``. Once normalized — the URL's password and port, timestamps,
paths — every command's exit code, stdout and stderr are equal."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from apisupport import make_tokens, serve_in_thread, setup_project
from dockersupport import remove_project, require_docker
from support import git, run

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api.app import create_app

pytestmark = [pytest.mark.docker]

URL = re.compile(r"postgresql://app:[^@\s\"]+@127\.0\.0\.1:\d+/app")
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
SIZE = re.compile(r"\b\d+(\.\d+)? (B|KiB|MiB|GiB)\b|\"size_bytes\": \d+")
SECONDS = re.compile(r'"seconds": [0-9.]+')


@pytest.fixture
def clones(repo: Path, tmp_path: Path) -> Iterator[tuple[Path, Path, dict[str, str]]]:
    image, cow = require_docker()
    setup_project(repo)
    project = "dr" + tmp_path.name[-8:].replace("_", "").lower()
    (repo / "branchdb.toml").write_text(
        f'[project]\nname = "{project}"\n\n[database]\nbackend = "docker"\n\n'
        '[migrations]\ndir = "migrations"\nformat = "sql"\n\n'
        f'[docker]\nimage = "{image}"\ndir = "{cow / "contract"}"\n'
    )
    git(repo, "commit", "-qam", "docker")
    git(repo, "branch", "feature/x")
    out = []
    for name in ("server", "embedded", "local"):
        dest = tmp_path / name
        git(repo.parent, "clone", "-q", str(repo), str(dest))
        git(dest, "checkout", "-q", "feature/x")
        out.append(dest)
    settings = daemon_config.load(cwd=out[0])
    toks = make_tokens(settings)
    try:
        with serve_in_thread(create_app(settings)) as base:
            env = {"BRANCHDB_SERVER": base, "BRANCHDB_TOKEN": toks["admin"]}
            yield out[1], out[2], env
    finally:
        remove_project(project)
        shutil.rmtree(cow / "contract" / project, ignore_errors=True)


def _norm(text: str, root: Path) -> str:
    text = URL.sub("<URL>", text.replace(str(root), "<ROOT>"))
    return SECONDS.sub("<S>", SIZE.sub("<SIZE>", TS.sub("<TS>", text)))


def test_same_output_embedded_and_remote(
    clones: tuple[Path, Path, dict[str, str]],
) -> None:
    embedded, local, env = clones
    steps = [
        ("up",),
        ("up", "--json"),
        ("url",),
        ("env",),
        ("ls",),
        ("status",),
        ("status", "--json"),
        ("migrate", "--dry-run"),
        ("reset", "--json"),
        ("url",),
        ("down", "--yes"),
        ("status",),
    ]
    outputs = {}
    urls: dict[str, list[str]] = {}
    raw: dict[str, str] = {}
    for mode, root, extra in (("embedded", embedded, None), ("remote", local, env)):
        got = []
        for step in steps:
            r = run(root, *step, env=extra)
            assert "Traceback" not in r.err, r.err
            if step == ("url",) and r.code == 0:
                urls.setdefault(mode, []).append(r.out.strip())
            if mode == "remote":
                raw.setdefault(" ".join(step), r.out)
            got.append((" ".join(step), r.code, _norm(r.out, root), _norm(r.err, root)))
        outputs[mode] = got
    for emb, rem in zip(outputs["embedded"], outputs["remote"], strict=True):
        assert emb == rem, f"{emb[0]!r} differs:\nembedded: {emb}\nremote:   {rem}"
    first = dict((o[0], o) for o in reversed(outputs["remote"]))
    assert first["up"][1] == 0 and "2 migrations" in first["up"][2]
    assert json.loads(raw["up --json"])["up_to_date"] is True
    assert json.loads(raw["up --json"])["running"] is True
    assert json.loads(raw["reset --json"])["running"] is True
    assert "running" in first["status"][2] and "(running)" in first["ls"][2]
    assert json.loads(raw["status --json"])["running"] is True
    assert first["status"][1] == 0 and outputs["remote"][-1][1] != 0  # after down
    for mode in ("embedded", "remote"):
        before, after = urls[mode]
        assert before == after  # reset keeps the URL
    # The URL the remote CLI printed was a real server (now removed by down).
    assert URL.fullmatch(urls["remote"][0])
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(urls["remote"][0], connect_timeout=2)
