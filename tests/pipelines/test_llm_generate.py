"""The generation step with an LLM: the real `openai` client against a local stub server.

Answers that follow the schema reach rows; an invalid answer is asked again once with what was
wrong, then quarantined with both answers; a rerun is served from the cache (the server counts
no new request); a budget that runs out mid-build stops it with exit code 3, and the rerun
asks only what was not asked before.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from PIL import Image
from pycocotools import mask as mask_api

from regionkit.builders.base import Built
from regionkit.catalog.records import make_region, make_row
from regionkit.cli import EXIT_BUDGET, main
from regionkit.pipelines.curation.describe import DescribeRegions
from regionkit.pipelines.curation.views import region_views
from regionkit.pipelines.llm.client import Endpoint
from regionkit.pipelines.llm.generate import LLMGenerator
from regionkit.pipelines.llm.stub_server import Reply, StubChatServer

FILLER = (
    "stands out clearly in this scene, with a shape and surface that are easy to make out, "
    "and it sits naturally among the things around it in a calm and ordinary setting."
)


def _category(body: dict[str, Any]) -> str:
    """The category the request's facts give (the prompt shows `category: "dog"`)."""
    content = body["messages"][1]["content"]
    text = content if isinstance(content, str) else content[0]["text"]  # text, then images
    return re.search(r'category: "([^"]+)"', text).group(1)


def describing(body: dict[str, Any]) -> Reply:
    """A valid description of whatever the request asks about."""
    return Reply(json.dumps({"description": f"The {_category(body)} {FILLER}"}))


def _row() -> dict[str, Any]:
    regions = [
        make_region("1", [10, 10, 120, 100], category="dog", attributes=["brown"]),
        make_region("2", [150, 20, 300, 200], category="chair"),
        make_region("3", [20, 120, 100, 230], category="person"),
    ]
    return make_row(
        source="coco",
        split="val2017",
        native_key="7",
        image_path="/images/7.jpg",
        width=320,
        height=240,
        builder="coco",
        builder_version="1",
        source_files=[],
        image_keys=["coco:7"],
        regions=regions,
    )


@pytest.fixture
def server():
    with StubChatServer(describing) as stub:
        yield stub


def _step(server: StubChatServer, cache: Path, **endpoint: Any) -> DescribeRegions:
    endpoint = {"backoff": 0.01, **endpoint}
    generator = LLMGenerator(Endpoint("stub-model", server.base_url, **endpoint), cache)
    return DescribeRegions(generator, per_row=3)


def test_schema_answers_become_turns_with_their_provenance(server, tmp_path):
    result = _step(server, tmp_path / "cache").process([Built(_row(), {"row": 1})])
    assert result.rejected == []
    (row,) = [b.row for b in result.rows]
    assert row["task"] == "detailed_caption"
    assert row["provenance"]["generator"] == "openai:stub-model"
    assert row["provenance"]["prompt_id"] == "describe_region.v1"
    answers = {m["content"].split()[1] for m in row["messages"] if m["role"] == "assistant"}
    assert answers == {"dog", "chair", "person"}
    asked = {re.search(r"<region(\d)>", m["content"]).group(1) for m in row["messages"][::2]}
    assert asked == {"0", "1", "2"}
    body = server.requests[0]
    assert body["response_format"]["type"] == "json_schema"
    assert body["response_format"]["json_schema"]["schema"] == DescribeRegions.schema
    assert not re.search(r"\d\d", body["messages"][1]["content"])  # no coordinates reach it
    assert result.counters["requests"] == 3 and result.counters["cache_hits"] == 0


def test_an_invalid_answer_is_asked_again_with_what_was_wrong(server, tmp_path):
    tries: Counter[str] = Counter()

    def malformed_first(body: dict[str, Any]) -> Reply:
        category = _category(body)
        tries[category] += 1
        if category == "chair" and tries[category] == 1:
            return Reply('{"description": "The chair')  # cut off mid-JSON
        return describing(body)

    server.responder = malformed_first
    result = _step(server, tmp_path / "cache").process([Built(_row(), {"row": 1})])
    assert result.rejected == []
    assert result.counters["answers_retried_with_problems"] == 1
    (retry,) = [b for b in server.requests if len(b["messages"]) == 4]
    assert retry["messages"][2] == {"role": "assistant", "content": '{"description": "The chair'}
    assert "not JSON" in retry["messages"][3]["content"]


def test_answers_naming_regions_that_do_not_exist_are_quarantined_with_both(server, tmp_path):
    def inventing(body: dict[str, Any]) -> Reply:
        if _category(body) == "dog":
            return Reply(json.dumps({"description": f"The dog {FILLER} It faces <region9>."}))
        return describing(body)

    server.responder = inventing
    result = _step(server, tmp_path / "cache").process([Built(_row(), {"row": 1})])
    (rejected,) = result.rejected
    assert rejected.code == "invalid_answer"
    assert rejected.key == "coco:val2017:7 region 0"
    assert rejected.units == {}  # the row goes on with its other regions
    assert "<region9> is not one of the image's regions" in rejected.reason
    assert len(rejected.record["answers"]) == 2
    (row,) = [b.row for b in result.rows]
    assert "<region9>" not in json.dumps(row["messages"])
    assert len(row["messages"]) == 4


