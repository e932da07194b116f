"""A small local stand-in for the Hugging Face Hub, for testing uploads and downloads over HTTP.

It speaks the subset of the Hub's HTTP API that ``huggingface_hub`` (2.x) uses to

- create a repository: ``POST /api/repos/create`` (409 when it exists, as the Hub answers);
- upload files: ``POST /api/{type}s/{repo}/preupload/{revision}`` (every file is declared
  "regular", i.e. sent inline in the commit) and ``POST /api/{type}s/{repo}/commit/{revision}``
  (an NDJSON body of a header, base64 ``file`` entries and ``deletedFile`` / ``deletedFolder``);
- describe a repository: ``GET /api/{type}s/{repo}[/revision/{revision}]`` (sha and siblings) and
  ``GET /api/{type}s/{repo}/tree/{revision}[/{path}]`` (one page, no pagination);
- check a README's metadata before it is uploaded: ``POST /api/validate-yaml`` (YAML syntax and the
  shape of ``model-index`` only; the real Hub checks much more);
- download files: ``HEAD`` / ``GET /{repo}/resolve/{revision}/{path}`` (and ``/{type}s/{repo}/...``)
  with the ``X-Repo-Commit``, ``ETag`` and ``Content-Length`` headers the client caches by, and
  the ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``, ``EntryNotFound``) it maps
  to its exceptions.

What it does **not** cover, so that a passing test is not read as more than it is:

- LFS and Xet storage: no ``lfsFile`` commit entries, no LFS batch API, no Xet CAS endpoints or
  tokens; every file travels base64-encoded inside the commit, so keep test files small.
- History: a repository holds only its latest state. Old commit hashes, branches other than
  ``main``, tags, ``list_repo_commits``/``refs`` and ``parentCommit`` checks are not supported
  (a download pinned to an older commit gets ``RevisionNotFound``).
- Pull requests and discussions (``create_pr`` is refused), repo settings, deletion, moving,
  private/gated access (every token is accepted, any repo is readable), ``paths-info``, Range
  requests, rate limits, and the Hub's full metadata validation (licenses, tags, dataset ids).

Run it on its own with ``python tests/hub_server.py [port]``; tests start it in a thread with
:class:`LocalHub` and point ``HF_ENDPOINT`` at :attr:`LocalHub.url` (set it, and a dummy ``HF_TOKEN``,
before ``huggingface_hub`` is imported: the endpoint is read at import time).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import re
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

REPO_TYPES = ("model", "dataset", "space")
_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_ROUTES = {
    "create": re.compile(r"^/api/repos/create$"),
    "validate": re.compile(r"^/api/validate-yaml$"),
    "preupload": re.compile(rf"^/api/(?P<type>models|datasets|spaces)/{_REPO}/preupload/(?P<rev>[^/]+)$"),
    "commit": re.compile(rf"^/api/(?P<type>models|datasets|spaces)/{_REPO}/commit/(?P<rev>[^/]+)$"),
    "tree": re.compile(rf"^/api/(?P<type>models|datasets|spaces)/{_REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.*))?$"),
    "info": re.compile(rf"^/api/(?P<type>models|datasets|spaces)/{_REPO}(?:/revision/(?P<rev>[^/]+))?$"),
    "resolve": re.compile(rf"^/(?:(?P<type>datasets|spaces)/)?{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$"),
}


def git_blob_oid(content: bytes) -> str:
    """The git object id of a file's content, which the Hub uses as a regular file's ETag."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class Repo:
    repo_type: str
    files: dict[str, bytes] = field(default_factory=dict)
    sha: str = "0" * 40
    commits: int = 0
    created: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"))


class HubError(Exception):
    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


class LocalHub:
    """The server: repositories in memory, one ``ThreadingHTTPServer`` on 127.0.0.1.

    ``requests`` records ``(method, path)`` of every request, so a test can show what travelled.
    """

    def __init__(self, port: int = 0) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        hub = self

        class Handler(_Handler):
            pass

        Handler.hub = hub
        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "LocalHub":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> "LocalHub":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ repository state
    def repo(self, repo_type: str, repo_id: str) -> Repo:
        repo = self.repos.get((repo_type, repo_id))
        if repo is None:
            raise HubError(404, f"Repository Not Found for url: {repo_type}s/{repo_id}", "RepoNotFound")
        return repo

    def check_revision(self, repo: Repo, revision: str) -> None:
        if revision not in ("main", repo.sha):
            raise HubError(
                404, f"Invalid rev id: {revision} (this test hub keeps only 'main' and its latest commit)", "RevisionNotFound"
            )


