"""The CLI's remote mode against a real daemon: same output as embedded mode.

Three clones of one origin repository:

- ``embedded``: the real CLI with no server configured (the engine in-process);
- ``local``: the real CLI with ``BRANCHDB_SERVER`` set, talking to a real uvicorn
  server on 127.0.0.1 that serves
- ``server``: the daemon's own checkout, which never sees the developers'
  uncommitted migration files — so any migration the remote branch gets from them
  can only have come from the upload.

Both CLIs run the same commands; their stdout, stderr and exit codes must be equal
once the things that honestly differ are normalized: the data directory (the daemon
keeps its databases under the server checkout), the checkout's own path (``env
--write`` names the file), timestamps and durations.
"""

from __future__ import annotations

import io
import json
import re
import sqlite3
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from apisupport import auth, free_port, make_tokens, serve_in_thread, setup_project
from support import git, run, tables

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api.app import create_app

RULES = """\
salt = "remote-test-salt"

[tables.people]
columns.email = "email"
"""
UNCOMMITTED = "CREATE TABLE wishlist (id INTEGER PRIMARY KEY, item TEXT);\n"
LATER = "CREATE TABLE coupons (code TEXT PRIMARY KEY);\n"
TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")
SECONDS = re.compile(r'"seconds": [0-9.]+')


class Setup:
    def __init__(self, tmp: Path, origin: Path, base: str, toks: dict[str, str]):
        self.tmp = tmp
        self.origin = origin
        self.base = base
        self.tokens = toks
        self.server = tmp / "server"
        self.embedded = tmp / "embedded"
        self.local = tmp / "local"
        self.seed = tmp / "seed.db"

    def remote_env(self, scope: str = "admin") -> dict[str, str]:
        return {"BRANCHDB_SERVER": self.base, "BRANCHDB_TOKEN": self.tokens[scope]}


def _clone(origin: Path, dest: Path) -> Path:
    git(origin.parent, "clone", "-q", str(origin), str(dest))
    git(dest, "config", "user.email", "dev@example.com")
    git(dest, "config", "user.name", "Dev")
    return dest


@pytest.fixture
def setup(repo: Path, tmp_path: Path) -> Iterator[Setup]:
    setup_project(repo)
    (repo / "rules.toml").write_text(RULES)
    toml = repo / "branchdb.toml"
    seed = tmp_path / "seed.db"
    toml.write_text(
        toml.read_text()
        + f'\n[snapshots.nightly]\nsource = "{seed}"\nrules = "rules.toml"\n'
    )
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "rules")
    # feature/x exists upstream (with its own commit, so it is not merged): every
    # clone, the daemon's included, knows the branch.
    git(repo, "checkout", "-q", "-b", "feature/x")
    (repo / "NOTES").write_text("x\n")
    git(repo, "add", "NOTES")
    git(repo, "commit", "-q", "-m", "feature x")
    git(repo, "checkout", "-q", "main")
    server = _clone(repo, tmp_path / "server")
    settings = daemon_config.load(cwd=server)
    assert settings.data_dir == server.resolve() / ".branchdb"
    toks = make_tokens(settings)
    with serve_in_thread(create_app(settings)) as base:
        s = Setup(tmp_path, repo, base, toks)
        for dest in (s.embedded, s.local):
            _clone(repo, dest)
            git(dest, "checkout", "-q", "feature/x")
            (dest / "migrations" / "003_wishlist.sql").write_text(UNCOMMITTED)
        con = sqlite3.connect(s.seed)
        con.execute("CREATE TABLE people (id INTEGER PRIMARY KEY, email TEXT)")
        con.executemany(
            "INSERT INTO people (email) VALUES (?)",
            [("ann@example.com",), ("bob@example.org",)],
        )
        con.commit()
        con.close()
        yield s


def _norm(text: str, roots: tuple[Path, ...], data: Path) -> str:
    text = text.replace(str(data), "<DATA>")
    for root in roots:
        text = text.replace(str(root), "<ROOT>")
    return SECONDS.sub('"seconds": <S>', TS.sub("<TS>", text))


