"""What a publish uploads, gathered in a staging folder beside the build (`.publish/`).

The upload is the build's own folder as the Hub should see it: the Parquet shards (with image
bytes when embedding; a build's rows name image files by path, which mean nothing on the
Hub), the manifest and the quarantine files (without the folders of the machine that built
them), a preview image and the card rewritten for the published copy. Before anything is
written the sources' terms are checked: a source whose terms forbid redistribution blocks the
publish unless the publisher says otherwise.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from regionkit.catalog.sources import Source, get_source
from regionkit.pipelines.card import Publication, render_card
from regionkit.pipelines.preview import render_preview
from regionkit.pipelines.publish.embed import (
    PublishError,
    embed_shard,
    read_record,
    shard_has_paths,
    write_record,
)
from regionkit.pipelines.publish.local_paths import (
    copy_without_folders,
    local_folders,
    without_folders,
)
from regionkit.pipelines.storage import dumps_json, write_text_atomic

STAGING = ".publish"
PREVIEW = "preview.png"


@dataclass(frozen=True)
class PublishOptions:
    """How to publish.

    Attributes:
        repo_id: `OWNER/NAME` on the Hub.
        private: create the repository private.
        embed_images: write the image bytes into the shards.
        revision: the branch to commit to (created from main when missing).
        accept_restricted: publish sources whose terms forbid redistribution (the card says so).
    """

    repo_id: str
    private: bool = False
    embed_images: bool = False
    revision: str = "main"
    accept_restricted: bool = False


@dataclass(frozen=True)
class Staged:
    """The files to upload (path in the repository -> local file), the card's text, and the
    sha256 of the files hashed while staging (embedded shards), so they are not hashed again."""

    files: dict[str, Path]
    card: str
    sha256: dict[str, str] = field(default_factory=dict)


def stage(folder: Path, options: PublishOptions, say: Callable[[str], None] = print) -> Staged:
    """Check `folder` can be published as asked and gather its upload."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise PublishError(f"{folder}: no manifest.json; publish a folder `regionkit build` wrote")
    manifest = json.loads(manifest_path.read_text())
    sources = _sources(manifest)
    restricted = [s.name for s in sources if not s.redistributable]
    if restricted and not options.accept_restricted:
        terms = "; ".join(f"{s.name}: {s.license_note}" for s in sources if s.name in restricted)
        raise PublishError(
            f"{folder}: the terms of {', '.join(restricted)} do not allow redistribution "
            f"({terms}). Publish only with the right to share it, by passing "
            "--accept-restricted-licenses; the card will record that you did."
        )
    shards = [entry for split in manifest["splits"].values() for entry in split["shards"]]
    with_paths = [e["file"] for e in shards if e["rows"] and shard_has_paths(folder / e["file"])]
    if with_paths and not options.embed_images:
        raise PublishError(
            f"{folder}: rows name their images by local path ({with_paths[0]} and others), "
            "which mean nothing on the Hub. Pass --embed-images to write the image bytes into "
            "the shards (streamed shard by shard, checked against the manifest)."
        )
    staging = folder / STAGING
    staging.mkdir(exist_ok=True)
    files: dict[str, Path] = {}
    done = read_record(staging)
    for entry in shards:
        if options.embed_images:
            if embed_shard(folder / entry["file"], entry, staging / entry["file"], done):
                write_record(staging, done)  # an interrupted publish keeps what it embedded
                say(f"  embedded images into {entry['file']}")
            files[entry["file"]] = staging / entry["file"]
        else:
            files[entry["file"]] = folder / entry["file"]
    _drop_stale(staging, {entry["file"] for entry in shards}, done)
    local = local_folders(manifest)
    files["manifest.json"] = _published_manifest(manifest, done, staging, options, local)
    for name in manifest.get("quarantine_files", []):
        files[name] = copy_without_folders(folder / name, staging / name, local)
    preview = _preview(folder, staging, say)
    if preview is not None:
        files[PREVIEW] = preview
    embedded = [done[e["file"]] for e in shards if options.embed_images and e["file"] in done]
    publication = Publication(
        repo_id=options.repo_id,
        images_embedded=options.embed_images or not with_paths,
        images=sum(e["images"] for e in embedded),
        image_bytes=sum(e["image_bytes"] for e in embedded),
        restricted_accepted=restricted,
        preview=PREVIEW if preview is not None else None,
    )
    card = render_card(manifest, sources, publication)
    write_text_atomic(staging / "README.md", card)
    files["README.md"] = staging / "README.md"
    hashed = {e["file"]: done[e["file"]]["embedded"] for e in shards if options.embed_images}
    return Staged(dict(sorted(files.items())), card, hashed)


def _published_manifest(
    manifest: dict, done: dict, staging: Path, options: PublishOptions, local: list[str]
) -> Path:
    """The manifest without this machine's folders, and with each embedded shard's own sha256
    and size, so the published copy checks out (`regionkit inspect`) as the build did."""
    published = copy.deepcopy(manifest)
    if options.embed_images:
        for split in published["splits"].values():
            for entry in split["shards"]:
                entry["sha256"] = done[entry["file"]]["embedded"]
                entry["bytes"] = done[entry["file"]]["bytes"]
    write_text_atomic(staging / "manifest.json", without_folders(dumps_json(published), local))
    return staging / "manifest.json"


def _drop_stale(staging: Path, shards: set[str], done: dict) -> None:
    """Forget and delete shards embedded for an earlier build of the folder."""
    stale = [name for name in done if name not in shards]
    for name in stale:
        del done[name]
        (staging / name).unlink(missing_ok=True)
    if stale:
        write_record(staging, done)


def _sources(manifest: dict) -> list[Source]:
    return [get_source(name) for name in sorted({b["source"] for b in manifest["builders"]})]


def _preview(folder: Path, staging: Path, say: Callable[[str], None]) -> Path | None:
    try:
        return render_preview(folder, staging / PREVIEW)
    except (OSError, ValueError) as error:
        say(f"  no preview image: {error}")
        return None