class _Handler(BaseHTTPRequestHandler):
    hub: LocalHub
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    # ------------------------------------------------------------------ dispatch
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        self.hub.requests.append((method, path))
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
        try:
            with self.hub.lock:
                self._route(method, path, query, body)
        except HubError as error:
            self._send_json({"error": error.message}, status=error.status, code=error.code, head=method == "HEAD")

    def _route(self, method: str, path: str, query: dict, body: bytes) -> None:
        for name in ("create", "validate", "preupload", "commit", "tree", "resolve", "info"):
            match = _ROUTES[name].match(path)
            if match is None:
                continue
            allowed = "POST" if name in ("create", "validate", "preupload", "commit") else ("GET", "HEAD")
            if method not in allowed:
                raise HubError(405, f"{method} not allowed on {path}")
            return getattr(self, f"_{name}")(match.groupdict(), query, body, method)
        raise HubError(404, f"this test hub does not serve {method} {path} (see tests/hub_server.py)")

    # ------------------------------------------------------------------ endpoints
    def _create(self, groups: dict, query: dict, body: bytes, method: str) -> None:
        self._require_token()
        payload = json.loads(body or b"{}")
        name, organization = payload.get("name"), payload.get("organization")
        repo_type = payload.get("type") or "model"
        if not name or repo_type not in REPO_TYPES:
            raise HubError(400, f"invalid create request {payload}")
        repo_id = f"{organization}/{name}" if organization else name
        url = f"{self.hub.url}/{'' if repo_type == 'model' else repo_type + 's/'}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            raise HubError(409, "You already created this model repo", None)
        self.hub.repos[(repo_type, repo_id)] = Repo(repo_type)
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _validate(self, groups: dict, query: dict, body: bytes, method: str) -> None:
        content = json.loads(body or b"{}").get("content", "")
        problems = _metadata_problems(content)
        if problems:
            self._send_json({"errors": [{"message": p} for p in problems], "warnings": []}, status=400)
        else:
            self._send_json({"errors": [], "warnings": []})

    def _preupload(self, groups: dict, query: dict, body: bytes, method: str) -> None:
        self._require_token()
        repo = self.hub.repo(groups["type"][:-1], groups["repo"])
        self._refuse_pr(query)
        self.hub.check_revision(repo, groups["rev"])
        files = json.loads(body)["files"]
        answer = []
        for entry in files:
            existing = repo.files.get(entry["path"])
            answer.append(
                {
                    "path": entry["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_oid(existing) if existing is not None else None,
                }
            )
        self._send_json({"files": answer, "commitOid": repo.sha})

    def _commit(self, groups: dict, query: dict, body: bytes, method: str) -> None:
        self._require_token()
        repo_type, repo_id = groups["type"][:-1], groups["repo"]
        repo = self.hub.repo(repo_type, repo_id)
        self._refuse_pr(query)
        self.hub.check_revision(repo, groups["rev"])
        files = dict(repo.files)
        summary = ""
        for line in body.splitlines():
            if not line.strip():
                continue
            entry = json.loads(line)
            key, value = entry["key"], entry["value"]
            if key == "header":
                summary = value.get("summary", "")
            elif key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise HubError(400, f"unsupported encoding {value.get('encoding')!r}")
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {p: c for p, c in files.items() if not p.startswith(prefix)}
            elif key == "lfsFile":
                raise HubError(400, "this test hub does not support LFS/Xet files; upload them as regular files")
            else:
                raise HubError(400, f"this test hub does not support commit entries of kind {key!r}")
        repo.files = files
        repo.commits += 1
        digest = hashlib.sha1(f"{repo_id}\0{repo.commits}\0{summary}".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_oid(files[path]).encode())
        repo.sha = digest.hexdigest()
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        self._send_json(
            {"commitUrl": f"{self.hub.url}/{prefix}{repo_id}/commit/{repo.sha}", "commitOid": repo.sha, "pullRequestUrl": None}
        )

    def _info(self, groups: dict, query: dict, body: bytes, method: str) -> None:
        repo_type, repo_id = groups["type"][:-1], groups["repo"]
        repo = self.hub.repo(repo_type, repo_id)
        self.hub.check_revision(repo, groups.get("rev") or "main")
        info = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "author": repo_id.split("/")[0] if "/" in repo_id else None,
            "sha": repo.sha,
            "private": False,
            "disabled": False,
            "gated": False,
            "createdAt": repo.created,
            "lastModified": repo.created,
            "tags": [],
            "downloads": 0,
            "likes": 0,
            "siblings": [{"rfilename": path, "size": len(content)} for path, content in sorted(repo.files.items())],
        }
        if repo_type == "model":
            info["modelId"] = repo_id
        self._send_json(info, head=method == "HEAD")

    def _tree(self, groups: dict, query: dict, body: bytes, method: str) -> None:
        repo = self.hub.repo(groups["type"][:-1], groups["repo"])
        self.hub.check_revision(repo, groups["rev"])
        base = (groups.get("path") or "").strip("/")
        prefix = f"{base}/" if base else ""
        recursive = query.get("recursive", ["false"])[0].lower() in ("1", "true")
        entries, folders = [], set()
        for path, content in sorted(repo.files.items()):
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if "/" in rest:
                folder = prefix + rest.split("/", 1)[0]
                if recursive:
                    parts = rest.split("/")[:-1]
                    folders.update(prefix + "/".join(parts[: i + 1]) for i in range(len(parts)))
                else:
                    folders.add(folder)
                    continue
            entries.append({"type": "file", "oid": git_blob_oid(content), "size": len(content), "path": path})
        if base and not entries and not folders:
            raise HubError(404, f"{base} does not exist at {groups['rev']}", "EntryNotFound")
        entries += [{"type": "directory", "oid": hashlib.sha1(f.encode()).hexdigest(), "size": 0, "path": f} for f in sorted(folders)]
        self._send_json(entries, head=method == "HEAD")

    def _resolve(self, groups: dict, query: dict, body: bytes, method: str) -> None:
        repo_type = (groups.get("type") or "models")[:-1]
        repo = self.hub.repo(repo_type, groups["repo"])
        self.hub.check_revision(repo, groups["rev"])
        content = repo.files.get(groups["path"])
        if content is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("X-Error-Message", "Entry not found")
            self.send_header("X-Repo-Commit", repo.sha)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("ETag", f'"{git_blob_oid(content)}"')
        self.send_header("X-Repo-Commit", repo.sha)
        self.end_headers()
        if method == "GET":
            self.wfile.write(content)

    # ------------------------------------------------------------------ helpers
    def _require_token(self) -> None:
        if not self.headers.get("Authorization", "").startswith("Bearer "):
            raise HubError(401, "Invalid credentials in Authorization header (the test hub accepts any token)", None)

    def _refuse_pr(self, query: dict) -> None:
        if query.get("create_pr", ["0"])[0] in ("1", "true"):
            raise HubError(400, "this test hub does not support pull requests")

    def _send_json(self, payload: object, status: int = 200, code: str | None = None, head: bool = False) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code:
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", str(payload.get("error", "")) if isinstance(payload, dict) else "")
        self.end_headers()
        if not head:
            self.wfile.write(data)


