"""Telling the outside world a branch database's URL after a webhook provisioned it.

Two independent targets, both optional, configured per project (``[projects.publish]``
in the daemon config, read by :func:`parse`):

- **GitHub** (``github = ["deployment", "status", "comment"]``, any subset): a
  deployment of the head sha to environment ``branchdb/<branch>`` with a deployment
  status (``success``/``failure``, ``environment_url``); a commit status on the sha
  (context ``branchdb/<branch>``); a pull request comment, found again by a hidden
  marker and edited in place on later events, never duplicated. When the branch is
  closed, the environment's newest deployment gets an ``inactive`` status. GitHub
  never sees a password: it gets the connection URL with the password replaced by
  ``***`` (:func:`~branchdb.daemon.core.errors.redact`), or with ``link = "api"`` a
  link to the daemon's branch route (``daemon_url``), which hands the real URL to a
  read token.
- **Callback** (``callback_url``): a POST of ``{project, branch, sha, url, status,
  timestamp}`` with the *full* URL, signed like GitHub signs webhooks:
  ``X-Branchdb-Signature-256: sha256=HMAC-SHA256(callback_secret, body)``, plus
  ``X-Branchdb-Timestamp`` (also inside the signed body, so a receiver can refuse
  replays). Transport errors, 429 and 5xx are retried with exponential backoff, at most
  ``callback_attempts`` times.
- **Schema review** (``review = "comment"`` or ``"check"``): the pull request's schema
  diff and migration lint, as one comment edited in place or a check run with
  annotations (:mod:`.publish_review`).

:func:`publish` never raises: each target's outcome is returned and failures are
logged with secrets redacted. It blocks (HTTP with timeouts); callers run it in the
background, after the provisioning it reports on has finished.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote

from branchdb.daemon.api import publish_review
from branchdb.daemon.config import env
from branchdb.daemon.core.errors import ConfigError, redact

if TYPE_CHECKING:
    import httpx

    from branchdb.daemon import wire

log = logging.getLogger("branchdb.publish")

GITHUB_MODES = ("deployment", "status", "comment")
DEFAULT_API_URL = "https://api.github.com"
API_VERSION = "2022-11-28"
_KEYS: dict[str, type | tuple[type, ...]] = {
    "github": list,
    "api_url": str,
    "github_token_env": str,
    "environment": str,
    "link": str,
    "daemon_url": str,
    "callback_url": str,
    "callback_secret": str,
    "callback_attempts": int,
    "callback_backoff": (int, float),
    "timeout": (int, float),
    "review": str,
    "gitlab_api_url": str,
    "gitlab_token_env": str,
}


@dataclass(frozen=True)
class PublishSettings:
    """A project's ``[projects.publish]``; secrets are kept out of ``repr``."""

    github: tuple[str, ...] = ()
    api_url: str = DEFAULT_API_URL
    github_token: str | None = field(default=None, repr=False)
    environment: str = "branchdb/{branch}"
    link: str = "redacted"  # "redacted" | "api"
    daemon_url: str | None = None
    callback_url: str | None = None
    callback_secret: str | None = field(default=None, repr=False)
    callback_attempts: int = 5
    callback_backoff: float = 0.5  # seconds before the 2nd attempt; doubles after
    timeout: float = 10.0
    review: str | None = None  # "comment" | "check": publish the schema review
    gitlab_api_url: str | None = None  # e.g. https://gitlab.example.com/api/v4
    gitlab_token: str | None = field(default=None, repr=False)


class Publication(NamedTuple):
    """What happened to one branch, and where it came from."""

    project: str
    branch: str
    sha: str
    status: str  # "ready" | "failed" | "closed"
    url: str | None  # the full connection URL (with password), if any
    repo: str | None = None  # GitHub "owner/name" of the base repository
    number: int | None = None  # the pull request number, if any
    detail: str = ""  # why it failed (already redacted)
    #: a libsql server branch's token: only in the signed callback, never on GitHub
    auth_token: str | None = None
    #: the schema review of a pull request (schema and lint only, never data)
    review: wire.SchemaReview | None = None
    gitlab_project: int | None = None  # GitLab: the merge request's target project


