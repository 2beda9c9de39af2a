"""A local stand-in for the Hugging Face Hub HTTP API, for tests that drive the real `HfApi`.

`StubHub` serves, on 127.0.0.1 and in memory, the part of the Hub API that `huggingface_hub` 2.4.0
uses to publish a dataset repo and to download it again. It was written against the client's
source; the client functions and the endpoints they call are:

- `HfApi.create_repo`: `POST /api/repos/create` (409 when the repo exists: `exist_ok` swallows it).
- `HfApi.create_branch`: `POST /api/datasets/{id}/branch/{branch}` (409 when it exists).
- `HfApi.list_repo_refs`: `GET /api/datasets/{id}/refs`.
- `HfApi.list_repo_tree` (`_iter_repo_tree_pages`, `utils._pagination`):
  `GET /api/datasets/{id}/tree/{rev}[/{path}]?recursive=&expand=`.
- `HfApi.get_paths_info`: `POST /api/datasets/{id}/paths-info/{rev}` (form-encoded `paths`).
- `HfApi.dataset_info` / `repo_info`: `GET /api/datasets/{id}[/revision/{rev}]` (`sha`, `siblings`).
- `HfApi.list_repo_commits`: `GET /api/datasets/{id}/commits/{rev}`.
- `HfApi.whoami`: `GET /api/whoami-v2`.
- `HfApi.create_commit`:
  `HfApi._validate_yaml` (`POST /api/validate-yaml`, only when README.md is added), then
  `HfApi.preupload_lfs_files` -> `_commit_api._fetch_upload_modes`
  (`POST /api/datasets/{id}/preupload/{rev}`: the server picks "lfs" or "regular" per file and
  reports the `oid` of files already at the revision, which the client uses to drop unchanged
  files), `_commit_api._upload_files` -> `lfs.post_lfs_batch_info`
  (`POST /datasets/{id}.git/info/lfs/objects/batch`, basic transfer) -> `lfs.lfs_upload` ->
  `lfs._upload_single_part` (`PUT` to the href this server hands out, no auth header) and the
  verify action (`POST /datasets/{id}.git/info/lfs/objects/verify`), and at last
  `_commit_api._send_commit` (`POST /api/datasets/{id}/commit/{rev}`, NDJSON: `header`, `file`,
  `lfsFile`, `deletedFile`, `deletedFolder`).
- `hf_hub_download` / `snapshot_download` (`file_download.get_hf_file_metadata`, `http_get`,
  `_snapshot_download`): `dataset_info` for the commit sha, the tree at that sha, then
  `HEAD` and `GET /datasets/{id}/resolve/{rev}/{path}` with `ETag`, `X-Repo-Commit`,
  `Content-Length` and, for LFS files, `X-Linked-Etag` / `X-Linked-Size` (served directly with
  200, not redirected to a CDN; `Range` is honoured).

Xet: in 2.4.0 the client alone picks Xet over LFS. `_commit_api._upload_files` takes the Xet path
whenever `utils._runtime.is_xet_available()` holds (hf_xet importable and
`constants.HF_HUB_DISABLE_XET` false), before it calls any endpoint that would let a server steer it
(the batch request only offers `["basic", "multipart"]`), unless one addition is a
`io.BufferedIOBase`. So no server answer avoids Xet: set `HF_HUB_DISABLE_XET=1` before
`huggingface_hub` is imported, or patch `huggingface_hub.constants.HF_HUB_DISABLE_XET` (read at
call time), as `configure_client` does. Downloads never use Xet here: responses carry no
`X-Xet-Hash`.

What is simplified: datasets only; no pagination (one page); no pull requests; no `.gitignore`
(`shouldIgnore` is always false); the LFS store is shared by all repos; tokens are accepted as
given unless `token` is set. As on the Hub, the tree's `oid` of an LFS file is the git sha1 of its
pointer file, and its `lfs.oid` the sha256 of the content. A repo or branch without commits lists
an empty tree (the Hub seeds new repos with `.gitattributes`; pass `seed_gitattributes=True`).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import threading
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

if TYPE_CHECKING:
    import pytest

UploadMode = Literal["lfs", "regular"]

DEFAULT_GITATTRIBUTES = (
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n"
    b"*.png filter=lfs diff=lfs merge=lfs -text\n"
    b"*.arrow filter=lfs diff=lfs merge=lfs -text\n"
)


def git_blob_sha1(data: bytes) -> str:
    """The git object id of a blob holding `data` (what `git hash-object` prints)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    """The git LFS pointer file that git stores in place of an LFS object."""
    return (
        f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\nsize {size}\n".encode()
    )


