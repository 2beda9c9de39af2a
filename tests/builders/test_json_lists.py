"""Big JSON lists read in bulk: the scan finds exactly the elements the element walk finds, runs
parse to the same values, and anything irregular is left to the walk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regionkit.builders.instances import _index_walked, _read_walked, index_instances
from regionkit.builders.instances import read_instances as read_instances_bulk
from regionkit.builders.json_lists import IrregularList, parse_run
from regionkit.builders.json_spans import iter_object_spans

LISTS = frozenset({"images", "annotations"})

TRICKY_STRINGS = [
    'a "quoted" word',
    "brackets ] } [ { inside",
    "a backslash \\",  # ends in an escaped backslash: the next quote is real
    'two backslashes then a quote \\\\"',
    "\\\\\\",
    "unicode: caf\u00e9 \u4e2d\u6587 \U0001f600 ]}",
    "",
]


def _tricky_file(path: Path, indent: int | None) -> Path:
    """An instances-shaped file whose strings hold every byte the scan must not mistake."""
    annotations = [
        {
            "id": k,
            "image_id": k % 3,
            "note": TRICKY_STRINGS[k % len(TRICKY_STRINGS)],
            "segmentation": [[1.5, 2.0, 3.0, 4.0, 5.0, 6.0]]
            if k % 2
            else {"counts": "0[", "x": []},
            "nested": [[[]], {"a": [{}]}],
        }
        for k in range(40)
    ]
    data = {
        "info": {"description": '[not a list] {"images": []}'},
        "images": [{"id": i, "file_name": f"{TRICKY_STRINGS[i]}.jpg"} for i in range(3)],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "cup"}],
    }
    path.write_text(json.dumps(data, indent=indent, ensure_ascii=indent is None))
    return path


def _walked_elements(path: Path) -> dict[str, list[tuple[int, int, object]]]:
    """What the element walk (the reference) finds in each list."""
    found: dict[str, list[tuple[int, int, object]]] = {key: [] for key in LISTS}
    for key, span in iter_object_spans(path, LISTS):
        if key in LISTS and span is not None:
            found[key].append((span.offset, span.offset + span.length, span.value))
    return found


@pytest.mark.parametrize("indent", [None, 1])
@pytest.mark.parametrize("chunk_size", [1, 2, 3, 7, 64, 1 << 20])
def test_the_scan_finds_the_elements_the_walk_finds(tmp_path, indent, chunk_size):
    path = _tricky_file(tmp_path / "instances.json", indent)
    walked = _walked_elements(path)
    scanned = dict(iter_object_spans(path, LISTS, chunk_size, scan=True))
    for key in LISTS:
        scan = scanned[key]
        assert list(zip(scan.starts.tolist(), scan.ends.tolist(), strict=True)) == [
            (start, end) for start, end, _ in walked[key]
        ]
        for run_bytes in (1, 50, 400, 1 << 20):
            runs = scan.runs(run_bytes)
            values = [value for run in runs for value in parse_run(str(path), run)]
            assert values == [value for _, _, value in walked[key]]
            assert [run.first for run in runs] == [0, *_cumulative(len(r.starts) for r in runs)]


def _cumulative(counts) -> list[int]:
    total, out = 0, []
    for count in counts:
        total += count
        out.append(total)
    return out[:-1]


def test_an_empty_list_is_one_empty_run(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text('{"images": [ ], "annotations": [\n], "categories": []}')
    scanned = dict(iter_object_spans(path, LISTS, scan=True))
    assert [parse_run(str(path), run) for run in scanned["annotations"].runs(8)] == [[]]


@pytest.mark.parametrize(
    "annotations",
    [
        '[{"id": 1}, 5, {"id": 2}]',  # a scalar between objects: the scan cannot see it
        '[7, {"id": 1}, {"id": 2}]',  # ... before them
        '[{"id": 1}, {"id": 2}, "x"]',  # ... after them
        '[{"id": 1} {"id": 2}]',  # no comma
        '[{"id": 1}x{"id": 2}]',  # something else where the comma belongs
        '[{"id": 1}, {"id": 2},]',  # a trailing comma
        '[{"id": 1}, {"id": 2]]',  # a bracket of the wrong kind
    ],
)
def test_what_the_scan_cannot_see_is_refused_by_the_parse(tmp_path, annotations):
    path = tmp_path / "instances.json"
    path.write_text(f'{{"images": [], "annotations": {annotations}, "categories": []}}')
    scan = dict(iter_object_spans(path, LISTS, scan=True))["annotations"]
    for run_bytes in (1, 1 << 20):
        assert any(parse_run(str(path), run) is None for run in scan.runs(run_bytes))


def test_a_list_cut_off_by_the_end_of_the_file_is_irregular(tmp_path):
    path = tmp_path / "instances.json"
    path.write_text('{"images": [], "annotations": [{"id": 1}, {"id": 2')
    with pytest.raises(IrregularList, match="ends inside 'annotations'"):
        dict(iter_object_spans(path, LISTS, scan=True))


def _instances_file(path: Path, annotations: str) -> Path:
    images = '[{"id": 1, "file_name": "a.jpg", "width": 4, "height": 3}]'
    categories = '[{"id": 1, "name": "cup"}]'
    path.write_text(
        f'{{"images": {images}, "annotations": {annotations}, "categories": {categories}}}'
    )
    return path


class _Recording:
    """`Tasks` run in process, remembering how many calls each map had."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def map(self, function, calls):
        self.calls.append(len(calls))
        return [function(*arguments) for arguments in calls]


def test_a_regular_file_is_planned_in_runs_as_tasks_and_never_walked(tmp_path, monkeypatch):
    anns = ",".join(f'{{"id": {k}, "image_id": 1, "category_id": 1}}' for k in range(50))
    path = _instances_file(tmp_path / "instances.json", f"[{anns}]")
    reference = _index_walked(path, 64)
    kept = _read_walked(path, {3, 4})
    monkeypatch.setattr("regionkit.builders.instances._index_walked", pytest.fail, raising=True)
    monkeypatch.setattr("regionkit.builders.instances._read_walked", pytest.fail, raising=True)
    tasks = _Recording()
    index = index_instances(path, tasks, chunk_size=64)
    assert tasks.calls and tasks.calls[0] > 10  # one call per run of about 64 bytes
    assert index.images == reference.images and index.problems == reference.problems
    assert _listed(index.spans) == _listed(reference.spans)
    assert read_instances_bulk(path, {3, 4}).annotations == kept.annotations


def test_an_irregular_file_is_walked_and_its_records_described_in_place(tmp_path):
    anns = '[{"id": 1, "image_id": 1, "category_id": 1}, 5, {"id": 2, "image_id": 1}]'
    path = _instances_file(tmp_path / "instances.json", anns)
    index = index_instances(path, chunk_size=16)
    assert [(p.key, p.code, p.reason) for p in index.problems] == [
        (
            "annotation #1",
            "malformed_annotation",
            "instances.json: annotations[1]: record is an integer, not an object",
        )
    ]
    assert index.spans[1][:, 0].tolist() == [1, 2]


def _listed(spans):
    return {image_id: rows.tolist() for image_id, rows in spans.items()}
