"""Webhook test helpers: GitHub and GitLab payloads in their documented shapes, signed
and sent to a real daemon (uvicorn on 127.0.0.1) serving a real git repository."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from apisupport import auth, make_tokens, serve_in_thread, wait_job
from support import git

from branchdb.daemon.api import settings as daemon_config
from branchdb.daemon.api.app import create_app

SECRET = "It's a Secret to Everybody"
GITLAB_TOKEN = "gitlab-hook-token"


def sign(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def gh_repo(full_name: str = "acme/shop", repo_id: int = 1) -> dict[str, Any]:
    owner, name = full_name.split("/")
    return {
        "id": repo_id,
        "node_id": f"R_{repo_id}",
        "name": name,
        "full_name": full_name,
        "private": False,
        "owner": {"login": owner, "id": 10 + repo_id, "type": "Organization"},
        "html_url": f"https://github.com/{full_name}",
        "url": f"https://api.github.com/repos/{full_name}",
        "clone_url": f"https://github.com/{full_name}.git",
        "default_branch": "main",
    }


def pull_request_event(
    action: str,
    ref: str,
    sha: str,
    *,
    number: int = 7,
    merged: bool = False,
    head_repo: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """GitHub's documented ``pull_request`` webhook payload (the fields that matter,
    and the usual others), for *ref* at *sha*."""
    base_repo = gh_repo()
    head_repo = head_repo or base_repo
    api = "https://api.github.com/repos/acme/shop"
    user = {"login": "dev", "id": 42, "type": "User"}
    pr = {
        "url": f"{api}/pulls/{number}",
        "id": 1000 + number,
        "node_id": f"PR_{number}",
        "html_url": f"https://github.com/acme/shop/pull/{number}",
        "issue_url": f"{api}/issues/{number}",
        "number": number,
        "state": "closed" if action == "closed" else "open",
        "locked": False,
        "title": "Add payments",
        "user": user,
        "body": "Adds the payments table.",
        "created_at": "2026-11-29T05:00:00Z",
        "updated_at": "2026-11-29T05:00:00Z",
        "closed_at": "2026-11-29T06:00:00Z" if action == "closed" else None,
        "merged_at": "2026-11-29T06:00:00Z" if merged else None,
        "merge_commit_sha": None,
        "draft": False,
        "statuses_url": f"{api}/statuses/{sha}",
        "head": {
            "label": f"{head_repo['owner']['login']}:{ref}",
            "ref": ref,
            "sha": sha,
            "user": head_repo["owner"],
            "repo": head_repo,
        },
        "base": {
            "label": "acme:main",
            "ref": "main",
            "sha": "0" * 40,
            "user": base_repo["owner"],
            "repo": base_repo,
        },
        "author_association": "MEMBER",
        "merged": merged,
        "mergeable": None,
        "comments": 0,
        "commits": 1,
        "additions": 1,
        "deletions": 0,
        "changed_files": 1,
    }
    return {
        "action": action,
        "number": number,
        "pull_request": pr,
        "repository": base_repo,
        "organization": {"login": "acme", "id": 11},
        "sender": user,
    }


def push_event(branch: str, before: str, after: str, **kw: Any) -> dict[str, Any]:
    """GitHub's documented ``push`` payload."""
    deleted = kw.pop("deleted", False)
    return {
        "ref": branch if branch.startswith("refs/") else f"refs/heads/{branch}",
        "before": before,
        "after": "0" * 40 if deleted else after,
        "created": before == "0" * 40,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": "https://github.com/acme/shop/compare/x...y",
        "commits": [],
        "head_commit": None if deleted else {"id": after, "message": "work"},
        "repository": gh_repo(),
        "pusher": {"name": "dev", "email": "dev@example.com"},
        "sender": {"login": "dev", "id": 42, "type": "User"},
    }


def delete_event(ref: str, ref_type: str = "branch") -> dict[str, Any]:
    """GitHub's documented ``delete`` payload."""
    return {
        "ref": ref,
        "ref_type": ref_type,
        "pusher_type": "user",
        "repository": gh_repo(),
        "sender": {"login": "dev", "id": 42, "type": "User"},
    }


def gl_project(pid: int, path: str) -> dict[str, Any]:
    return {
        "id": pid,
        "name": path.split("/")[-1],
        "web_url": f"https://gitlab.example.com/{path}",
        "git_http_url": f"https://gitlab.example.com/{path}.git",
        "git_ssh_url": f"git@gitlab.example.com:{path}.git",
        "namespace": path.split("/")[0],
        "visibility_level": 0,
        "path_with_namespace": path,
        "default_branch": "main",
    }