_env_name = publish_review.env_name


def parse(raw: dict[str, Any], project: str, where: str) -> PublishSettings:
    """``[projects.publish]`` of *project* → settings. Raises ConfigError.

    Secrets come from the environment: the GitHub token from ``github_token_env``
    (default ``BRANCHDB_GITHUB_TOKEN_<PROJECT>``, then ``BRANCHDB_GITHUB_TOKEN``), the
    callback secret from ``callback_secret`` or ``BRANCHDB_CALLBACK_SECRET_<PROJECT>``.
    """
    for key, value in raw.items():
        want = _KEYS.get(key)
        if want is None:
            raise ConfigError(f"{where}: unknown key 'projects.publish.{key}'")
        if not isinstance(value, want) or isinstance(value, bool):
            raise ConfigError(f"{where}: projects.publish.{key} has the wrong type")
    modes = tuple(raw.get("github", ()))
    for mode in modes:
        if mode not in GITHUB_MODES:
            raise ConfigError(
                f"{where}: projects.publish.github: unknown mode {mode!r} "
                f"(use {', '.join(GITHUB_MODES)})"
            )
    link = raw.get("link", "redacted")
    if link not in ("redacted", "api"):
        raise ConfigError(f"{where}: projects.publish.link must be redacted or api")
    if link == "api" and not raw.get("daemon_url"):
        raise ConfigError(f'{where}: projects.publish.link = "api" needs daemon_url')
    for key in ("api_url", "daemon_url", "callback_url", "gitlab_api_url"):
        if key in raw and not re.match(r"https?://", raw[key]):
            raise ConfigError(f"{where}: projects.publish.{key} must be an http(s) URL")
    try:
        raw.get("environment", "{branch}").format(branch="b", project="p")
    except (KeyError, IndexError, ValueError):
        raise ConfigError(
            f"{where}: projects.publish.environment may only use {{branch}} and "
            "{project}"
        ) from None
    token_env = raw.get("github_token_env") or _env_name(project, "GITHUB_TOKEN")
    token = env.get(token_env)
    if token is None and "github_token_env" not in raw:
        token = env.get("BRANCHDB_GITHUB_TOKEN")
    if modes and not token:
        raise ConfigError(
            f"{where}: projects.publish.github needs a token in ${token_env}"
        )
    review, gl_token = publish_review.parse(raw, where, token_env, token, project)
    secret = raw.get("callback_secret") or env.get(
        _env_name(project, "CALLBACK_SECRET")
    )
    if raw.get("callback_url") and not secret:
        raise ConfigError(
            f"{where}: projects.publish.callback_url needs callback_secret "
            f"(or ${_env_name(project, 'CALLBACK_SECRET')})"
        )
    attempts = raw.get("callback_attempts", 5)
    if not 1 <= attempts <= 20:
        raise ConfigError(f"{where}: projects.publish.callback_attempts: 1 to 20")
    return PublishSettings(
        github=modes,
        api_url=raw.get("api_url", DEFAULT_API_URL).rstrip("/"),
        github_token=token,
        environment=raw.get("environment", "branchdb/{branch}"),
        link=link,
        daemon_url=(raw.get("daemon_url") or "").rstrip("/") or None,
        callback_url=raw.get("callback_url"),
        callback_secret=secret,
        callback_attempts=attempts,
        callback_backoff=float(raw.get("callback_backoff", 0.5)),
        timeout=float(raw.get("timeout", 10.0)),
        review=review,
        gitlab_api_url=(raw.get("gitlab_api_url") or "").rstrip("/") or None,
        gitlab_token=gl_token,
    )


