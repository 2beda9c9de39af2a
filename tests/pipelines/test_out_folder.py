"""`--out` takes only a new or empty folder or a build of the same inputs; the rest is refused."""

from __future__ import annotations

import json

import pytest

from regionkit.builders.coco import CocoBuilder
from regionkit.builders.samples.refer import write_refer_sample
from regionkit.cli import main


def _refcoco(sample, out) -> list[str]:
    inputs = ["--root", str(sample.root), "--images", str(sample.images)]
    return ["build", "refcoco", *inputs, "--out", str(out), "--no-progress"]


def _coco(sample, out, *options: str) -> list[str]:
    inputs = ["--annotations", str(sample.annotations), "--images", str(sample.images)]
    return ["build", "coco", *inputs, "--out", str(out), "--no-progress", *options]


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_an_input_folder_is_never_the_output(tmp_path, capsys):
    sample = write_refer_sample(tmp_path / "data", num_images=2, draw=False)
    before = _tree(tmp_path)
    for out in (sample.root, sample.images):
        assert main(_refcoco(sample, out)) == 2
        error = capsys.readouterr().err
        assert f"--out {out} is the build's input folder" in error and "Traceback" not in error
    assert _tree(tmp_path) == before


def test_a_folder_with_other_files_is_refused_untouched(coco_sample, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "thesis.tex").write_text("months of work")
    assert main(_coco(coco_sample, out)) == 2
    assert "holds files and is not a regionkit build" in capsys.readouterr().err
    assert _tree(out) == {"thesis.tex": b"months of work"}
    assert main(_coco(coco_sample, out, "--overwrite")) == 2  # not even with --overwrite
    assert _tree(out) == {"thesis.tex": b"months of work"}


def test_a_build_of_other_inputs_is_refused_saying_what_differs(
    ray_cluster, coco_sample, tmp_path, capsys, monkeypatch
):
    out = tmp_path / "built"
    assert main(_coco(coco_sample, out, "--ray-address", ray_cluster)) == 0
    built = _tree(out)
    capsys.readouterr()

    with monkeypatch.context() as patch:  # another argument is refused before any indexing
        patch.setattr(CocoBuilder, "index", lambda self: pytest.fail("indexed"))
        assert main(_coco(coco_sample, out, "--split", "minival")) == 2
    error = capsys.readouterr().err
    assert "holds a build of other inputs: argument 'split' was 'val2017', is 'minival'" in error
    assert "--overwrite" in error

    data = json.loads(coco_sample.annotations.read_text())
    data["annotations"] = data["annotations"][:-1]
    coco_sample.annotations.write_text(json.dumps(data))
    assert main(_coco(coco_sample, out)) == 2
    assert f"source file {coco_sample.annotations.resolve()} has changed" in capsys.readouterr().err

    refer = write_refer_sample(tmp_path / "refer", num_images=2, draw=False)
    assert main(_refcoco(refer, out)) == 2
    assert "source 'coco' is now 'refcoco'" in capsys.readouterr().err
    assert _tree(out) == built  # every refusal left the build as it was

    assert main(_coco(coco_sample, out, "--overwrite", "--ray-address", ray_cluster)) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"]["units"]["annotation"]["in"] == len(data["annotations"])