def test_every_command_prints_the_same_in_both_modes(setup: Setup) -> None:
    s = setup
    seed = str(s.seed)
    steps: list[tuple[str, ...]] = [
        ("up",),
        ("up",),
        ("up", "--json"),
        ("url",),
        ("env",),
        ("env", "--var", "DB", "--write", ".env"),
        ("ls",),
        ("ls", "--json"),
        ("status",),
        ("status", "--json"),
        ("@write", "004_coupons.sql"),
        ("migrate", "--dry-run"),
        ("status",),
        ("migrate", "--json"),
        ("migrate",),
        ("reset", "--json"),
        ("reset", "main"),  # protected: refused
        ("migrate", "nope"),  # no database: refused with a hint
        ("snapshot", "ls"),
        ("snapshot", "create", "seed", "--source", seed, "--rules", "rules.toml"),
        ("snapshot", "create", "seed", "--source", seed, "--json"),
        ("snapshot", "refresh", "nightly"),
        ("snapshot", "refresh", "nightly", "--json"),
        ("snapshot", "refresh", "weekly"),  # no definition
        ("snapshot", "ls"),
        ("snapshot", "ls", "--json"),
        ("snapshot", "rm", "nightly", "--json"),
        ("up", "feature/y", "--from", "seed@1", "--json"),
        ("status", "feature/y"),
        ("snapshot", "rm", "seed@1"),  # in use: refused
        ("snapshot", "rm", "seed@2", "--json"),
        ("down", "feature/y", "--yes"),
        ("down", "main", "--yes"),  # protected: refused
        ("up", "gone", "--quiet"),  # no such git branch anywhere: collectable
        ("gc", "--dry-run"),
        ("gc", "--dry-run", "--json"),
        ("gc",),
        ("gc", "--json"),
        ("ls",),
        ("down", "gone", "--yes", "--json"),
        ("snapshot", "rm", "seed"),
    ]
    outputs: dict[str, list[tuple[str, ...]]] = {}
    # In remote mode a message may name the daemon's checkout of the project (its
    # branchdb.toml) where embedded mode names the local one.
    for mode, root, roots, data, env in (
        ("embedded", s.embedded, (s.embedded,), s.embedded / ".branchdb", None),
        (
            "remote",
            s.local,
            (s.local, s.server),
            s.server / ".branchdb",
            s.remote_env(),
        ),
    ):
        got = []
        for step in steps:
            if step[0] == "@write":
                (root / "migrations" / step[1]).write_text(LATER)
                continue
            r = run(root, *step, env=env)
            assert "Traceback" not in r.err, r.err
            got.append(
                (
                    " ".join(step),
                    str(r.code),
                    _norm(r.out, roots, data),
                    _norm(r.err, roots, data),
                )
            )
        outputs[mode] = got
    for emb, rem in zip(outputs["embedded"], outputs["remote"], strict=True):
        assert emb == rem, f"{emb[0]!r} differs:\nembedded: {emb}\nremote:   {rem}"
    # The outputs are real answers, not two identical errors.
    by_step: dict[str, tuple[str, ...]] = {}
    for o in outputs["remote"]:
        by_step.setdefault(o[0], o)  # the first run of a repeated step
    assert (
        by_step["up"][1] == "0" and "created (fresh), 3 migrations" in by_step["up"][2]
    )
    assert json.loads(by_step["up --json"][2])["up_to_date"] is True
    assert by_step["reset main"][1] == "1" and "protected" in by_step["reset main"][3]
    assert "source of branch 'feature/y'" in by_step["snapshot rm seed@1"][3]
    assert (
        "sanitized 1 tables"
        in by_step[f"snapshot create seed --source {seed} --rules rules.toml"][2]
    )
    assert "sanitized 1 tables" in by_step["snapshot refresh nightly"][2]
    assert "[snapshots.weekly]" in by_step["snapshot refresh weekly"][3]
    plan = json.loads(by_step["gc --dry-run --json"][2])
    assert [c["policy"] for c in plan["candidates"]] == ["deleted"]
    # The developer's checkout has no database of its own in remote mode: the
    # daemon's does, and it carries the uncommitted migrations.
    assert not (s.local / ".branchdb" / "databases").exists()
    up = json.loads(by_step["up --json"][2])
    data = s.server / ".branchdb"
    db = Path(up["url"].removeprefix("file:").replace("<DATA>", str(data)))
    assert db.is_file() and tables(db) >= {"wishlist", "coupons"}
    assert not (s.server / "migrations" / "003_wishlist.sql").exists()
    assert f"DB=file:{db}" in (s.local / ".env").read_text()


def test_uncommitted_migration_is_uploaded_and_applied(setup: Setup) -> None:
    s = setup
    assert "?? migrations/003_wishlist.sql" in git(s.local, "status", "--short")
    r = run(s.local, "up", "--json", env=s.remote_env("ci"))
    assert r.code == 0, r.err
    res = json.loads(r.out)
    assert res["created"] and res["applied"] == [
        "001_users.sql",
        "002_orders.sql",
        "003_wishlist.sql",
    ]
    db = Path(res["url"].removeprefix("file:"))
    assert db.is_relative_to(s.server.resolve())
    assert tables(db) >= {"users", "orders", "wishlist"}
    # The same call without local changes is a no-op; an edit of the uploaded
    # file is refused like in embedded mode (the ledger's checksum differs).
    again = run(s.local, "up", "--json", env=s.remote_env("ci"))
    assert json.loads(again.out)["up_to_date"] is True, again.err
    (s.local / "migrations" / "003_wishlist.sql").write_text(UNCOMMITTED + "-- x\n")
    edited = run(s.local, "up", env=s.remote_env("ci"))
    assert edited.code != 0 and len(edited.err.strip().splitlines()) == 1, edited.err
    assert "003_wishlist.sql" in edited.err and "Traceback" not in edited.err


