"""One structured-output request, answered from the cache when it was asked before.

The cache key is the endpoint's identity (never its key), the messages and the parameters, so
a rerun of a recipe or an evaluation sends only what it has not asked yet.
"""

from __future__ import annotations

import json
from typing import Any

from regionkit.pipelines.llm.cache import ResponseCache, request_key
from regionkit.pipelines.llm.client import ChatClient, Completion
from regionkit.pipelines.llm.tally import Tally


def json_exchange(
    client: ChatClient,
    cache: ResponseCache,
    messages: list[dict[str, Any]],
    params: dict[str, Any],
    tally: Tally,
) -> tuple[Completion, dict[str, Any] | None, list[str]]:
    """The completion, its JSON object (None when it is not one) and what is wrong with it as
    an answer at all (cut off, not JSON); raises `LLMError` when the endpoint fails."""
    key = request_key({**client.endpoint.identity(), "messages": messages, "params": params})
    cached = cache.get(key)
    if cached is not None:
        tally.add("cache_hits")
        completion = Completion.from_json(cached)
    else:
        completion = client.complete(messages, params)
        cache.put(key, completion.to_json())
    if completion.finish_reason not in (None, "stop"):
        return (
            completion,
            None,
            [f"the answer was cut off (finish_reason {completion.finish_reason!r})"],
        )
    try:
        value = json.loads(completion.content)
    except json.JSONDecodeError as error:
        return completion, None, [f"the answer is not JSON ({error.msg} at {error.pos})"]
    if not isinstance(value, dict):
        return completion, None, ["the answer is not a JSON object"]
    return completion, value, []