def test_failures_end_in_quarantine_by_kind(server, tmp_path):
    def failing(body: dict[str, Any]) -> Reply:
        category = _category(body)
        if category == "dog":
            return Reply(status=500)
        if category == "chair":
            return Reply("{}", delay=1.5)
        return Reply(json.dumps({"description": "A person."}), finish_reason="length")

    server.responder = failing
    step = _step(server, tmp_path / "cache", retries=1, timeout=0.5)
    result = step.process([Built(_row(), {"row": 1})])
    codes = {r.key: (r.code, dict(r.units)) for r in result.rejected}
    assert codes == {
        "coco:val2017:7 region 0": ("llm_server_error", {}),
        "coco:val2017:7 region 1": ("llm_timeout", {}),
        "coco:val2017:7 region 2": ("invalid_answer", {}),
        "coco:val2017:7": ("no_description", {"row": 1}),  # nothing valid was left of it
    }
    assert result.rows == []
    assert result.counters["failed_attempts/server_error"] == 2


def test_a_rerun_is_served_from_the_cache(server, tmp_path):
    cache = tmp_path / "cache"
    first = _step(server, cache).process([Built(_row(), {"row": 1})])
    asked = len(server.requests)
    again = _step(server, cache).process([Built(_row(), {"row": 1})])
    assert len(server.requests) == asked
    assert again.counters["cache_hits"] == asked and again.counters["requests"] == 0
    assert [b.row for b in again.rows] == [b.row for b in first.rows]


def test_a_spent_budget_stops_the_build_and_a_rerun_asks_only_the_rest(
    ray_cluster, coco_dataset, server, tmp_path, capsys, monkeypatch
):
    secret = "sk-never-written-0123456789"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    out, cache = tmp_path / "fine", tmp_path / "cache"
    command = ["recipe", "fine_grained", "--input", str(coco_dataset), "--out", str(out)]
    command += ["--llm", "openai:stub-model", "--llm-base-url", server.base_url]
    command += ["--llm-cache", str(cache), "--no-progress", "--max-in-flight", "1"]
    assert main([*command, "--max-requests", "5"]) == EXIT_BUDGET
    said = capsys.readouterr()
    assert "budget is spent" in said.err and secret not in said.out + said.err
    first = [json.dumps(b["messages"]) for b in server.requests]
    assert len(first) == 5

    assert main(command) == 0
    asked = [json.dumps(b["messages"]) for b in server.requests]
    assert len(asked) == len(set(asked))  # nothing was asked twice
    manifest = json.loads((out / "manifest.json").read_text())
    (step,) = [s for s in manifest["recipe"]["steps"] if s["name"] == "describe_regions"]
    assert step["params"]["generator"] == {
        "name": "openai:stub-model",
        "base_url": server.base_url,
        "model": "stub-model",
    }
    # each distinct request was asked once: by a shard that finished (counted in its receipt)
    # or by one the budget stopped, whose rerun then found the answer cached
    counters = step["counters"]
    assert counters["requests"] + counters.get("cache_hits", 0) == len(asked)
    written = [p.read_bytes() for p in [*out.rglob("*"), *cache.rglob("*")] if p.is_file()]
    assert written and not any(secret.encode() in data for data in written)

    again = tmp_path / "again"  # a whole new build of the same inputs: every answer cached
    assert main([*command[:5], str(again), *command[6:]]) == 0
    assert len(server.requests) == len(asked)
    said = capsys.readouterr()
    assert "cache_hits" in said.out and secret not in said.out + said.err
    assert _rows_messages(again) == _rows_messages(out)


def _rows_messages(dataset: Path) -> list[Any]:
    files = sorted((dataset / "data").glob("*.parquet"))
    return [row["messages"] for f in files for row in pq.read_table(f).to_pylist()]


def _decoded(url: str) -> Image.Image:
    assert url.startswith("data:image/jpeg;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB")


def _red(pixel: tuple[int, int, int]) -> bool:
    r, g, b = pixel
    return r > 180 and g < 90 and b < 90


def test_with_image_a_vision_endpoint_sees_the_region_outlined_and_a_crop(server, tmp_path):
    picture = tmp_path / "7.jpg"
    Image.new("RGB", (320, 240), (90, 140, 200)).save(picture, quality=95)
    row = _row()
    row["image"] = {"path": str(picture), "bytes": None}
    row["regions"] = [make_region("1", [40, 60, 200, 100], category="dog")]  # wide, box only
    step = DescribeRegions(
        LLMGenerator(Endpoint("stub-model", server.base_url), tmp_path / "cache"), with_image=True
    )
    (built,) = step.process([Built(row, {"row": 1})]).rows
    assert built.row["messages"]
    text, whole, crop = server.requests[0]["messages"][1]["content"]
    assert text["type"] == "text" and "dog" in text["text"]
    whole, crop = _decoded(whole["image_url"]["url"]), _decoded(crop["image_url"]["url"])
    assert whole.size == (320, 240)
    assert _red(whole.getpixel((150, 60))) and _red(whole.getpixel((40, 80)))  # top, left edges
    assert not _red(whole.getpixel((60, 150))) and not _red(whole.getpixel((120, 80)))
    assert crop.size == (512, 146)  # (0, 40, 280, 120): twice the box, clipped, scaled to 512


def test_a_masked_region_is_outlined_along_its_mask(tmp_path):
    picture = tmp_path / "m.jpg"
    Image.new("RGB", (320, 240), (90, 140, 200)).save(picture, quality=95)
    mask = np.zeros((240, 320), dtype=np.uint8, order="F")
    mask[60:100, 40:200] = 1  # rows are y, columns are x
    rle = mask_api.encode(mask)
    rle["counts"] = rle["counts"].decode("ascii")
    region = make_region("1", [0, 0, 320, 240], rle, "dog")  # the box is not what is drawn
    whole, _ = region_views({"path": str(picture), "bytes": None}, region)
    whole = Image.open(io.BytesIO(whole)).convert("RGB")
    assert _red(whole.getpixel((150, 60))) and _red(whole.getpixel((40, 80)))
    assert not _red(whole.getpixel((120, 80))) and not _red(whole.getpixel((2, 2)))
    assert not _red(whole.getpixel((60, 150)))
