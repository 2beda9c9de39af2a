"""Planning from an instances file: streamed, bounded in memory, the same records as a full read."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import orjson

from regionkit.builders.instances import index_instances, read_instances
from regionkit.builders.samples.coco import add_bad_coco_records

CHUNK = 64 << 10


def _instances(path: Path, annotations: int, polygon_numbers: int) -> Path:
    """An instances file whose size grows with the polygons while the counts stay the same."""
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(50)]
    polygon = [float(v % 400) + 0.25 for v in range(polygon_numbers)]
    anns = [
        {
            "id": k,
            "image_id": k % 50,
            "category_id": 1,
            "bbox": [1, 2, 3, 4],
            "segmentation": [polygon],
        }
        for k in range(annotations)
    ]
    data = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "cup"}]}
    path.write_bytes(orjson.dumps(data))
    return path


def _peak_bytes(path: Path) -> int:
    tracemalloc.start()
    try:
        index_instances(path, chunk_size=CHUNK)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_planning_memory_follows_the_annotation_count_not_the_file_size(tmp_path):
    small = _instances(tmp_path / "small.json", 1000, 60)
    large = _instances(tmp_path / "large.json", 1000, 2400)
    assert large.stat().st_size > 30 * small.stat().st_size
    small_peak, large_peak = _peak_bytes(small), _peak_bytes(large)
    # json.load would hold several times the file; the index holds a chunk (a run of
    # annotations parsed in process, as tasks do) and the spans
    assert large_peak < large.stat().st_size / 5
    assert large_peak < 2 * small_peak + 4 * CHUNK


def test_the_index_plans_what_a_full_read_keeps_and_describes_the_rest(coco_sample):
    add_bad_coco_records(coco_sample)
    path = coco_sample.annotations
    full, index = read_instances(path), index_instances(path, chunk_size=97)
    assert index.images == full.images and index.categories == full.categories
    data = path.read_bytes()
    planned = {
        ann_id: json.loads(data[offset : offset + length])
        for spans in index.spans.values()
        for ann_id, offset, length, _ in spans
    }
    # the driver plans by id and image only: category problems are found by the workers
    worker_checked = {p.record["id"] for p in full.problems if p.code == "unknown_category"}
    worker_checked |= {
        p.record["id"]
        for p in full.problems
        if p.code == "malformed_annotation" and "category_id" in p.reason
    }
    assert set(planned) == set(full.annotations) | worker_checked
    assert all(planned[i] == full.annotations[i] for i in full.annotations)
    for image_id, spans in index.spans.items():
        assert [s[0] for s in spans] == sorted(s[0] for s in spans)  # id order
        assert {planned[s[0]]["image_id"] for s in spans} == {image_id}
    planning = {(p.key, p.code) for p in index.problems}
    assert planning == {
        (p.key, p.code) for p in full.problems if p.record.get("id") not in worker_checked
    }
