"""Webhook bodies from the providers' published examples (tests/fixtures/webhooks), pointed
at a local repository: its repository URLs, ref or branch and commit SHA replaced, every other
field as published; and the signatures each provider sends.

    body = github_push("http://127.0.0.1:PORT/app.git", sha)
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": hub_signature(secret, body)}
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from pathlib import Path

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
ZERO = "0" * 40


def published(name: str) -> dict:
    return json.loads((FIXTURES / name).read_bytes())


def put(payload: dict, path: str, value) -> None:
    *parents, last = path.split(".")
    for key in parents:
        payload = payload[key]
    payload[last] = value


def web_url(url: str) -> str:
    return url.removesuffix(".git")


def ssh_url(url: str) -> str:
    host_path = url.split("://", 1)[1]
    host, _, path = host_path.partition("/")
    return f"git@{host.split(':')[0]}:{path}"


def github_repository(payload: dict, path: str, url: str) -> None:
    for key, value in (("clone_url", url), ("html_url", web_url(url)), ("url", web_url(url)),
                       ("svn_url", web_url(url)), ("ssh_url", ssh_url(url)),
                       ("git_url", "git://" + url.split("://", 1)[1])):
        if key in payload_at(payload, path):
            put(payload, f"{path}.{key}", value)
    put(payload, f"{path}.default_branch", "main")


def payload_at(payload: dict, path: str) -> dict:
    for key in path.split("."):
        payload = payload[key]
    return payload


def github_push(url: str, sha: str, ref: str = "refs/heads/main",
                fixture: str = "github-push.json") -> bytes:
    payload = published(fixture)
    github_repository(payload, "repository", url)
    payload.update(ref=ref, after=sha)
    for commit in payload.get("commits", []) + [payload.get("head_commit") or {}]:
        if commit:
            commit["id"] = sha
    return json.dumps(payload).encode()


def github_ping(url: str) -> bytes:
    payload = published("github-ping.json")
    github_repository(payload, "repository", url)
    return json.dumps(payload).encode()


def github_pull_request(url: str, number: int, head: str) -> bytes:
    payload = published("github-pull_request-opened.json")
    github_repository(payload, "repository", url)
    for side in ("head", "base"):
        github_repository(payload, f"pull_request.{side}.repo", url)
    put(payload, "number", number)
    put(payload, "pull_request.number", number)
    put(payload, "pull_request.head.sha", head)
    put(payload, "pull_request.base.ref", "main")
    return json.dumps(payload).encode()


def gitlab_push(url: str, sha: str) -> bytes:
    payload = published("gitlab-push-hook.json")
    for part in ("project", "repository"):
        for key, value in (("git_http_url", url), ("http_url", url), ("web_url", web_url(url)),
                           ("homepage", web_url(url)), ("git_ssh_url", ssh_url(url)),
                           ("ssh_url", ssh_url(url)), ("url", ssh_url(url))):
            if key in payload[part]:
                payload[part][key] = value
    payload["project"]["default_branch"] = "main"
    payload.update(ref="refs/heads/main", after=sha, checkout_sha=sha)
    payload["commits"][-1]["id"] = sha
    return json.dumps(payload).encode()


def azure_push(url: str, sha: str) -> bytes:
    payload = published("azure-devops-git.push.json")
    resource = payload["resource"]
    resource["repository"]["remoteUrl"] = url
    resource["repository"]["defaultBranch"] = "refs/heads/main"
    resource["refUpdates"][0].update(name="refs/heads/main", newObjectId=sha)
    resource["commits"][0]["commitId"] = sha
    return json.dumps(payload).encode()


def gitea_push(url: str, sha: str) -> bytes:
    payload = published("gitea-push.json")
    github_repository(payload, "repository", url)
    payload.update(ref="refs/heads/main", after=sha)
    payload["commits"][0]["id"] = sha
    if isinstance(payload.get("head_commit"), dict):
        payload["head_commit"]["id"] = sha
    return json.dumps(payload).encode()


def hmac_hex(secret: str, body: bytes) -> str:
    """Gitea's and Forgejo's signature: the bare hex HMAC-SHA256 of the body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def hub_signature(secret: str, body: bytes) -> str:
    """GitHub's X-Hub-Signature-256."""
    return "sha256=" + hmac_hex(secret, body)


def basic_auth(password: str, user: str = "basewatch") -> str:
    """Azure DevOps' service hook authentication: the secret as the basic-auth password."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
