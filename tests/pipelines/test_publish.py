"""Publishing to the Hub: the real `huggingface_hub` client against a local Hub server
(`stub_hub`) that `HF_ENDPOINT` points at and that chooses each file's upload mode. The files
sent are exactly the build's; the same build again sends none; a rebuild replaces stale shards
in one commit; a publish cut off in its uploads resumes; the token appears in nothing printed
or written, failures included; no folder of the publisher's machine is published; sources whose
terms forbid redistribution are refused without the flag; and the published folder loads with
`load_dataset` in a fresh process, with the original images gone."""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard

from regionkit.builders.coco import CocoBuilder
from regionkit.builders.samples.coco import CocoSample, write_coco_sample
from regionkit.builders.samples.vcr import write_vcr_sample
from regionkit.builders.vcr import VcrBuilder
from regionkit.cli import main
from regionkit.pipelines.build import BuildOptions, run_build
from tests.pipelines.stub_hub import StubHub, _HubError, configure_client

TOKEN = "hf_publishtesttoken0123456789"


@pytest.fixture
def coco_build(ray_cluster, tmp_path) -> tuple[Path, CocoSample]:
    """A COCO build of 6 images in 2 shards, and its source."""
    sample = write_coco_sample(tmp_path / "src", num_images=6, seed=4, draw=True)
    out = tmp_path / "coco"
    builder = CocoBuilder(sample.annotations, sample.images)
    run_build(builder, BuildOptions(out, shards=2, progress=False))
    return out, sample


@pytest.fixture
def hub(monkeypatch):
    """A local Hub that takes writes only with TOKEN, which the environment holds."""
    from huggingface_hub import constants

    with StubHub(token=TOKEN) as server:
        configure_client(monkeypatch)
        monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
        # read at import: the API's root, and the download URLs' template built from it
        monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
        template = constants.HUGGINGFACE_CO_URL_TEMPLATE.replace(
            "https://huggingface.co", server.endpoint
        )
        monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", template)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        yield server


def _publish(folder: Path, *extra: str) -> int:
    return main(["publish", str(folder), "--repo", "me/coco-regions", *extra])


def _build_files(folder: Path) -> set[str]:
    manifest = json.loads((folder / "manifest.json").read_text())
    shards = {e["file"] for split in manifest["splits"].values() for e in split["shards"]}
    return (
        shards | set(manifest["quarantine_files"]) | {"manifest.json", "README.md", "preview.png"}
    )


def test_a_build_naming_local_images_is_refused_without_embedding(coco_build, hub, capsys):
    folder, _ = coco_build
    assert _publish(folder) == 2
    said = capsys.readouterr().err
    assert "local path" in said and "--embed-images" in said
    assert not [r for r in hub.requests if r.method == "POST"]  # nothing was sent


def test_a_dry_run_lists_the_upload_and_the_card_without_a_network(coco_build, monkeypatch, capsys):
    folder, _ = coco_build
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    assert _publish(folder, "--embed-images", "--dry-run") == 0
    said = capsys.readouterr().out
    for path in _build_files(folder):
        assert f"  {path}  (" in said
    assert 'load_dataset("me/coco-regions")' in said and "The images are included" in said


def _uploaded(hub: StubHub) -> list[set[str]]:
    return [set(paths) for paths in hub.uploaded]


def test_the_build_is_sent_once_and_a_rebuild_replaces_its_stale_shards(
    coco_build, hub, tmp_path, capsys
):
    folder, sample = coco_build
    assert _publish(folder, "--embed-images", "--private") == 0
    assert _uploaded(hub) == [_build_files(folder)]  # exactly the build's files, one commit
    assert hub.repos["me/coco-regions"].private
    assert _publish(folder, "--embed-images") == 0  # the same build again
    assert len(hub.uploaded) == 1
    assert "is up to date: nothing to upload" in capsys.readouterr().out

    rebuilt = tmp_path / "rebuilt"  # the same source in 3 shards: every shard name changes
    builder = CocoBuilder(sample.annotations, sample.images)
    run_build(builder, BuildOptions(rebuilt, name=folder.name, shards=3, progress=False))
    assert main(["publish", str(rebuilt), "--repo", "me/coco-regions", "--embed-images"]) == 0
    assert len(hub.uploaded) == 2  # one more commit, holding the whole change
    commit = hub.commits["me/coco-regions"]["main"][-1]
    old = {p for p in _build_files(folder) if p.startswith("data/")}
    assert set(commit.deleted) == old
    remote = set(hub.files("me/coco-regions", "main"))
    assert remote == _build_files(rebuilt) | {".gitattributes"} & remote


def test_the_token_appears_in_nothing_printed_or_written(coco_build, hub, capsys):
    folder, _ = coco_build
    assert _publish(folder, "--embed-images", "--revision", "v1") == 0  # a branch of its own
    said = capsys.readouterr()
    assert TOKEN not in said.out + said.err
    for path in folder.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    stored = hub.files("me/coco-regions", "v1")
    assert set(stored) >= _build_files(folder)
    assert all(TOKEN.encode() not in data for data in stored.values())
    assert all(TOKEN not in c.title + c.message for c in hub.commits["me/coco-regions"]["v1"])
    assert {r.token for r in hub.requests if r.method == "POST"} == {TOKEN}  # it was used


