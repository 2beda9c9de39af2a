"""The chat client over HTTP: the real `openai` client against a local stub server.

Each test scripts the server's replies and checks what the client did with them: waited for a
429's `retry-after`, retried 5xx, gave up on a timeout by kind, never retried a refusal, kept
the key out of its messages, and stopped at the budget.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from regionkit.pipelines.llm.budget import BudgetExhausted, LocalBudget
from regionkit.pipelines.llm.cache import ResponseCache, request_key
from regionkit.pipelines.llm.client import ChatClient, Endpoint, LLMError, retry_after
from regionkit.pipelines.llm.stub_server import Reply, StubChatServer

MESSAGES = [{"role": "user", "content": "say hi"}]


def scripted(*replies: Reply) -> Iterator[Reply]:
    """Replies in order, then `{"ok": true}` for ever."""
    yield from replies
    while True:
        yield Reply(json.dumps({"ok": True}))


@pytest.fixture
def server() -> Iterator[StubChatServer]:
    with StubChatServer(lambda body: Reply("{}")) as stub:
        yield stub


def _client(server: StubChatServer, *replies: Reply, **endpoint) -> tuple[ChatClient, list]:
    answers = scripted(*replies)
    server.responder = lambda body: next(answers)
    waits: list[float] = []
    endpoint = {"backoff": 0.01, **endpoint}
    budget = endpoint.pop("budget", LocalBudget())
    client = ChatClient(Endpoint("stub-model", server.base_url, **endpoint), budget, waits.append)
    return client, waits


def test_a_rate_limit_is_waited_out_for_as_long_as_the_server_asks(server):
    client, waits = _client(
        server,
        Reply("slow down", status=429, headers={"retry-after": "7"}),
        Reply("slow down", status=429, headers={"retry-after-ms": "250"}),
    )
    completion = client.complete(MESSAGES, {"temperature": 0})
    assert json.loads(completion.content) == {"ok": True}
    assert waits == [7.0, 0.25]
    counters = client.take_counters()
    assert counters["requests"] == 3 == len(server.requests)
    assert counters["failed_attempts/rate_limited"] == 2
    assert server.requests[0]["model"] == "stub-model"
    assert server.requests[0]["messages"] == MESSAGES


def test_server_errors_are_retried_with_growing_waits_then_given_up_by_kind(server):
    client, waits = _client(server, *[Reply(status=503)] * 3, retries=2)
    with pytest.raises(LLMError) as raised:
        client.complete(MESSAGES, {})
    assert raised.value.kind == "server_error"
    assert "HTTP 503" in str(raised.value) and "3 attempt(s)" in str(raised.value)
    assert len(server.requests) == 3
    assert len(waits) == 2 and waits[1] > waits[0] > 0  # exponential, jittered within 2x


def test_a_request_past_its_timeout_is_a_timeout(server):
    client, _ = _client(server, Reply("{}", delay=2.0), timeout=0.3, retries=0)
    with pytest.raises(LLMError) as raised:
        client.complete(MESSAGES, {})
    assert raised.value.kind == "timeout"


def test_a_refusal_is_not_retried_and_the_key_never_shows(server, monkeypatch):
    secret = "sk-test-0123456789abcdef"
    monkeypatch.setenv("STUB_KEY", secret)
    client, waits = _client(
        server, Reply(f"invalid key {secret}", status=401), api_key_env="STUB_KEY"
    )
    with pytest.raises(LLMError) as raised:
        client.complete(MESSAGES, {})
    assert raised.value.kind == "refused"
    assert len(server.requests) == 1 and waits == []
    assert secret not in str(raised.value) and "***" in str(raised.value)


def test_no_key_for_the_openai_api_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    with pytest.raises(LLMError, match=r"set \$NO_SUCH_KEY_VAR"):
        ChatClient(Endpoint("gpt", api_key_env="NO_SUCH_KEY_VAR"))


def test_the_budget_stops_requests_before_they_are_sent(server):
    client, _ = _client(server, budget=LocalBudget(max_requests=2))
    client.complete(MESSAGES, {})
    client.complete(MESSAGES, {})
    with pytest.raises(BudgetExhausted, match="request budget"):
        client.complete(MESSAGES, {})
    assert len(server.requests) == 2


def test_the_token_budget_counts_the_answers_usage(server):
    budget = LocalBudget(max_tokens=15)
    client, _ = _client(server, budget=budget)
    client.complete(MESSAGES, {})  # the stub counts 10 prompt tokens + the answer's words
    client.complete(MESSAGES, {})
    with pytest.raises(BudgetExhausted, match="token budget"):
        client.complete(MESSAGES, {})
    assert budget.state.tokens == 24  # two answers of 10 + 2


def test_retry_after_reads_seconds_milliseconds_and_dates():
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # in the past
    assert retry_after({"retry-after": "100000"}) == 120.0
    assert retry_after({}) is None


def test_the_cache_keys_requests_by_content_and_survives_a_torn_file(tmp_path):
    cache = ResponseCache(tmp_path)
    request = {"model": "m", "messages": MESSAGES, "params": {"temperature": 0.7}}
    key = request_key(request)
    assert key == request_key(json.loads(json.dumps(request)))  # order and copies agree
    assert key != request_key({**request, "params": {"temperature": 0.0}})
    assert cache.get(key) is None
    cache.put(key, {"content": "x"})
    assert cache.get(key) == {"content": "x"}
    cache.path(key).write_text('{"key": "')  # a torn write from a crashed disk
    assert cache.get(key) is None
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key}.json"]


def test_many_writers_of_one_answer_never_show_a_reader_half_of_it(tmp_path):
    cache = ResponseCache(tmp_path)
    key = request_key({"model": "m", "messages": MESSAGES})
    answer = {"content": "x" * 200_000}  # large enough that a torn write would be seen
    seen: list[object] = []

    def write_and_read(_: int) -> None:
        for _ in range(20):
            cache.put(key, answer)
            seen.append(cache.get(key))

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write_and_read, range(8)))
    assert len(seen) == 160 and all(value == answer for value in seen)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [f"{key}.json"]
