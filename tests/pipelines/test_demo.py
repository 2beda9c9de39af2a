"""`regionkit demo`: every source's sample builds, balances, validates and previews."""

from __future__ import annotations

from PIL import Image

from regionkit.catalog.recipes import RECIPES
from regionkit.catalog.sources import SOURCES
from regionkit.cli import main
from regionkit.pipelines.demo import demo_sources, run_demo, run_demo_recipes
from regionkit.train.demo import DEMO_STEPS, train_and_evaluate


def test_every_catalog_source_has_a_demo_sample():
    assert demo_sources() == list(SOURCES)


def test_demo_builds_every_source_with_its_broken_records(ray_cluster, tmp_path):
    results = run_demo(tmp_path, demo_sources(), ray_address=ray_cluster, progress=False)
    assert [r.source for r in results] == demo_sources()
    for result in results:
        counts = result.report.stats.to_json()["units"]
        assert result.valid and result.report.stats.rows > 0, result.source
        assert all(c["in"] == c["out"] + c["quarantined"] for c in counts.values())
        assert sum(c["quarantined"] for c in counts.values()) > 0, result.source
        with Image.open(result.preview) as preview:
            assert preview.width > 0

    built = [tmp_path / r.source for r in results]
    recipes = run_demo_recipes(tmp_path, built, ray_address=ray_cluster, progress=False)
    assert [r.source for r in recipes] == [f"{name} (recipe)" for name in RECIPES]
    for result in recipes:
        counts = result.report.stats.to_json()["units"]["row"]
        assert result.valid and result.report.stats.rows > 0, result.source
        assert counts["in"] == counts["out"] + counts["quarantined"]

    # the demo's last act: a few training steps on the seed recipe, then an evaluation
    seed, grefcoco = tmp_path / "recipes" / "seed", tmp_path / "grefcoco"
    records, scores = train_and_evaluate(tmp_path / "train", seed, "train", grefcoco, "val")
    assert [r["step"] for r in records] == list(range(1, DEMO_STEPS + 1))
    assert scores["grefcoco:val:refer"]["samples"] > 0
    again, _ = train_and_evaluate(tmp_path / "train", seed, "train", grefcoco, "val")
    assert [r["loss"] for r in again] == [r["loss"] for r in records]  # afresh, not resumed


def test_demo_refuses_an_unknown_source(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--sources", "coco,imagenet"]) == 2
    assert "no demo sample for ['imagenet']" in capsys.readouterr().err
