"""The staged files into a Hub dataset repository, in one commit of what changed.

The repository's tree is listed first; a file whose content the Hub already holds at that
path (its LFS sha256, or its git blob id for a small file) is not sent, and files regionkit
wrote there before (`data/`, `quarantine/`) that the new build no longer has are deleted in
the same commit. Publishing the same build again therefore commits nothing. `create_commit`
uploads the large files before it commits, and the Hub keeps what arrived, so a publish cut
off during the upload sends only what is missing when run again. The token comes from
`HF_TOKEN` or the Hub's own login; it is never printed or written, and a failure's message
(which may echo a request) is scrubbed of it before anyone sees it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, RepoFile, get_token
from huggingface_hub.errors import HfHubHTTPError, HTTPError, RevisionNotFoundError

from regionkit.pipelines.publish.embed import PublishError
from regionkit.pipelines.publish.stage import PublishOptions, Staged
from regionkit.pipelines.storage import HASH_CHUNK_BYTES, sha256_file

OWNED_FOLDERS = ("data/", "quarantine/")
"""Where files the current build lacks are stale and deleted; others are the owner's."""

REMOTE_ERRORS = (HTTPError, OSError, RuntimeError)
"""What the client raises when the Hub or the network fails: its HTTP errors (the Hub's own
`HfHubHTTPError` among them), network errors, and the `RuntimeError` a failed file upload
becomes."""

REFUSED_STATUS = (401, 403)


class UploadFailed(Exception):
    """The Hub or the network failed during a publish; the message is free of the token and
    says what to do next."""


def scrub(text: str) -> str:
    """`text` without the Hub token, for anything printed (the Hub's errors echo requests)."""
    token = get_token()
    return text.replace(token, "***") if token else text


@dataclass(frozen=True)
class UploadResult:
    """What a publish did: files sent, deleted and left as they were; the commit's URL."""

    sent: list[str]
    deleted: list[str]
    unchanged: list[str]
    commit_url: str | None


def git_blob_id(path: Path) -> str:
    """The git object id of a file's content (what the Hub reports for a small file)."""
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as file:
        while chunk := file.read(HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


def _holds(remote: RepoFile | None, local: Path, sha256: str | None) -> bool:
    """Whether the Hub's file has `local`'s content (`sha256`: the content's, when known)."""
    if remote is None or remote.size != local.stat().st_size:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == (sha256 or sha256_file(local))
    return remote.blob_id == git_blob_id(local)


def upload(
    staged: Staged, options: PublishOptions, name: str, say: Callable[[str], None] = print
) -> UploadResult:
    """Create the repository (and branch) if needed and commit what differs from it."""
    try:
        return _upload(HfApi(), staged, options, name, say)
    except REMOTE_ERRORS as error:
        raise UploadFailed(_failure_message(error, options.repo_id)) from None


def _failure_message(error: BaseException, repo: str) -> str:
    """The error and its causes in one scrubbed line, then what to do about it."""
    chain = _causes(error)
    reasons = [" ".join(str(cause).split()) or type(cause).__name__ for cause in chain]
    refused = any(
        isinstance(cause, HfHubHTTPError)
        and cause.response is not None
        and cause.response.status_code in REFUSED_STATUS
        for cause in chain
    )
    if refused:
        advice = (
            f"the Hub refused the token: set HF_TOKEN to a token with write access to {repo} "
            "(or log in with `hf auth login`) and rerun"
        )
    else:
        advice = "rerun the same command: what arrived is kept, and only the rest is sent"
    return scrub(f"publishing to {repo} failed: {': '.join(reasons)}\n{advice}")


def _causes(error: BaseException, limit: int = 4) -> list[BaseException]:
    """`error` and what raised it, outermost first."""
    chain = [error]
    while chain[-1].__cause__ is not None and len(chain) < limit:
        chain.append(chain[-1].__cause__)
    return chain


def _upload(
    api: HfApi, staged: Staged, options: PublishOptions, name: str, say: Callable[[str], None]
) -> UploadResult:
    repo, kind = options.repo_id, "dataset"
    api.create_repo(repo, repo_type=kind, private=options.private, exist_ok=True)
    if options.private and not api.repo_info(repo, repo_type=kind).private:
        raise PublishError(
            f"{repo} exists and is public, and --private does not change an existing "
            "repository: nothing was sent. Make it private in its settings on the Hub, or "
            "publish to a new name."
        )
    if options.revision != "main":
        api.create_branch(repo, branch=options.revision, repo_type=kind, exist_ok=True)
    try:
        tree = api.list_repo_tree(repo, repo_type=kind, revision=options.revision, recursive=True)
        remote = {entry.path: entry for entry in tree if isinstance(entry, RepoFile)}
    except RevisionNotFoundError:
        remote = {}
    sent = [
        path
        for path, local in staged.files.items()
        if not _holds(remote.get(path), local, staged.sha256.get(path))
    ]
    unchanged = [path for path in staged.files if path not in sent]
    deleted = sorted(
        path for path in remote if path not in staged.files and path.startswith(OWNED_FOLDERS)
    )
    size = sum(staged.files[path].stat().st_size for path in sent)
    say(
        f"{repo} ({options.revision}): {len(sent)} files to send ({size / 1e6:.1f} MB), "
        f"{len(deleted)} stale to delete, {len(unchanged)} unchanged"
    )
    if not sent and not deleted:
        return UploadResult([], [], unchanged, None)
    operations = [
        CommitOperationAdd(path_in_repo=path, path_or_fileobj=str(staged.files[path]))
        for path in sent
    ] + [CommitOperationDelete(path_in_repo=path) for path in deleted]
    info = api.create_commit(
        repo,
        operations=operations,
        commit_message=f"regionkit publish {name}: {len(sent)} sent, {len(deleted)} deleted",
        repo_type=kind,
        revision=options.revision,
    )
    return UploadResult(sent, deleted, unchanged, info.commit_url)
