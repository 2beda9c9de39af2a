"""The README's pipeline example runs as written, on a dataset built where it expects one."""

from __future__ import annotations

import re
from pathlib import Path

from regionkit.builders.coco import CocoBuilder
from regionkit.builders.samples.coco import write_coco_sample
from regionkit.pipelines.build import BuildOptions, run_build

README = Path(__file__).resolve().parents[2] / "README.md"


def _example(heading: str) -> str:
    section = README.read_text().split(heading, 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def test_the_pipeline_example_runs(ray_cluster, tmp_path, monkeypatch, capsys):
    sample = write_coco_sample(tmp_path / "src", num_images=6, seed=2, draw=False)
    monkeypatch.chdir(tmp_path)
    run_build(
        CocoBuilder(sample.annotations, sample.images),
        BuildOptions(Path("out/coco"), progress=False),
    )
    capsys.readouterr()
    exec(_example("### Pipelines: steps over built datasets"), {"__name__": "readme"})
    printed = capsys.readouterr().out
    assert "built " in printed and "rows: 6 in = 6 out + 0 quarantined" in printed
    assert (tmp_path / "out" / "coco-uncrowded" / "manifest.json").is_file()