def public_url(settings: PublishSettings, pub: Publication) -> str | None:
    """The URL GitHub may show: password redacted, or the daemon's branch route."""
    if settings.link == "api":
        branch = quote(pub.branch, safe="/")
        return f"{settings.daemon_url}/v1/projects/{pub.project}/branches/{branch}"
    return redact(pub.url) if pub.url else None


def sign(secret: str, body: bytes) -> str:
    """``sha256=`` + HMAC-SHA256(secret, body), as in ``X-Branchdb-Signature-256``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def publish(settings: PublishSettings, pub: Publication) -> dict[str, Any]:
    """Publish *pub* to every configured target; never raises (see module doc).

    Returns ``{target: {"ok": bool, ...}}`` for the targets that applied.
    """
    import httpx

    out: dict[str, Any] = {}
    with httpx.Client(timeout=settings.timeout) as client:
        if settings.github and pub.repo:
            gh = _GitHub(client, settings)
            for mode in settings.github:
                if pub.status == "closed":
                    if mode != "deployment":
                        continue
                    mode = "inactive"  # the environment is going away
                elif mode == "comment" and pub.number is None:
                    continue
                try:
                    out[mode] = {"ok": True, **getattr(gh, mode)(pub)}
                except Exception as e:
                    msg = redact(str(e))
                    log.warning(
                        "publishing %s of %s/%s to GitHub failed: %s",
                        mode,
                        pub.project,
                        pub.branch,
                        msg,
                    )
                    out[mode] = {"ok": False, "error": msg}
        if settings.review and pub.review is not None:
            if pub.repo:
                gh = _GitHub(client, settings)
                out["review"] = publish_review.publish(gh, settings.review, pub)
            elif pub.gitlab_project is not None and settings.gitlab_api_url:
                out["review"] = publish_review.gitlab_note(client, settings, pub)
        if settings.callback_url:
            out["callback"] = _callback(client, settings, pub)
    return out


class _GitHub:
    """The three GitHub REST calls, per GitHub's documented request shapes."""

    def __init__(self, client: httpx.Client, settings: PublishSettings) -> None:
        self.client = client
        self.s = settings
        self.headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {settings.github_token}",
            "X-GitHub-Api-Version": API_VERSION,
            "User-Agent": "branchdb",
        }

    def _call(self, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        r = self.client.request(
            method, self.s.api_url + path, json=body, headers=self.headers, **kw
        )
        if r.status_code >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {r.status_code}: {r.text[:200]}")
        return r.json()

    def _describe(self, pub: Publication) -> str:
        if pub.status == "ready":
            text = f"database ready: {public_url(self.s, pub)}"
        else:
            text = f"database failed: {pub.detail}"
        return text[:140]  # GitHub's limit for descriptions

    def deployment(self, pub: Publication) -> dict[str, Any]:
        env = self.s.environment.format(branch=pub.branch, project=pub.project)
        dep = self._call(
            "POST",
            f"/repos/{pub.repo}/deployments",
            {
                "ref": pub.sha,
                "task": "deploy",
                "environment": env,
                "description": f"branchdb database of {pub.branch}",
                "auto_merge": False,
                "required_contexts": [],
                "transient_environment": True,
                "production_environment": False,
                "payload": {"project": pub.project, "branch": pub.branch},
            },
        )
        status: dict[str, Any] = {
            "state": "success" if pub.status == "ready" else "failure",
            "description": self._describe(pub),
            "environment": env,
            "auto_inactive": True,
        }
        url = public_url(self.s, pub)
        if pub.status == "ready" and url:
            status["environment_url"] = url
        st = self._call(
            "POST", f"/repos/{pub.repo}/deployments/{dep['id']}/statuses", status
        )
        return {"deployment": dep["id"], "status": st.get("id")}

    def inactive(self, pub: Publication) -> dict[str, Any]:
        """Mark the environment's newest deployment inactive (its PR was closed)."""
        env = self.s.environment.format(branch=pub.branch, project=pub.project)
        found = self._call(
            "GET",
            f"/repos/{pub.repo}/deployments",
            params={"environment": env, "per_page": 1},
        )
        if not found:
            return {"deployment": None}
        dep_id = found[0]["id"]  # GitHub lists the newest first
        self._call(
            "POST",
            f"/repos/{pub.repo}/deployments/{dep_id}/statuses",
            {"state": "inactive", "description": "branch closed", "environment": env},
        )
        return {"deployment": dep_id}

    def status(self, pub: Publication) -> dict[str, Any]:
        body: dict[str, Any] = {
            "state": "success" if pub.status == "ready" else "failure",
            "description": self._describe(pub),
            "context": f"branchdb/{pub.branch}",
        }
        url = public_url(self.s, pub)
        if url and url.startswith(("http://", "https://")):
            body["target_url"] = url  # GitHub links it; other schemes are not links
        st = self._call("POST", f"/repos/{pub.repo}/statuses/{pub.sha}", body)
        return {"status": st.get("id")}

    def comment(self, pub: Publication) -> dict[str, Any]:
        marker = f"<!-- branchdb:{pub.project}/{pub.branch} -->"
        if pub.status == "ready":
            line = f"**branchdb**: the database of `{pub.branch}` is ready at `{pub.sha[:12]}`: `{public_url(self.s, pub)}`"  # noqa: E501
        else:
            line = f"**branchdb**: the database of `{pub.branch}` failed at `{pub.sha[:12]}`: {pub.detail}"  # noqa: E501
        body = {"body": f"{marker}\n{line}"}
        found = self._find_comment(pub, marker)
        if found is not None:
            c = self._call("PATCH", f"/repos/{pub.repo}/issues/comments/{found}", body)
            return {"comment": c["id"], "updated": True}
        c = self._call("POST", f"/repos/{pub.repo}/issues/{pub.number}/comments", body)
        return {"comment": c["id"], "updated": False}

    def _find_comment(self, pub: Publication, marker: str) -> int | None:
        page = 1
        while page <= 50:  # 5,000 comments: enough for any pull request
            got = self._call(
                "GET",
                f"/repos/{pub.repo}/issues/{pub.number}/comments",
                params={"per_page": 100, "page": page},
            )
            for c in got:
                if str(c.get("body", "")).startswith(marker):
                    return int(c["id"])
            if len(got) < 100:
                return None
            page += 1
        return None


def _callback(
    client: httpx.Client, settings: PublishSettings, pub: Publication
) -> dict[str, Any]:
    import httpx

    assert settings.callback_url and settings.callback_secret
    stamp = str(int(time.time()))
    body = json.dumps(
        {
            "project": pub.project,
            "branch": pub.branch,
            "sha": pub.sha,
            "url": pub.url,
            **({"auth_token": pub.auth_token} if pub.auth_token else {}),
            "status": pub.status,
            "timestamp": int(stamp),
        }
    ).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "branchdb",
        "X-Branchdb-Signature-256": sign(settings.callback_secret, body),
        "X-Branchdb-Timestamp": stamp,
    }
    error = ""
    for attempt in range(1, settings.callback_attempts + 1):
        try:
            r = client.post(settings.callback_url, content=body, headers=headers)
            if r.status_code < 300:
                return {"ok": True, "attempts": attempt, "http_status": r.status_code}
            error = f"HTTP {r.status_code}"
            if r.status_code != 429 and r.status_code < 500:
                break  # the receiver refused it: retrying would not help
        except httpx.HTTPError as e:
            error = redact(f"{type(e).__name__}: {e}")
        if attempt < settings.callback_attempts:
            time.sleep(settings.callback_backoff * 2 ** (attempt - 1))
    log.warning(
        "callback for %s/%s to %s failed after %d attempt(s): %s",
        pub.project,
        pub.branch,
        redact(settings.callback_url),
        attempt,
        error,
    )
    return {"ok": False, "attempts": attempt, "error": error}