def _now() -> str:
    """The current time in the Hub's format (parsed by `utils.parse_datetime`)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


@dataclass
class Commit:
    """One commit: its full file tree and what it changed."""

    oid: str
    parent: str | None
    branch: str
    title: str
    message: str
    files: dict[str, bytes]
    lfs: frozenset[str]
    added: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    uploaded: list[str] = field(default_factory=list)
    date: str = field(default_factory=_now)

    def blob_id(self, path: str) -> str:
        """The git oid of `path`: of the content, or of the LFS pointer for LFS files."""
        data = self.files[path]
        if path in self.lfs:
            return git_blob_sha1(lfs_pointer(hashlib.sha256(data).hexdigest(), len(data)))
        return git_blob_sha1(data)

    def upload_oid(self, path: str) -> str:
        """The oid preupload reports: sha256 for LFS files, the git sha1 for regular ones."""
        if path in self.lfs:
            return hashlib.sha256(self.files[path]).hexdigest()
        return git_blob_sha1(self.files[path])


@dataclass
class Repo:
    """A dataset repo: its visibility and its branches, each a list of commits, oldest first."""

    repo_id: str
    private: bool
    branches: dict[str, list[Commit]] = field(default_factory=lambda: {"main": []})
    created_at: str = field(default_factory=_now)

    def head(self, branch: str) -> Commit | None:
        """The last commit of `branch`, or None when it has none."""
        commits = self.branches[branch]
        return commits[-1] if commits else None

    def find_commit(self, oid: str) -> Commit | None:
        """The commit with this full sha, on any branch."""
        for commits in self.branches.values():
            for commit in commits:
                if commit.oid == oid:
                    return commit
        return None


@dataclass(frozen=True)
class RecordedRequest:
    """A request the server received, as tests see it."""

    method: str
    path: str
    query: str
    authorization: str | None
    route: str | None
    status: int

    @property
    def bearer(self) -> bool:
        """Whether the Authorization header carried a bearer token."""
        return self.token is not None

    @property
    def token(self) -> str | None:
        """The bearer token sent, if any."""
        if self.authorization and self.authorization.lower().startswith("bearer "):
            return self.authorization[7:].strip() or None
        return None


@dataclass
class _Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class _HubError(Exception):
    """An error answer: status, message, the Hub's `X-Error-Code` and extra JSON fields."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.headers = headers or {}
        self.extra = extra or {}


def _json(status: int, payload: Any, content_type: str = "application/json") -> _Response:
    return _Response(status, json.dumps(payload).encode(), {"Content-Type": content_type})


_REPO = r"(?P<repo>[^/]+/[^/]+?)"
_REV = r"(?P<rev>[^/]+)"
# (methods, raw-path pattern, handler name); revisions and paths arrive percent-quoted.
_ROUTES: list[tuple[tuple[str, ...], re.Pattern[str], str]] = [
    (("POST",), re.compile(r"/api/repos/create"), "create_repo"),
    (("POST",), re.compile(r"/api/validate-yaml"), "validate_yaml"),
    (("GET",), re.compile(r"/api/whoami-v2"), "whoami"),
    (("POST",), re.compile(rf"/api/datasets/{_REPO}/branch/{_REV}"), "create_branch"),
    (("GET",), re.compile(rf"/api/datasets/{_REPO}/refs"), "refs"),
    (("GET",), re.compile(rf"/api/datasets/{_REPO}/tree/{_REV}(?:/(?P<path>.+))?"), "tree"),
    (("POST",), re.compile(rf"/api/datasets/{_REPO}/paths-info/{_REV}"), "paths_info"),
    (("GET",), re.compile(rf"/api/datasets/{_REPO}/commits/{_REV}"), "list_commits"),
    (("POST",), re.compile(rf"/api/datasets/{_REPO}/preupload/{_REV}"), "preupload"),
    (("POST",), re.compile(rf"/api/datasets/{_REPO}/commit/{_REV}"), "commit"),
    (("GET",), re.compile(rf"/api/datasets/{_REPO}(?:/revision/{_REV})?"), "info"),
    (("POST",), re.compile(rf"/datasets/{_REPO}\.git/info/lfs/objects/batch"), "lfs_batch"),
    (("POST",), re.compile(rf"/datasets/{_REPO}\.git/info/lfs/objects/verify"), "lfs_verify"),
    (("PUT",), re.compile(r"/lfs-upload/(?P<oid>[0-9a-f]{64})/(?P<size>\d+)"), "lfs_put"),
    (("GET", "HEAD"), re.compile(rf"/datasets/{_REPO}/resolve/{_REV}/(?P<path>.+)"), "resolve"),
]