def merge_request_event(
    action: str, branch: str, sha: str, *, iid: int = 3, source_id: int = 14
) -> dict[str, Any]:
    """GitLab's documented merge request hook payload."""
    target = gl_project(14, "acme/shop")
    source = target if source_id == 14 else gl_project(source_id, "mallory/shop")
    state = {"close": "closed", "merge": "merged"}.get(action, "opened")
    return {
        "object_kind": "merge_request",
        "event_type": "merge_request",
        "user": {"id": 1, "name": "Dev", "username": "dev"},
        "project": target,
        "repository": {"name": "shop", "url": target["git_ssh_url"]},
        "object_attributes": {
            "id": 990 + iid,
            "iid": iid,
            "target_branch": "main",
            "source_branch": branch,
            "source_project_id": source_id,
            "target_project_id": 14,
            "author_id": 1,
            "title": "Add payments",
            "created_at": "2026-11-29 05:00:00 UTC",
            "updated_at": "2026-11-29 05:00:00 UTC",
            "state": state,
            "merge_status": "unchecked",
            "url": f"https://gitlab.example.com/acme/shop/-/merge_requests/{iid}",
            "source": source,
            "target": target,
            "last_commit": {
                "id": sha,
                "message": "work",
                "title": "work",
                "timestamp": "2026-11-29T05:00:00+00:00",
                "author": {"name": "Dev", "email": "dev@example.com"},
            },
            "draft": False,
            "action": action,
        },
        "labels": [],
        "changes": {},
    }


class Hook:
    """A running daemon for one project, and ways to send it webhooks."""

    def __init__(
        self, upstream: Path, data: Path, client: httpx.Client, toks: dict[str, str]
    ) -> None:
        self.upstream = upstream
        self.data = data
        self.client = client
        self.tokens = toks

    def github(
        self,
        event: str,
        payload: dict[str, Any],
        *,
        delivery: str | None = None,
        signature: str | None = "sign",
    ) -> httpx.Response:
        body = json.dumps(payload).encode()
        headers = {
            "X-GitHub-Event": event,
            "X-GitHub-Delivery": delivery or secrets.token_hex(8),
            "X-GitHub-Hook-ID": "123",
            "Content-Type": "application/json",
            "User-Agent": "GitHub-Hookshot/abc",
        }
        if signature == "sign":
            headers["X-Hub-Signature-256"] = sign(body)
        elif signature is not None:
            headers["X-Hub-Signature-256"] = signature
        return self.client.post(
            "/v1/webhooks/github?project=shop", content=body, headers=headers
        )

    def gitlab(
        self,
        payload: dict[str, Any],
        *,
        event: str = "Merge Request Hook",
        key: str | None = None,
        token: str | None = GITLAB_TOKEN,
    ) -> httpx.Response:
        headers = {
            "X-Gitlab-Event": event,
            "X-Gitlab-Event-UUID": secrets.token_hex(8),
            "X-Gitlab-Instance": "https://gitlab.example.com",
            "Content-Type": "application/json",
            "User-Agent": "GitLab/17.5.0",
        }
        if key is not None:
            headers["Idempotency-Key"] = key
        if token is not None:
            headers["X-Gitlab-Token"] = token
        return self.client.post(
            "/v1/webhooks/gitlab?project=shop",
            content=json.dumps(payload).encode(),
            headers=headers,
        )

    def done(self, r: httpx.Response) -> dict[str, Any]:
        assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
        return self.wait(r.json()["job"])

    def wait(self, job: dict[str, Any] | str) -> dict[str, Any]:
        if isinstance(job, str):
            job = {"id": job}
        return wait_job(self.client, job, self.tokens["read"])

    def branches(self) -> dict[str, Any]:
        r = self.client.get(
            "/v1/projects/shop/branches", headers=auth(self.tokens["read"])
        )
        assert r.status_code == 200, r.text
        return {b["branch"]: b for b in r.json()}


@contextmanager
def running_daemon(
    upstream: Path,
    tmp_path: Path,
    extra: str = "",
    *,
    project: Path | None = None,
    server: str = "",
) -> Iterator[Hook]:
    """A daemon fetching *upstream* (the repository URL); its project folder is
    *project* (default: *upstream* itself). *server*: more ``[server]`` lines."""
    cfg = tmp_path / "daemon.toml"
    cfg.write_text(
        f'[server]\ndata_dir = "{tmp_path / "daemon"}"\n{server}\n'
        f'[[projects]]\nname = "shop"\npath = "{project or upstream}"\n'
        f'repository = "{upstream}"\n'
        f"webhook_secret = {json.dumps(SECRET)}\n"
        f"gitlab_secret = {json.dumps(GITLAB_TOKEN)}\n{extra}"
    )
    settings = daemon_config.load(cfg)
    toks = make_tokens(settings)
    with (
        serve_in_thread(create_app(settings)) as base,
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        yield Hook(upstream, tmp_path / "daemon", client, toks)


def commit_on_branch(
    repo: Path, branch: str, files: dict[str, str], *, new: bool
) -> str:
    """Commit *files* on *branch* and go back to main: the working tree never has them."""
    git(repo, "checkout", "-q", *(["-b"] if new else []), branch)
    for name, text in files.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"work on {branch}")
    sha = git(repo, "rev-parse", "HEAD")
    git(repo, "checkout", "-q", "main")
    return sha