def _one_line_error(r: object) -> str:
    code, out, err = r.code, r.out, r.err  # type: ignore[attr-defined]
    assert code != 0, (out, err)
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert err.startswith("branchdb: error: "), err
    line: str = err.strip()
    return line


def test_bad_token_and_wrong_scope(setup: Setup) -> None:
    s = setup
    bad = "bdb_" + "0" * 40
    r = run(s.local, "ls", env={"BRANCHDB_SERVER": s.base, "BRANCHDB_TOKEN": bad})
    line = _one_line_error(r)
    assert "refused the token" in line and "BRANCHDB_TOKEN" in line
    assert bad not in r.err and bad not in r.out
    r = run(s.local, "ls", env={"BRANCHDB_SERVER": s.base, "BRANCHDB_TOKEN": ""})
    assert "missing bearer token" in _one_line_error(r)
    r = run(s.local, "up", env=s.remote_env("read"))
    line = _one_line_error(r)
    assert "scope 'read'" in line and s.tokens["read"] not in line
    # A read token may read.
    assert run(s.local, "ls", env=s.remote_env("read")).code == 0


def test_server_down_is_a_one_line_error(setup: Setup) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    for cmd in (("up",), ("ls",), ("snapshot", "ls"), ("gc", "--dry-run")):
        r = run(setup.local, *cmd, env={"BRANCHDB_SERVER": down})
        line = _one_line_error(r)
        assert f"cannot reach the branchdb server at {down}" in line
    for bad in ("localhost:8765", "ftp://x", "http://256.1.1.1:99999"):
        r = run(setup.local, "ls", env={"BRANCHDB_SERVER": bad})
        assert "must be an http:// or https:// URL" in _one_line_error(r)
        assert r.code == 2
    # The hook never fails a checkout, even with the server down.
    r = run(setup.local, "up", "--hook", env={"BRANCHDB_SERVER": down})
    assert r.code == 0 and "warning: cannot reach" in r.err


def test_wrong_project_and_server_url_in_branchdb_toml(setup: Setup) -> None:
    s = setup
    toml = s.local / "branchdb.toml"
    toml.write_text(
        toml.read_text().replace('name = "shop"', 'name = "other"')
        + f'\n[server]\nurl = "{s.base}"\n'
    )
    r = run(s.local, "url", env={"BRANCHDB_TOKEN": s.tokens["read"]})
    line = _one_line_error(r)
    assert "no project 'other' is served here" in line and "project.name" in line


def test_fast_path_falls_through_in_remote_mode(setup: Setup) -> None:
    """A checkout with an up-to-date *local* database still asks the daemon once a
    server is configured (the fast path must not answer from local state)."""
    s = setup
    assert run(s.local, "up").code == 0  # embedded: a local database, up to date
    local = run(s.local, "up", "--json")
    assert json.loads(local.out)["up_to_date"] is True
    toml = s.local / "branchdb.toml"
    toml.write_text(toml.read_text() + f'\n[server]\nurl = "{s.base}"\n')
    env = {"BRANCHDB_TOKEN": s.tokens["ci"]}
    remote = json.loads(run(s.local, "up", "--json", env=env).out)
    assert remote["created"] is True
    assert Path(remote["url"].removeprefix("file:")).is_relative_to(s.server)
    # The fast path's modules do not import httpx.
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, branchdb.cli.fast, branchdb.cli.entry, branchdb.cli.output;"
            "print('httpx' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "False"


