"""Streaming a JSON list: exact spans and values at any chunk size, flat memory, clear errors."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest

from regionkit.builders.base import BuilderInputError
from regionkit.builders.json_spans import iter_list_spans, iter_object_spans, read_span

ELEMENTS = [
    {"id": 1, "regions": [{"region_id": 7, "phrase": "the clock is green ", "x": -2}]},
    {"id": 2, "regions": [{"id": 3, "phrase": 'a "quoted" {brace}, ] and \\ slash'}]},
    {"id": 3, "regions": [{"phrase": "café “Crème brûlée” 😀", "x": 1.5e2}]},
    {"id": 4, "regions": []},
    [1, [2, {"id": 5}], "x"],
    "a string element with a } inside",
    123456,
    -0.25,
    True,
    None,
    {"id": 6, "text": '{"id": 7, "fake": "element"}, {"id": 8}'},
]


def _write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def _check(path: Path, expected: list, chunk_size: int) -> None:
    spans = list(iter_list_spans(path, chunk_size))
    data = path.read_bytes()
    assert [span.value for span in spans] == expected
    for span in spans:
        raw = data[span.offset : span.offset + span.length]
        assert raw == raw.strip() and json.loads(raw) == span.value
        assert read_span(path, span.offset, span.length) == span.value


@pytest.mark.parametrize("chunk_size", [1, 3, 17, 1 << 20])
@pytest.mark.parametrize(
    "dump",
    [
        lambda v: json.dumps(v, ensure_ascii=False),  # json.dump's spacing, raw UTF-8
        lambda v: json.dumps(v),  # non-ASCII as \\u escapes
        lambda v: json.dumps(v, ensure_ascii=False, separators=(",", ":")),  # compact
        lambda v: "\n " + json.dumps(v, ensure_ascii=False, indent=2) + "\n",  # indented
    ],
    ids=["json-dump", "escaped", "compact", "indented"],
)
def test_values_and_spans_match_the_file_at_any_chunk_size(tmp_path, dump, chunk_size):
    _check(_write(tmp_path / "list.json", dump(ELEMENTS)), ELEMENTS, chunk_size)


def test_elements_whose_opening_repeats_inside_them(tmp_path):
    # the predicted end (the next `{"id":`) falls inside each element: parsed by windows instead
    elements = [{"id": n, "inner": [{"id": n * 10}, {"id": n * 10 + 1}]} for n in range(40)]
    _check(_write(tmp_path / "nested.json", json.dumps(elements)), elements, 5)


def test_empty_lists(tmp_path):
    assert list(iter_list_spans(_write(tmp_path / "a.json", "[]"))) == []
    assert list(iter_list_spans(_write(tmp_path / "b.json", " \n[ \n ]\n"), 1)) == []


def test_memory_stays_at_one_chunk_plus_one_element(tmp_path):
    element = {"image_id": 0, "regions": [{"region_id": k, "phrase": "x" * 40} for k in range(50)]}
    path = tmp_path / "big.json"
    with path.open("w") as file:
        file.write("[" + ", ".join(json.dumps({**element, "image_id": n}) for n in range(2500)))
        file.write("]")
    assert path.stat().st_size > 8 << 20
    tracemalloc.start()
    try:
        count = sum(1 for _ in iter_list_spans(path, chunk_size=256 << 10))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 2500
    assert peak < 2 << 20  # a 256 KiB chunk (held twice while refilling) plus one element


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"the file is empty"),
        ('{"id": 1}', r"the top level is not a list \(it starts with '\{'\)"),
        ('[{"id": 1}, {"id": 2, "regions": [{"x"', r"element 1 at byte 12 is cut off by the end"),
        ('[{"id": 1},', r"the file ends inside the list, before element 1"),
        ('[{"id": 1}', r"the file ends inside the list, before element 1"),
        ('[{"id": 1},]', r"a comma after the last element at byte 11"),
        ('[{"id": 1}] x', r"'x' after the end of the list at byte 12"),
        ('[{"id": 1} {"id": 2}]', r"expected ',' or '\]' after element 0 at byte 11, found '\{'"),
        ('[{"id": 1}, {"id" 2}]', r"element 1 at byte 12: .* at byte 17"),
    ],
)
def test_malformed_files_name_the_file_and_the_byte(tmp_path, text, message):
    path = _write(tmp_path / "region_descriptions.json", text)
    for chunk_size in (2, 1 << 20):
        with pytest.raises(BuilderInputError, match=r"region_descriptions\.json: .*" + message):
            list(iter_list_spans(path, chunk_size))


def test_invalid_utf8_is_located(tmp_path):
    path = tmp_path / "bad.json"
    path.write_bytes(b'[{"id": 1}, {"phrase": "caf\xe9"}]')
    with pytest.raises(BuilderInputError, match=r"element 1 at byte 12: invalid UTF-8 at byte 27"):
        list(iter_list_spans(path))


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 1 << 20])
def test_a_stray_continuation_byte_at_an_element_start_is_an_input_error(tmp_path, chunk_size):
    path = tmp_path / "bad.json"
    path.write_bytes(b'[\xa5"id": 1}, {"id": 2}]')
    with pytest.raises(BuilderInputError, match=r"bad\.json: "):
        list(iter_list_spans(path, chunk_size))


def test_a_file_changed_after_indexing_is_a_clear_error(tmp_path):
    path = _write(tmp_path / "objects.json", '[{"id": 1}, {"id": 2}]')
    span = list(iter_list_spans(path))[1]
    _write(path, '[{"id": 100}, {"id": 2}]')
    with pytest.raises(BuilderInputError, match=r"objects\.json: .* changed after it was indexed"):
        read_span(path, span.offset, span.length)


INSTANCES = {
    "info": None,
    "images": [{"id": 9, "file_name": "a}.jpg"}, {"id": 10, "file_name": "b.jpg"}],
    "licenses": [{"id": 1, "name": "by"}],
    "annotations": ELEMENTS,
    "empty": [],
    "categories": [{"id": 1, "name": "person"}],
}


@pytest.mark.parametrize("chunk_size", [1, 7, 1 << 20])
@pytest.mark.parametrize("indent", [None, 2])
def test_object_members_stream_the_chosen_lists_and_give_the_rest_whole(
    tmp_path, chunk_size, indent
):
    path = _write(tmp_path / "instances.json", json.dumps(INSTANCES, indent=indent))
    data = path.read_bytes()
    members = list(
        iter_object_spans(path, frozenset({"images", "annotations", "empty"}), chunk_size)
    )
    assert [key for key, _ in members] == [
        "info",
        *["images"] * 3,
        "licenses",
        *["annotations"] * (1 + len(ELEMENTS)),
        "empty",
        "categories",
    ]
    assert [key for key, span in members if span is None] == ["images", "annotations", "empty"]
    regrouped: dict = {}
    for key, span in members:
        if span is None:
            continue
        assert json.loads(data[span.offset : span.offset + span.length]) == span.value
        if key in ("images", "annotations"):
            regrouped.setdefault(key, []).append(span.value)
        else:
            regrouped[key] = span.value
    assert regrouped == {k: v for k, v in INSTANCES.items() if k != "empty"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"id": 1}]', "the top level is not an object"),
        ('{"images": [{"id": 1}, ', "the file ends inside 'images'"),
        ('{"images": [], "info": 1', "the file ends inside the top-level object"),
        ('{"images": [] "info": 1}', "expected ',' or '}' after 'images'"),
        ('{"images": []} x', "'x' after the end of the top-level object"),
        ("{images: []}", "expected a key at byte 1"),
        ('{"images": {"id": 1}}', "the value of 'images' is not a list"),
    ],
)
def test_a_damaged_object_is_a_clear_error(tmp_path, text, message):
    path = _write(tmp_path / "bad.json", text)
    with pytest.raises(
        BuilderInputError, match=rf"bad\.json: not a complete JSON object: .*{message}"
    ):
        list(iter_object_spans(path, frozenset({"images"})))