class _Handler(BaseHTTPRequestHandler):
    """Reads a request, hands it to the `StubHub` and writes its answer."""

    protocol_version = "HTTP/1.1"
    hub: StubHub  # set on the per-server subclass

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output quiet."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _serve(self) -> None:
        body = self._read_body()
        response = self.hub._dispatch(self.command, self.path, dict(self.headers.items()), body)
        self.send_response(response.status)
        for name, value in response.headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = _serve


class StubHub:
    """An in-memory Hub for dataset repos, served over HTTP on 127.0.0.1.

    Args:
        username: the namespace of repos created without one, and `whoami`'s name.
        token: when set, writes need this bearer token and a different one is refused (401);
            when None, any token, or none, is accepted for writes.
        lfs_suffixes: files whose path ends with one of these are uploaded as LFS.
        lfs_threshold: files larger than this many bytes are uploaded as LFS.
        seed_gitattributes: start new repos with a commit holding `.gitattributes`, as the Hub does.
    """

    def __init__(
        self,
        *,
        username: str = "stub-user",
        token: str | None = None,
        lfs_suffixes: tuple[str, ...] = (".parquet", ".png"),
        lfs_threshold: int = 10_000,
        seed_gitattributes: bool = False,
    ) -> None:
        self.username = username
        self.token = token
        self.lfs_suffixes = lfs_suffixes
        self.lfs_threshold = lfs_threshold
        self.seed_gitattributes = seed_gitattributes
        self.repos: dict[str, Repo] = {}
        self.lfs_objects: dict[str, bytes] = {}
        self.lfs_puts: list[str] = []
        self.uploaded: list[list[str]] = []
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self._pending_puts: set[str] = set()
        self._counter = itertools.count()
        self._lock = threading.RLock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> StubHub:
        """Bind a free port on 127.0.0.1 and serve from a daemon thread."""
        if self._server is not None:
            return self
        handler = type("StubHubHandler", (_Handler,), {"hub": self})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="stub-hub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and free the port."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> StubHub:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def endpoint(self) -> str:
        """The base URL to pass as `endpoint=`, like `http://127.0.0.1:PORT`."""
        if self._server is None:
            raise RuntimeError("StubHub is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # -- views and helpers for tests -------------------------------------------------------

    @property
    def commits(self) -> dict[str, dict[str, list[Commit]]]:
        """Commits per repo id and branch, oldest first (a new branch copies its base's)."""
        with self._lock:
            return {
                repo_id: {branch: list(commits) for branch, commits in repo.branches.items()}
                for repo_id, repo in self.repos.items()
            }

    @property
    def unknown_requests(self) -> list[RecordedRequest]:
        """Requests that matched no endpoint (answered 404)."""
        return [request for request in self.requests if request.route is None]

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The file tree {path: bytes} at a branch or commit sha (empty without commits)."""
        with self._lock:
            commit = self._resolve(self._repo(repo_id), revision)
            return dict(commit.files) if commit is not None else {}

    def lfs_paths(self, repo_id: str, revision: str = "main") -> set[str]:
        """The paths stored as LFS at a branch or commit sha."""
        with self._lock:
            commit = self._resolve(self._repo(repo_id), revision)
            return set(commit.lfs) if commit is not None else set()

    def upload_mode(self, path: str, size: int) -> UploadMode:
        """How the server wants a file uploaded: by suffix or size, as the Hub's preupload does."""
        if path.endswith(self.lfs_suffixes) or size > self.lfs_threshold:
            return "lfs"
        return "regular"

    def add_repo(self, repo_id: str, *, private: bool = False) -> Repo:
        """Create a repo directly, without a request."""
        with self._lock:
            repo_id = self._full_id(repo_id)
            if repo_id not in self.repos:
                self.repos[repo_id] = Repo(repo_id, private)
                if self.seed_gitattributes:
                    self._commit(
                        self.repos[repo_id],
                        "main",
                        "initial commit",
                        "",
                        [("file", {"path": ".gitattributes", "bytes": DEFAULT_GITATTRIBUTES})],
                        record=False,
                    )
            return self.repos[repo_id]

    def commit_files(
        self,
        repo_id: str,
        files: dict[str, bytes],
        *,
        branch: str = "main",
        delete: tuple[str, ...] = (),
        message: str = "seed",
    ) -> Commit:
        """Commit without a request (LFS per `upload_mode`); not recorded in `uploaded`."""
        with self._lock:
            repo = self.add_repo(repo_id)
            ops: list[tuple[str, dict[str, Any]]] = []
            for path, data in files.items():
                if self.upload_mode(path, len(data)) == "lfs" and data:
                    oid = hashlib.sha256(data).hexdigest()
                    self.lfs_objects[oid] = data
                    ops.append(("lfsFile", {"path": path, "oid": oid}))
                else:
                    ops.append(("file", {"path": path, "bytes": data}))
            ops.extend(("deletedFile", {"path": path}) for path in delete)
            return self._commit(repo, branch, message, "", ops, record=False)

    # -- request dispatch ------------------------------------------------------------------

    def _dispatch(
        self, method: str, raw_url: str, headers: dict[str, str], body: bytes
    ) -> _Response:
        split = urlsplit(raw_url)
        auth = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
        route: str | None = None
        with self._lock:
            try:
                for methods, pattern, name in _ROUTES:
                    match = pattern.fullmatch(split.path)
                    if match is not None and method in methods:
                        route = name
                        params = {
                            k: unquote(v) for k, v in match.groupdict().items() if v is not None
                        }
                        request = _Request(
                            method, params, parse_qs(split.query), headers, body, auth
                        )
                        response = getattr(self, f"_h_{name}")(request)
                        break
                else:
                    raise _HubError(404, f"Stub Hub has no endpoint {method} {split.path}")
            except _HubError as error:
                response = _json(error.status, {"error": error.message, **error.extra})
                response.headers.update(error.headers)
                response.headers["X-Error-Message"] = error.message
                if error.code is not None:
                    response.headers["X-Error-Code"] = error.code
            except Exception:
                self.errors.append(traceback.format_exc())
                response = _json(500, {"error": traceback.format_exc()})
            self.requests.append(
                RecordedRequest(
                    method, unquote(split.path), split.query, auth, route, response.status
                )
            )
        return response

    def _full_id(self, repo_id: str) -> str:
        return repo_id if "/" in repo_id else f"{self.username}/{repo_id}"

    def _repo(self, repo_id: str) -> Repo:
        repo = self.repos.get(repo_id)
        if repo is None:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _check_token(self, request: _Request, *, write: bool) -> None:
        if self.token is None:
            return
        if request.token is not None and request.token != self.token:
            raise _HubError(401, "Invalid credentials in Authorization header")
        if write and request.token is None:
            raise _HubError(401, "Invalid username or password.")

    def _readable_repo(self, request: _Request) -> Repo:
        self._check_token(request, write=False)
        repo = self._repo(request.params["repo"])
        if repo.private and request.token is None:
            raise _HubError(404, "Repository not found", "RepoNotFound")
        return repo

    def _writable_repo(self, request: _Request) -> Repo:
        self._check_token(request, write=True)
        return self._readable_repo(request)

    def _resolve(self, repo: Repo, revision: str) -> Commit | None:
        """The commit a branch name or full sha points at; None for a branch without commits."""
        if revision in repo.branches:
            return repo.head(revision)
        if re.fullmatch(r"[0-9a-f]{40}", revision):
            commit = repo.find_commit(revision)
            if commit is not None:
                return commit
        raise _HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")

    # -- endpoints -------------------------------------------------------------------------

    def _h_create_repo(self, request: _Request) -> _Response:
        self._check_token(request, write=True)
        payload = request.json()
        if payload.get("type") != "dataset":
            raise _HubError(400, "Stub Hub only serves dataset repos")
        repo_id = f"{payload.get('organization') or self.username}/{payload['name']}"
        url = f"{request.base}/datasets/{repo_id}"
        if repo_id in self.repos:
            # `create_repo(exist_ok=True)` reads the url from the 409 body, as the Hub sends it.
            raise _HubError(409, "You already created this dataset repo", extra={"url": url})
        private = payload.get("visibility", "private" if payload.get("private") else "public")
        self.add_repo(repo_id, private=private == "private")
        return _json(200, {"url": url, "name": repo_id, "id": repo_id})

    def _h_validate_yaml(self, request: _Request) -> _Response:
        content = request.json().get("content", "")
        match = re.match(r"^---\s*\n(.*?)\n---\s*$", content, re.DOTALL | re.MULTILINE)
        if match is not None:
            try:
                yaml.safe_load(match.group(1))
            except yaml.YAMLError as error:
                return _json(400, {"errors": [{"message": str(error)}], "warnings": []})
        return _json(200, {"errors": [], "warnings": []})

    def _h_whoami(self, request: _Request) -> _Response:
        self._check_token(request, write=False)
        if request.token is None:
            raise _HubError(401, "Invalid username or password.")
        return _json(
            200, {"type": "user", "name": self.username, "fullname": self.username, "orgs": []}
        )

    def _h_create_branch(self, request: _Request) -> _Response:
        repo = self._writable_repo(request)
        branch = request.params["rev"]
        if branch in repo.branches:
            raise _HubError(409, f"Reference already exists: refs/heads/{branch}")
        start = request.json().get("startingPoint") or "main"
        base = self._resolve(repo, start)
        history: list[Commit] = []
        if base is not None:
            source = next(c for c in repo.branches.values() if base in c)
            history = source[: source.index(base) + 1]
        repo.branches[branch] = list(history)
        return _json(200, {})

    def _h_refs(self, request: _Request) -> _Response:
        repo = self._readable_repo(request)
        branches = [
            {
                "name": name,
                "ref": f"refs/heads/{name}",
                "targetCommit": commits[-1].oid if commits else None,
            }
            for name, commits in repo.branches.items()
        ]
        return _json(200, {"branches": branches, "converts": [], "tags": [], "pullRequests": []})

    def _entries(self, commit: Commit | None, base: str, recursive: bool) -> list[dict[str, Any]]:
        """Tree entries under folder `base` ("" for the root), like the Hub's tree API."""
        if commit is None:
            if base:
                raise _HubError(404, f"{base} does not exist", "EntryNotFound")
            return []
        files = {path: commit.blob_id(path) for path in commit.files}
        folders = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
        if base and base not in folders:
            raise _HubError(404, f"{base} does not exist", "EntryNotFound")
        prefix = f"{base}/" if base else ""
        entries: list[dict[str, Any]] = []
        for path in sorted(folders | set(files)):
            if not path.startswith(prefix) or (not recursive and "/" in path[len(prefix) :]):
                continue
            if path in files:
                entries.append(self._file_entry(commit, path))
            else:
                entries.append(
                    {"type": "directory", "oid": _tree_sha(files, path), "size": 0, "path": path}
                )
        return entries

    @staticmethod
    def _file_entry(commit: Commit, path: str) -> dict[str, Any]:
        data = commit.files[path]
        entry: dict[str, Any] = {
            "type": "file",
            "oid": commit.blob_id(path),
            "size": len(data),
            "path": path,
        }
        if path in commit.lfs:
            sha256 = hashlib.sha256(data).hexdigest()
            pointer = lfs_pointer(sha256, len(data))
            entry["lfs"] = {"oid": sha256, "size": len(data), "pointerSize": len(pointer)}
        return entry

    def _h_tree(self, request: _Request) -> _Response:
        repo = self._readable_repo(request)
        commit = self._resolve(repo, request.params["rev"])
        recursive = request.query.get("recursive", ["False"])[0].lower() in ("true", "1")
        base = request.params.get("path", "").strip("/")
        return _json(200, self._entries(commit, base, recursive))

    def _h_paths_info(self, request: _Request) -> _Response:
        repo = self._readable_repo(request)
        commit = self._resolve(repo, request.params["rev"])
        form = parse_qs(request.body.decode())
        out: list[dict[str, Any]] = []
        entries = {e["path"]: e for e in self._entries(commit, "", True)}
        for path in form.get("paths", []):
            entry = entries.get(path.strip("/"))
            if entry is not None:
                out.append(entry)
        return _json(200, out)

    def _h_list_commits(self, request: _Request) -> _Response:
        repo = self._readable_repo(request)
        head = self._resolve(repo, request.params["rev"])
        if head is None:
            return _json(200, [])
        history = next(c for c in repo.branches.values() if head in c)
        history = history[: history.index(head) + 1]
        return _json(
            200,
            [
                {
                    "id": c.oid,
                    "title": c.title,
                    "message": c.message,
                    "authors": [{"user": self.username}],
                    "date": c.date,
                }
                for c in reversed(history)
            ],
        )

    def _h_info(self, request: _Request) -> _Response:
        repo = self._readable_repo(request)
        commit = self._resolve(repo, request.params.get("rev", "main"))
        blobs = request.query.get("blobs", ["False"])[0].lower() in ("true", "1")
        siblings: list[dict[str, Any]] = []
        for path in sorted(commit.files if commit is not None else {}):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs and commit is not None:
                entry = self._file_entry(commit, path)
                sibling.update(size=entry["size"], blobId=entry["oid"])
                if "lfs" in entry:
                    lfs = entry["lfs"]
                    sibling["lfs"] = {
                        "size": lfs["size"],
                        "sha256": lfs["oid"],
                        "pointerSize": lfs["pointerSize"],
                    }
            siblings.append(sibling)
        return _json(
            200,
            {
                "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
                "id": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": commit.oid if commit is not None else None,
                "private": repo.private,
                "gated": False,
                "disabled": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "createdAt": repo.created_at,
                "lastModified": commit.date if commit is not None else repo.created_at,
                "siblings": siblings,
            },
        )

    def _h_preupload(self, request: _Request) -> _Response:
        repo = self._writable_repo(request)
        if request.query.get("create_pr"):
            raise _HubError(400, "Stub Hub does not support pull requests")
        head = self._resolve(repo, request.params["rev"])
        answers = []
        for item in request.json()["files"]:
            path, size = item["path"], int(item["size"])
            answer: dict[str, Any] = {
                "path": path,
                "uploadMode": self.upload_mode(path, size),
                "shouldIgnore": False,
            }
            if head is not None and path in head.files:
                answer["oid"] = head.upload_oid(path)
            answers.append(answer)
        return _json(200, {"files": answers, "commitOid": head.oid if head is not None else None})

    def _h_lfs_batch(self, request: _Request) -> _Response:
        repo = self._writable_repo(request)
        payload = request.json()
        if payload.get("operation") != "upload":
            raise _HubError(400, "Stub Hub only serves LFS uploads")
        if "basic" not in payload.get("transfers", ["basic"]):
            raise _HubError(422, "Stub Hub only offers the basic LFS transfer")
        git_url = f"{request.base}/datasets/{repo.repo_id}.git"
        objects = []
        for item in payload["objects"]:
            oid, size = item["oid"], int(item["size"])
            answer: dict[str, Any] = {"oid": oid, "size": size, "authenticated": True}
            stored = self.lfs_objects.get(oid)
            if stored is None or len(stored) != size:
                answer["actions"] = {
                    "upload": {"href": f"{request.base}/lfs-upload/{oid}/{size}"},
                    "verify": {"href": f"{git_url}/info/lfs/objects/verify"},
                }
            objects.append(answer)
        body = {"transfer": "basic", "objects": objects, "hash_algo": "sha256"}
        return _json(200, body, "application/vnd.git-lfs+json")

    def _h_lfs_put(self, request: _Request) -> _Response:
        oid, size = request.params["oid"], int(request.params["size"])
        data = request.body
        if len(data) != size:
            raise _HubError(400, f"Expected {size} bytes for {oid}, got {len(data)}")
        if hashlib.sha256(data).hexdigest() != oid:
            raise _HubError(400, f"Content does not match sha256 {oid}")
        self.lfs_objects[oid] = data
        self.lfs_puts.append(oid)
        self._pending_puts.add(oid)
        return _Response(200, b"", {"ETag": f'"{hashlib.md5(data).hexdigest()}"'})

    def _h_lfs_verify(self, request: _Request) -> _Response:
        self._writable_repo(request)
        payload = request.json()
        stored = self.lfs_objects.get(payload["oid"])
        if stored is None or len(stored) != int(payload["size"]):
            raise _HubError(404, f"LFS object {payload['oid']} was not uploaded")
        return _json(200, {})

    def _h_commit(self, request: _Request) -> _Response:
        repo = self._writable_repo(request)
        if request.query.get("create_pr"):
            raise _HubError(400, "Stub Hub does not support pull requests")
        branch = request.params["rev"]
        if branch not in repo.branches:
            raise _HubError(404, f"Invalid rev id: {branch}", "RevisionNotFound")
        lines = [json.loads(line) for line in request.body.splitlines() if line.strip()]
        if not lines or lines[0].get("key") != "header":
            raise _HubError(400, "The commit payload must start with a header line")
        header = lines[0]["value"]
        parent = header.get("parentCommit")
        head = repo.head(branch)
        if parent is not None and (head is None or not head.oid.startswith(parent)):
            raise _HubError(412, "A commit has happened since. Please refresh and try again.")
        ops: list[tuple[str, dict[str, Any]]] = []
        for line in lines[1:]:
            key, value = line["key"], dict(line["value"])
            if key == "file":
                if value.get("encoding", "base64") != "base64":
                    raise _HubError(400, f"Unsupported encoding {value.get('encoding')}")
                value["bytes"] = base64.b64decode(value["content"])
            ops.append((key, value))
        commit = self._commit(
            repo, branch, header.get("summary", ""), header.get("description", ""), ops, record=True
        )
        url = f"{request.base}/datasets/{repo.repo_id}/commit/{commit.oid}"
        return _json(
            200,
            {
                "success": True,
                "commitOid": commit.oid,
                "commitUrl": url,
                "hookOutput": "",
                "pullRequestUrl": None,
            },
        )

    def _commit(
        self,
        repo: Repo,
        branch: str,
        title: str,
        message: str,
        ops: list[tuple[str, dict[str, Any]]],
        *,
        record: bool,
    ) -> Commit:
        """Apply operations on the head of `branch` and append the new commit."""
        head = repo.head(branch)
        files = dict(head.files) if head is not None else {}
        lfs = set(head.lfs) if head is not None else set()
        added: list[str] = []
        deleted: list[str] = []
        uploaded: list[str] = []
        arrived: set[str] = set()
        for key, value in ops:
            path = value["path"]
            if key == "file":
                files[path] = value["bytes"]
                lfs.discard(path)
                added.append(path)
                uploaded.append(path)
            elif key == "lfsFile":
                oid = value["oid"]
                data = self.lfs_objects.get(oid)
                if data is None:
                    raise _HubError(400, f"LFS object {oid} for {path} was never uploaded")
                if value.get("size") is not None and int(value["size"]) != len(data):
                    raise _HubError(
                        400, f"LFS object {oid} has size {len(data)}, not {value['size']}"
                    )
                files[path] = data
                lfs.add(path)
                added.append(path)
                if oid in self._pending_puts:
                    uploaded.append(path)
                    arrived.add(oid)
            elif key == "deletedFile":
                if path not in files:
                    raise _HubError(
                        404, f"A file with this name doesn't exist: {path}", "EntryNotFound"
                    )
                del files[path]
                lfs.discard(path)
                deleted.append(path)
            elif key == "deletedFolder":
                prefix = path.rstrip("/") + "/"
                gone = sorted(p for p in files if p.startswith(prefix))
                if not gone:
                    raise _HubError(
                        404, f"A folder with this name doesn't exist: {path}", "EntryNotFound"
                    )
                for p in gone:
                    del files[p]
                    lfs.discard(p)
                deleted.extend(gone)
            else:
                raise _HubError(400, f"Unknown commit operation {key!r}")
        seed = (
            f"{repo.repo_id}\n{branch}\n{head.oid if head else ''}\n{next(self._counter)}\n{title}"
        )
        commit = Commit(
            oid=hashlib.sha1(seed.encode()).hexdigest(),
            parent=head.oid if head is not None else None,
            branch=branch,
            title=title,
            message=message,
            files=files,
            lfs=frozenset(lfs),
            added=added,
            deleted=deleted,
            uploaded=uploaded if record else [],
        )
        repo.branches[branch].append(commit)
        if record:
            self._pending_puts -= arrived
            self.uploaded.append(list(uploaded))
        return commit

    def _h_resolve(self, request: _Request) -> _Response:
        repo = self._readable_repo(request)
        commit = self._resolve(repo, request.params["rev"])
        path = request.params["path"]
        if commit is None or path not in commit.files:
            extra = {"X-Repo-Commit": commit.oid} if commit is not None else {}
            raise _HubError(404, "Entry not found", "EntryNotFound", headers=extra)
        data = commit.files[path]
        headers = {
            "Content-Type": "application/octet-stream",
            "Accept-Ranges": "bytes",
            "X-Repo-Commit": commit.oid,
        }
        if path in commit.lfs:
            sha256 = hashlib.sha256(data).hexdigest()
            headers.update(
                {
                    "ETag": f'"{sha256}"',
                    "X-Linked-Etag": f'"{sha256}"',
                    "X-Linked-Size": str(len(data)),
                }
            )
        else:
            headers["ETag"] = f'"{commit.blob_id(path)}"'
        status = 200
        wanted = request.header("Range")
        match = re.fullmatch(r"bytes=(\d+)-(\d*)", wanted or "")
        if match is not None:
            start = int(match.group(1))
            end = int(match.group(2)) if match.group(2) else len(data) - 1
            if start >= len(data) and data:
                raise _HubError(
                    416, "Range not satisfiable", headers={"Content-Range": f"bytes */{len(data)}"}
                )
            end = min(end, len(data) - 1)
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
            data, status = data[start : end + 1], 206
        return _Response(status, data, headers)


@dataclass
class _Request:
    method: str
    params: dict[str, str]
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes
    authorization: str | None

    @property
    def token(self) -> str | None:
        """The bearer token, if one was sent."""
        auth = self.authorization or ""
        if not auth.lower().startswith("bearer "):
            return None
        return auth[7:].strip() or None

    @property
    def base(self) -> str:
        """The endpoint the client used, from the Host header."""
        return f"http://{self.header('Host')}"

    def header(self, name: str) -> str | None:
        """A request header, case-insensitively."""
        return next((v for k, v in self.headers.items() if k.lower() == name.lower()), None)

    def json(self) -> Any:
        """The body parsed as JSON ({} when empty)."""
        if not self.body:
            return {}
        try:
            return json.loads(self.body)
        except ValueError as error:
            raise _HubError(400, f"Malformed JSON body: {error}") from error


def _tree_sha(files: dict[str, str], folder: str) -> str:
    """The git tree oid of `folder`, from the blob oids of the files under it."""
    prefix = f"{folder}/"
    children: dict[str, str] = {}
    subfolders: set[str] = set()
    for path, oid in files.items():
        if path.startswith(prefix):
            rest = path[len(prefix) :]
            name = rest.split("/")[0]
            if "/" in rest:
                subfolders.add(name)
            else:
                children[name] = oid
    items = [(name, b"100644", oid) for name, oid in children.items()]
    items += [(name, b"40000", _tree_sha(files, prefix + name)) for name in subfolders]
    items.sort(key=lambda item: item[0] + ("/" if item[1] == b"40000" else ""))
    content = b"".join(
        mode + b" " + name.encode() + b"\0" + bytes.fromhex(oid) for name, mode, oid in items
    )
    return hashlib.sha1(b"tree %d\0" % len(content) + content).hexdigest()


def configure_client(monkeypatch: pytest.MonkeyPatch) -> None:
    """Point `huggingface_hub`'s import-time settings at a test run, for one test only.

    `huggingface_hub.constants` reads HF_HUB_DISABLE_XET, HF_HUB_OFFLINE and
    HF_HUB_DISABLE_TELEMETRY once, at import, so once it is imported setting the variables is not
    enough: the module attributes are patched too. Xet must be off for uploads to take the LFS
    path (see the module docstring).
    """
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def iter_requests(hub: StubHub, route: str) -> Iterator[RecordedRequest]:
    """The recorded requests that hit one endpoint (a `_ROUTES` handler name)."""
    return (request for request in hub.requests if request.route == route)


__all__ = [
    "Commit",
    "RecordedRequest",
    "Repo",
    "StubHub",
    "configure_client",
    "git_blob_sha1",
    "iter_requests",
    "lfs_pointer",
]