def _strings(value: object) -> list[str]:
    """Every string in a row, nested ones included."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return []


def test_nothing_published_names_a_folder_of_the_publishers_machine(ray_cluster, hub, tmp_path):
    sample = write_coco_sample(tmp_path / "src", num_images=4, seed=5, draw=True)
    sorted(sample.images.iterdir())[0].unlink()  # quarantined with a reason naming its path
    folder = tmp_path / "coco"
    run_build(CocoBuilder(sample.annotations, sample.images), BuildOptions(folder, progress=False))
    local = str(tmp_path)
    built = [folder / "manifest.json", *(folder / "quarantine").iterdir()]
    assert all(local in path.read_text() for path in built)  # the build's own copies name it
    assert _publish(folder, "--embed-images") == 0
    stored = hub.files("me/coco-regions", "main")
    for path, data in stored.items():
        if path.endswith(".parquet"):
            rows = pq.read_table(pa.BufferReader(data)).to_pylist()
            assert not [text for text in _strings(rows) if local in text], path
        else:
            assert local.encode() not in data, path
    manifest = json.loads(stored["manifest.json"])
    assert manifest["image_root"] == "val2017"  # named from the folder the sources share
    assert manifest["source_files"][0]["path"] == "annotations/instances_val2017.json"


def test_a_publish_cut_off_during_its_uploads_says_why_and_resumes(coco_build, hub, capsys):
    folder, _ = coco_build
    put, attempts = hub._h_lfs_put, itertools.count()

    def drop_all_but_the_first(request):  # the Hub's message echoes the token, as errors may
        if next(attempts) >= 1:
            raise _HubError(400, f"connection reset while serving {TOKEN}")
        return put(request)

    hub._h_lfs_put = drop_all_but_the_first
    assert _publish(folder, "--embed-images") == 1
    said = capsys.readouterr()
    assert "connection reset while serving ***" in said.err  # the reason, scrubbed
    assert "rerun the same command" in said.err and "Traceback" not in said.err
    assert TOKEN not in said.out + said.err
    arrived = list(hub.lfs_puts)
    assert len(arrived) == 1 and hub.uploaded == []
    hub._h_lfs_put = put
    assert _publish(folder, "--embed-images") == 0
    assert len(hub.lfs_puts) == len(set(hub.lfs_puts)) > 1  # what arrived was not sent again
    assert _uploaded(hub) == [_build_files(folder)]


def test_a_token_the_hub_refuses_is_named_as_the_problem(coco_build, hub, monkeypatch, capsys):
    folder, _ = coco_build
    monkeypatch.setenv("HF_TOKEN", "hf_notthetoken0123456789")
    assert _publish(folder, "--embed-images") == 1
    said = capsys.readouterr().err
    assert "the Hub refused the token: set HF_TOKEN" in said and "rerun the same" not in said
    assert "hf_notthetoken0123456789" not in said


def test_private_is_refused_for_a_public_repository_that_exists(coco_build, hub, capsys):
    folder, _ = coco_build
    hub.add_repo("me/coco-regions", private=False)
    assert _publish(folder, "--embed-images", "--private") == 2
    assert "exists and is public" in capsys.readouterr().err
    assert hub.uploaded == [] and not hub.repos["me/coco-regions"].private


def test_a_vcr_build_is_refused_without_the_flag_and_the_card_records_it(
    ray_cluster, tmp_path, hub, capsys
):
    sample = write_vcr_sample(tmp_path / "vcr", num_images=2, questions_per_image=1, seed=2)
    folder = tmp_path / "vcr-built"
    run_build(VcrBuilder(sample.root, sample.images), BuildOptions(folder, progress=False))
    assert _publish(folder, "--embed-images") == 2
    assert "do not allow redistribution" in capsys.readouterr().err
    assert hub.uploaded == []
    assert _publish(folder, "--embed-images", "--accept-restricted-licenses") == 0
    card = hub.files("me/coco-regions", "main")["README.md"].decode()
    assert "Published with `--accept-restricted-licenses`" in card and "`vcr`" in card
    header = DatasetCard(card).data  # VCR's own terms: the Hub asks for a name and a link
    assert (header.license, header.license_name, header.license_link) == (
        "other", "terms-of-the-sources", "README.md"
    )  # fmt: skip


LOAD = """
import sys
from datasets import load_dataset
from regionkit.catalog.schema import FEATURES
ds = load_dataset(sys.argv[1])
assert all(ds[split].features == FEATURES for split in ds), "features differ"
print({split: ds[split].num_rows for split in ds})
print(type(ds[next(iter(ds))].features["image"]).__name__)
print(sorted({ds[split][i]["image"].size for split in ds for i in range(ds[split].num_rows)}))
"""


def test_the_published_dataset_loads_in_a_fresh_process_without_the_images(
    coco_build, hub, tmp_path
):
    from huggingface_hub import snapshot_download

    folder, sample = coco_build
    assert _publish(folder, "--embed-images") == 0
    shutil.rmtree(sample.images)  # the original image folder is gone
    local = snapshot_download(
        "me/coco-regions",
        repo_type="dataset",
        local_dir=tmp_path / "down",
        cache_dir=tmp_path,
    )
    done = subprocess.run(
        [sys.executable, "-c", LOAD, local], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    counts, feature, sizes = done.stdout.strip().splitlines()[-3:]
    manifest = json.loads((folder / "manifest.json").read_text())
    assert eval(counts) == {name: s["rows"] for name, s in manifest["splits"].items()}
    assert feature == "Image" and len(eval(sizes)) >= 1
    assert main(["inspect", local]) == 0  # the published copy checks out as the build did


def test_a_publish_cut_off_before_its_commit_resends_nothing_that_arrived(coco_build, hub, capsys):
    folder, _ = coco_build
    commit = hub._h_commit

    def cut_off(request):  # the large files are up; the connection drops before the commit
        hub._h_commit = commit
        raise _HubError(400, "the client went away")

    hub._h_commit = cut_off
    assert _publish(folder, "--embed-images") == 1
    assert "rerun the same command" in capsys.readouterr().err
    arrived = list(hub.lfs_puts)
    assert arrived and hub.uploaded == []
    assert _publish(folder, "--embed-images") == 0
    assert hub.lfs_puts == arrived  # no large file sent twice
    assert _uploaded(hub) == [_build_files(folder)]


def test_embedding_is_deterministic_and_skips_what_it_already_embedded(coco_build, capsys):
    folder, _ = coco_build
    assert _publish(folder, "--embed-images", "--dry-run") == 0
    staging = folder / ".publish"
    first = {p.name: p.read_bytes() for p in (staging / "data").iterdir()}
    assert "embedded images into" in capsys.readouterr().out
    assert _publish(folder, "--embed-images", "--dry-run") == 0
    assert "embedded images into" not in capsys.readouterr().out  # nothing changed
    shutil.rmtree(staging)
    assert _publish(folder, "--embed-images", "--dry-run") == 0
    assert {p.name: p.read_bytes() for p in (staging / "data").iterdir()} == first


def test_a_shard_changed_since_its_build_is_refused(coco_build, capsys):
    folder, _ = coco_build
    shard = sorted((folder / "data").glob("*.parquet"))[0]
    pq.write_table(pq.read_table(shard), shard, compression="snappy")  # same rows, new bytes
    assert _publish(folder, "--embed-images", "--dry-run") == 2
    assert "differs from the manifest's" in capsys.readouterr().err


def test_a_rebuild_with_new_shards_leaves_no_stale_embedded_copy(coco_build, tmp_path):
    folder, sample = coco_build
    assert _publish(folder, "--embed-images", "--dry-run") == 0
    kept = (folder / ".publish").rename(tmp_path / "kept")
    shutil.rmtree(folder)
    builder = CocoBuilder(sample.annotations, sample.images)
    run_build(builder, BuildOptions(folder, shards=3, progress=False))
    kept.rename(folder / ".publish")  # rebuilt in place: every shard name changes
    assert _publish(folder, "--embed-images", "--dry-run") == 0
    staged = {p.name for p in (folder / ".publish" / "data").iterdir()}
    assert staged == {Path(p).name for p in _build_files(folder) if p.startswith("data/")}
    record = json.loads((folder / ".publish" / "embedded.json").read_text())
    assert set(record) == {p for p in _build_files(folder) if p.startswith("data/")}


def test_a_missing_image_names_its_shard_row_and_field_and_leaves_no_partial_file(
    coco_build, capsys
):
    folder, sample = coco_build
    victim = sorted(sample.images.iterdir())[0]
    victim.unlink()
    assert _publish(folder, "--embed-images", "--dry-run") == 2
    said = capsys.readouterr().err
    assert f"field image.path: cannot read {victim}" in said and ": row coco:" in said
    assert not [p for p in (folder / ".publish").rglob(".*") if p.is_file()]  # no temporary


def test_a_split_without_rows_is_left_out_of_the_card_so_the_folder_loads(coco_build):
    from datasets import load_dataset

    from regionkit.catalog.schema import ARROW_SCHEMA
    from regionkit.catalog.sources import get_source
    from regionkit.pipelines.card import render_card
    from regionkit.pipelines.storage import sha256_file

    folder, _ = coco_build
    empty = folder / "data" / "extra-00000-of-00001.parquet"
    pq.ParquetWriter(empty, ARROW_SCHEMA, compression="zstd").close()  # as a build writes one
    manifest = json.loads((folder / "manifest.json").read_text())
    entry = {"file": str(empty.relative_to(folder)), "rows": 0, "sha256": sha256_file(empty)}
    manifest["splits"]["extra"] = {"rows": 0, "shards": [{**entry, "bytes": empty.stat().st_size}]}
    (folder / "README.md").write_text(render_card(manifest, [get_source("coco")]))
    assert set(load_dataset(str(folder))) == {"val2017"}