def _metadata_problems(readme: str) -> list[str]:
    """What is wrong with a README's YAML front matter (syntax, model-index shape); empty if nothing."""
    import yaml

    if not readme.startswith("---"):
        return []
    parts = readme.split("\n---", 1)
    if len(parts) < 2:
        return ["the metadata block opened by '---' is never closed"]
    try:
        metadata = yaml.safe_load(parts[0][3:]) or {}
    except yaml.YAMLError as error:
        return [f"invalid YAML: {error}"]
    if not isinstance(metadata, dict):
        return ["the metadata must be a YAML mapping"]
    problems = []
    for index, entry in enumerate(metadata.get("model-index") or []):
        if not isinstance(entry, dict) or "name" not in entry:
            problems.append(f"model-index[{index}] needs a name")
            continue
        for result in entry.get("results") or []:
            if not isinstance((result.get("task") or {}).get("type"), str):
                problems.append(f"model-index[{index}]: every result needs task.type")
            dataset = result.get("dataset") or {}
            if not (isinstance(dataset.get("type"), str) and isinstance(dataset.get("name"), str)):
                problems.append(f"model-index[{index}]: every result needs dataset.type and dataset.name")
            for metric in result.get("metrics") or []:
                if not isinstance(metric.get("type"), str) or "value" not in metric:
                    problems.append(f"model-index[{index}]: every metric needs type and value")
    return problems


if __name__ == "__main__":
    hub = LocalHub(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"local test hub on {hub.url} (HF_ENDPOINT={hub.url} HF_TOKEN=hf_dummy)", flush=True)
    try:
        hub.server.serve_forever()
    except KeyboardInterrupt:
        hub.stop()
