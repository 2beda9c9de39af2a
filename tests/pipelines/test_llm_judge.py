"""The caption judge: the real `openai` client against a local stub server. A verdict in range
becomes a score in [0, 1]; one out of range is asked for again with what was wrong; a failed
endpoint gives no verdict rather than a score; a rerun is served from the cache; and
`regionkit eval --judge` scores a saved model's free-text answers with it."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from regionkit.cli import main
from regionkit.pipelines.llm.client import Endpoint
from regionkit.pipelines.llm.judge import CaptionJudge
from regionkit.pipelines.llm.stub_server import Reply, StubChatServer
from regionkit.train.evaluate import JudgeCase
from tests.train.test_evaluate import _dialogue_row, saved_model_and_split


def grading(body: dict[str, Any]) -> Reply:
    """8 for "a cat"; for "twelve", 12 until told what was wrong, then 3; 500 for "boom"."""
    said = body["messages"][1]["content"]
    answer = re.search(r"Model's answer:(.*)", said).group(1).strip()
    if answer == "boom":
        return Reply(status=500)
    corrected = len(body["messages"]) > 2
    score = {"a cat": 8, "twelve": 3 if corrected else 12}.get(answer, 10)
    return Reply(json.dumps({"score": score, "reason": "compared with the reference"}))


def _judge(server: StubChatServer, cache) -> CaptionJudge:
    endpoint = Endpoint("judge", base_url=server.base_url, retries=0, max_in_flight=4)
    return CaptionJudge(endpoint, cache)


def test_verdicts_become_scores_and_a_rerun_asks_nothing(tmp_path):
    cases = [
        JudgeCase("describe <region1> .", "a cat sits on the chair", "a cat"),
        JudgeCase("describe <region0> .", "a dog", "twelve"),
        JudgeCase("describe <region0> .", "a dog", "boom"),
    ]
    with StubChatServer(grading) as server:
        judge = _judge(server, tmp_path / "cache")
        assert judge(cases) == [pytest.approx(7 / 9), pytest.approx(2 / 9), None]
        counters = judge.take_counters()
        assert counters["requests"] == 4  # the out-of-range verdict was asked for again
        assert counters["verdicts_failed/server_error"] == 1
        corrections = [b for b in server.requests if len(b["messages"]) > 2]
        assert "whole number from 1 to 10, got 12" in corrections[0]["messages"][-1]["content"]
        asked = len(server.requests)
        again = _judge(server, tmp_path / "cache")
        assert again(cases[:2]) == [pytest.approx(7 / 9), pytest.approx(2 / 9)]
        assert len(server.requests) == asked  # both from the cache


def test_regionkit_eval_has_free_text_answers_judged(tmp_path, capsys):
    model_dir, data = saved_model_and_split(tmp_path, _dialogue_row(tmp_path))
    out = tmp_path / "results.json"
    command = ["eval", "--model", str(model_dir), "--data", str(data), "--max-new-tokens", "4"]
    assert main([*command, "--kinds", "caption"]) == 0
    assert "1 free-text answers not scored" in capsys.readouterr().err
    with StubChatServer(grading) as server:
        judge = ["--judge", "openai:judge", "--llm-base-url", server.base_url]
        cache = ["--llm-cache", str(tmp_path / "cache"), "--out", str(out)]
        assert main([*command, *judge, *cache]) == 0
    results = json.loads(out.read_text())
    assert results["data:val:caption"] == {"judge": 1.0, "samples": 1, "unjudged": 0}
    assert sorted(results) == ["data:val:caption", "data:val:choice", "data:val:segment"]
    assert main([*command, "--kinds", "refer,colour"]) == 2
    assert "--kinds ['colour']" in capsys.readouterr().err