# ------------------------------------------------------------ the upload API
def test_upload_limits_and_hostile_paths(setup: Setup) -> None:
    s = setup
    url = f"{s.base}/v1/projects/shop/branches/feature/up"
    h = auth(s.tokens["ci"])
    gz = {**h, "Content-Type": "application/gzip"}
    with httpx.Client(timeout=60) as c:
        for path in ("../evil.sql", "/abs.sql", "a/../../b.sql", "a\\b.sql", ""):
            r = c.put(url, headers=h, json={"files": {path: "SELECT 1;"}})
            assert r.status_code == 400, (path, r.text)
            assert r.json()["error"]["type"] == "BadRequest"
        r = c.put(url, headers=h, json={"files": ["nope"]})
        assert r.status_code == 400 and "files" in r.json()["error"]["message"]
        r = c.put(url, headers={**h, "Content-Type": "text/plain"}, content=b"x")
        assert r.status_code == 400
        r = c.put(url, headers={**h, "Content-Type": "application/gzip"}, content=b"x")
        assert r.status_code == 400 and "tar.gz" in r.text
        big = "x" * (9 * 1024 * 1024)
        r = c.put(url, headers=h, json={"files": {"001_big.sql": big}})
        assert r.status_code == 413 and r.json()["error"]["type"] == "PayloadTooLarge"
        # A gzip bomb stops at the unpacked limit.
        import gzip

        bomb = gzip.compress(b"\0" * (40 * 1024 * 1024))
        assert len(bomb) < 8 * 1024 * 1024
        r = c.put(url, headers={**h, "Content-Type": "application/gzip"}, content=bomb)
        assert r.status_code == 413, r.text
        # Nothing was created by any refused call.
        assert c.get(url, headers=h).status_code == 404
        # A symbolic link in a tar.gz is refused.
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            link = tarfile.TarInfo("001_link.sql")
            link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(link)
        r = c.put(url, headers=gz, content=buf.getvalue())
        assert r.status_code == 400 and "regular file" in r.text
        # A JSON upload works, and dot files are ignored like on disk.
        files = {"001_t.sql": "CREATE TABLE t (x INTEGER);\n", ".DS_Store": "junk"}
        r = c.put(url, headers=h, json={"files": files})
        assert r.status_code == 201, r.text
        assert r.json()["applied"] == ["001_t.sql"]
        assert "t" in tables(Path(r.json()["url"].removeprefix("file:")))
        # A tar.gz as `tar -czf - -C migrations .` writes it (./ names, directory
        # entries) is read like the CLI's own archive.
        mig = s.tmp / "mig"
        (mig / "sub").mkdir(parents=True)
        (mig / "001_t.sql").write_text("CREATE TABLE t (x INTEGER);\n")
        (mig / "002_u.sql").write_text("CREATE TABLE u (x INTEGER);\n")
        archive = subprocess.run(
            ["tar", "-czf", "-", "-C", str(mig), "."], capture_output=True, check=True
        ).stdout
        r = c.put(url, headers=gz, content=archive)
        assert r.status_code == 200 and r.json()["applied"] == ["002_u.sql"], r.text


def test_snapshot_api_and_openapi(setup: Setup) -> None:
    s = setup
    h = auth(s.tokens["admin"])
    base = f"{s.base}/v1/projects/shop"
    with httpx.Client(timeout=60) as c:
        r = c.post(
            f"{base}/snapshots", headers=auth(s.tokens["ci"]), json={"name": "a"}
        )
        assert r.status_code == 403
        r = c.post(f"{base}/snapshots", headers=h, json={"name": "nodef"})
        assert r.status_code == 404 and "[snapshots.nodef]" in r.text
        body = {"name": "seed", "source": str(s.seed), "rules": RULES}
        r = c.post(f"{base}/snapshots", headers=h, json=body, params={"wait": "false"})
        assert r.status_code == 202, r.text
        job = r.json()
        while job["status"] == "running":
            job = c.get(f"{s.base}/v1/jobs/{job['id']}", headers=h).json()
        assert job["status"] == "succeeded" and job["http_status"] == 201, job
        assert job["result"]["ref"] == "seed@1" and job["result"]["sanitize"]
        assert any("seed@1" in line for line in job["progress"])
        snap = Path(job["result"]["location"])
        con = sqlite3.connect(f"file:{snap}?mode=ro", uri=True)
        emails = {row[0] for row in con.execute("SELECT email FROM people")}
        con.close()
        assert not emails & {"ann@example.com", "bob@example.org"}
        r = c.post(
            f"{base}/snapshots", headers=h, json={**body, "rules": "not = [toml"}
        )
        assert r.status_code in (400, 422) and "error" in r.json()
        assert c.delete(f"{base}/snapshots/seed@9", headers=h).status_code == 404
        r = c.delete(f"{base}/snapshots/seed@1", headers=h)
        assert r.status_code == 200 and [x["ref"] for x in r.json()] == ["seed@1"]
        assert not snap.exists()
        spec = c.get(f"{s.base}/openapi.json").json()
    paths = spec["paths"]
    assert {"get", "post"} <= set(paths["/v1/projects/{project}/snapshots"])
    assert "delete" in paths["/v1/projects/{project}/snapshots/{ref}"]
    put = paths["/v1/projects/{project}/branches/{branch}"]["put"]
    assert (
        "413" in put["responses"]
        and "application/gzip" in put["requestBody"]["content"]
    )
    status = paths["/v1/projects/{project}/branches/{branch}/status"]["post"]
    assert status["responses"]["404"]["content"]["application/json"]
