"""The `regionkit` command: build, inspect, show and sources, and its errors."""

from __future__ import annotations

import json

from PIL import Image

from regionkit.cli import main


def _build(sample, out) -> int:
    return main(
        [
            "build",
            "coco",
            "--annotations",
            str(sample.annotations),
            "--images",
            str(sample.images),
            "--out",
            str(out),
            "--no-progress",
        ]
    )


def test_build_inspect_show(ray_cluster, coco_sample, tmp_path, capsys):
    out = tmp_path / "built"
    code = _build(coco_sample, out)
    printed = capsys.readouterr().out
    assert code == 0
    assert "images: 6 in = 6 out + 0 quarantined" in printed

    assert main(["inspect", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "val2017: 6 rows" in printed and "valid:" in printed

    preview = tmp_path / "preview.png"
    assert main(["show", str(out), "--n", "3", "--out", str(preview)]) == 0
    with Image.open(preview) as image:
        assert image.width == 3 * 360 and image.height > 100


def test_inspect_reports_a_tampered_shard(ray_cluster, coco_sample, tmp_path, capsys):
    out = tmp_path / "built"
    _build(coco_sample, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["splits"]["val2017"]["shards"][0]["rows"] += 1
    (out / "manifest.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert main(["inspect", str(out)]) == 1
    assert "manifest says 7" in capsys.readouterr().out


def test_missing_annotations_is_a_clear_error_not_a_traceback(tmp_path, capsys):
    code = main(
        [
            "build",
            "coco",
            "--annotations",
            str(tmp_path / "instances_val2017.json"),
            "--images",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and "file not found" in err and "Traceback" not in err


def test_inspect_and_show_refuse_a_folder_that_is_not_a_dataset(tmp_path, capsys):
    assert main(["inspect", str(tmp_path)]) == 2
    assert main(["show", str(tmp_path)]) == 2
    assert "no manifest.json" in capsys.readouterr().err


def test_sources_lists_the_catalog_and_describes_one(capsys):
    assert main(["sources"]) == 0
    listing = capsys.readouterr().out
    assert "coco       ready" in listing and "refcocog" in listing
    assert main(["sources", "refcocog"]) == 0
    described = capsys.readouterr().out
    assert "refs({split_by}).p" in described and "@inproceedings{mao2016refcocog" in described
