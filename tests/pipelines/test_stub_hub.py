"""The stub Hub against the real `huggingface_hub.HfApi`: create, commit, list, download."""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    RepoFile,
    snapshot_download,
)
from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

from .stub_hub import StubHub, configure_client, git_blob_sha1, iter_requests, lfs_pointer

TOKEN = "hf_stub_token_123"
REPO = "tester/regions"
README = b"---\nlicense: apache-2.0\n---\n# Regions\n\nA small test card.\n"
PARQUET = b"PAR1" + bytes(range(256)) * 8 + b"PAR1"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch) -> Iterator[StubHub]:
    """A running stub Hub, with the client's environment set for this test only."""
    configure_client(monkeypatch)
    with StubHub() as server:
        yield server


@pytest.fixture
def api(hub: StubHub) -> HfApi:
    """The real client, pointed at the stub with a token."""
    return HfApi(endpoint=hub.endpoint, token=TOKEN)


def _folder(root: Path) -> Path:
    """A folder to publish: a regular README.md and an LFS parquet shard."""
    (root / "data").mkdir(parents=True)
    (root / "README.md").write_bytes(README)
    (root / "data" / "train-00000.parquet").write_bytes(PARQUET)
    return root


def _adds(folder: Path) -> list[CommitOperationAdd]:
    return [
        CommitOperationAdd(path_in_repo=p.relative_to(folder).as_posix(), path_or_fileobj=str(p))
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    ]


def _tree(api: HfApi, revision: str) -> dict[str, RepoFile]:
    entries = api.list_repo_tree(REPO, repo_type="dataset", revision=revision, recursive=True)
    return {e.path: e for e in entries if isinstance(e, RepoFile)}


def test_commit_list_and_download(hub: StubHub, api: HfApi, tmp_path: Path) -> None:
    """Two commits on a branch through LFS and regular uploads, then a snapshot download."""
    folder = _folder(tmp_path / "src")
    api.create_repo(REPO, repo_type="dataset", private=False, exist_ok=True)
    api.create_repo(REPO, repo_type="dataset", private=False, exist_ok=True)  # 409 swallowed
    assert _tree(api, "main") == {}
    api.create_branch(REPO, branch="v1", repo_type="dataset", exist_ok=True)
    api.create_branch(REPO, branch="v1", repo_type="dataset", exist_ok=True)
    assert _tree(api, "v1") == {}
    with pytest.raises(RevisionNotFoundError):
        _tree(api, "no-such-branch")

    stale = CommitOperationAdd("notes/old.txt", b"stale\n")
    first = api.create_commit(
        REPO,
        operations=[*_adds(folder), stale],
        commit_message="add",
        repo_type="dataset",
        revision="v1",
    )
    tree = _tree(api, "v1")
    assert set(tree) == {"README.md", "data/train-00000.parquet", "notes/old.txt"}
    assert tree["README.md"].blob_id == git_blob_sha1(README)
    assert tree["README.md"].lfs is None and tree["README.md"].size == len(README)
    shard = tree["data/train-00000.parquet"]
    sha256 = hashlib.sha256(PARQUET).hexdigest()
    assert shard.lfs is not None and shard.lfs.sha256 == sha256 and shard.lfs.size == len(PARQUET)
    assert shard.blob_id == git_blob_sha1(lfs_pointer(sha256, len(PARQUET)))
    assert _tree(api, "main") == {}
    assert hub.lfs_puts == [sha256]
    assert sorted(hub.uploaded[-1]) == ["README.md", "data/train-00000.parquet", "notes/old.txt"]
    assert [c.oid for c in hub.commits[REPO]["v1"]] == [first.oid]

    second = api.create_commit(
        REPO,
        operations=[*_adds(folder), CommitOperationDelete("notes/old.txt")],
        commit_message="same files, one deleted",
        repo_type="dataset",
        revision="v1",
    )
    assert set(_tree(api, "v1")) == {"README.md", "data/train-00000.parquet"}
    last = hub.commits[REPO]["v1"][-1]
    assert last.oid == second.oid and last.parent == first.oid
    # The client drops unchanged files after preupload reports their oids: only the delete is sent.
    assert last.added == [] and last.deleted == ["notes/old.txt"] and last.uploaded == []
    assert hub.lfs_puts == [sha256]  # the stored object was not sent again
    assert len(list(iter_requests(hub, "lfs_batch"))) == 2

    out = tmp_path / "out"
    snapshot_download(
        REPO,
        repo_type="dataset",
        revision="v1",
        local_dir=out,
        cache_dir=tmp_path / "cache",
        endpoint=hub.endpoint,
        token=TOKEN,
    )
    assert (out / "data" / "train-00000.parquet").read_bytes() == PARQUET
    assert (out / "README.md").read_bytes() == README
    assert not (out / "notes").exists()
    assert any(r.route == "resolve" and r.method == "HEAD" for r in hub.requests)

    assert hub.unknown_requests == [] and hub.errors == []
    for request in hub.requests:
        if request.route != "lfs_put":  # presigned upload URLs carry no auth, as on the Hub
            assert request.bearer and request.authorization == f"Bearer {TOKEN}", request


def test_first_commit_on_main_and_download_cache(hub: StubHub, api: HfApi, tmp_path: Path) -> None:
    """A commit on main of an empty repo, downloaded into the cache layout."""
    folder = _folder(tmp_path / "src")
    api.create_repo(REPO, repo_type="dataset", exist_ok=True)
    info = api.create_commit(
        REPO, operations=_adds(folder), commit_message="add", repo_type="dataset"
    )
    assert api.dataset_info(REPO, revision="main").sha == info.oid
    assert hub.files(REPO) == {"README.md": README, "data/train-00000.parquet": PARQUET}
    assert hub.lfs_paths(REPO) == {"data/train-00000.parquet"}
    snapshot = Path(
        snapshot_download(
            REPO,
            repo_type="dataset",
            cache_dir=tmp_path / "cache",
            endpoint=hub.endpoint,
            token=TOKEN,
        )
    )
    assert (snapshot / "README.md").read_bytes() == README
    assert (snapshot / "data" / "train-00000.parquet").read_bytes() == PARQUET

    api.create_commit(
        REPO, operations=[CommitOperationDelete("data/")], commit_message="rm", repo_type="dataset"
    )
    assert set(_tree(api, "main")) == {"README.md"}
    assert hub.commits[REPO]["main"][-1].deleted == ["data/train-00000.parquet"]
    assert hub.unknown_requests == [] and hub.errors == []


def test_private_repo(hub: StubHub, api: HfApi) -> None:
    """A private repo is created private and hidden from requests without a token."""
    api.create_repo("secret", repo_type="dataset", private=True, exist_ok=True)
    repo_id = f"{hub.username}/secret"
    assert hub.repos[repo_id].private
    assert api.dataset_info(repo_id).private is True
    anonymous = HfApi(endpoint=hub.endpoint, token=False)
    with pytest.raises(RepositoryNotFoundError):
        list(anonymous.list_repo_tree(repo_id, repo_type="dataset"))
    assert hub.requests[-1].authorization is None and not hub.requests[-1].bearer


def test_unknown_endpoint_is_recorded(hub: StubHub) -> None:
    """An endpoint the stub lacks answers 404 with a JSON error and is recorded."""
    request = urllib.request.Request(f"{hub.endpoint}/api/spaces/a/b", method="GET")
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=5)
    assert caught.value.code == 404
    assert "no endpoint" in json.loads(caught.value.read())["error"]
    assert [(r.method, r.path) for r in hub.unknown_requests] == [("GET", "/api/spaces/a/b")]
