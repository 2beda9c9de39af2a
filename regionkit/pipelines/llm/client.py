"""One chat completion at a time through the `openai` client, with our own retries and budget.

The `openai` client retries by itself, but invisibly: here its retries are off and each attempt
is ours, so every request is counted, taken from the budget and waited for by its server's
`retry-after`. What can go wrong is told apart by kind (the report counts them):

- `rate_limited` (429), `server_error` (5xx, 408, 409), `timeout`, `connection`: retried with
  exponential backoff, or after `retry-after`/`retry-after-ms` when the server sends one;
- `refused` (any other 4xx: a bad key, an unknown model, a request the server rejects): not
  retried, it would fail the same way.

The API key is read from the environment where the client is made (a worker) and is scrubbed
from every message this module writes; it is never part of a cached request.
"""

from __future__ import annotations

import email.utils
import os
import random
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import openai

from regionkit.pipelines.llm.budget import UNLIMITED, Budget
from regionkit.pipelines.llm.tally import Tally

RETRYABLE_STATUS = {408, 409, 429}
"""Besides 5xx: statuses a later attempt may get past."""

LONGEST_WAIT_SECONDS = 120.0
"""The longest a `retry-after` is honoured; a server asking for more is asked again then."""


@dataclass(frozen=True)
class Endpoint:
    """An OpenAI-compatible chat endpoint and how to talk to it.

    Attributes:
        model: the model name the server knows.
        base_url: the API root (`http://host:8000/v1` for vLLM, llama.cpp, Ollama); None for
            OpenAI's own.
        api_key_env: the environment variable holding the key (never the key itself).
        timeout: seconds one attempt may take.
        retries: attempts after the first, for the retryable kinds.
        backoff: seconds before the first retry without `retry-after`; doubled each time.
        max_in_flight: requests one worker keeps in flight at once.
    """

    model: str
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 120.0
    retries: int = 4
    backoff: float = 1.0
    max_in_flight: int = 16

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {self.max_in_flight}")
        if self.retries < 0:
            raise ValueError(f"retries must not be negative, got {self.retries}")

    @property
    def generator(self) -> str:
        """How rows name what wrote them: `openai:<model>`."""
        return f"openai:{self.model}"

    def identity(self) -> dict[str, Any]:
        """What makes answers differ: the server and the model (not timeouts, not the key)."""
        return {"base_url": (self.base_url or "").rstrip("/"), "model": self.model}


@dataclass(frozen=True)
class Completion:
    """An answer as the cache keeps it."""

    content: str
    finish_reason: str | None
    prompt_tokens: int
    completion_tokens: int

    def to_json(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "finish_reason": self.finish_reason,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Completion:
        return cls(
            data["content"], data["finish_reason"], data["prompt_tokens"], data["completion_tokens"]
        )


class LLMError(Exception):
    """A request that got no answer after its retries; `kind` says why (the report counts it)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class ChatClient:
    """Chat completions from one endpoint, thread-safe, counting what it does.

    Args:
        endpoint: where to send requests.
        budget: what requests and tokens may be spent.
        sleep: how to wait between attempts (tests pass a recorder).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        budget: Budget = UNLIMITED,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        key = os.environ.get(endpoint.api_key_env)
        if not key and endpoint.base_url is None:
            raise LLMError(
                "refused",
                f"no API key: set ${endpoint.api_key_env} (or give --llm-base-url for a server "
                "that needs none)",
            )
        self.endpoint = endpoint
        self.budget = budget
        self._sleep = sleep
        self._secret = key or None
        self._client = openai.OpenAI(
            api_key=key or "none",  # local servers take any key; the client insists on one
            base_url=endpoint.base_url,
            timeout=endpoint.timeout,
            max_retries=0,
        )
        self._tally = Tally()

    def complete(self, messages: list[dict[str, Any]], params: dict[str, Any]) -> Completion:
        """The answer to `messages`; raises `LLMError` when the retries are spent, and
        `BudgetExhausted` when the budget is."""
        for attempt in range(self.endpoint.retries + 1):
            self.budget.take_request()
            self._tally.add("requests")
            try:
                response = self._client.chat.completions.create(
                    model=self.endpoint.model, messages=messages, **params
                )
            except openai.APIError as error:
                kind, wait = self._failure(error)
                self._tally.add(f"failed_attempts/{kind}")
                if kind == "refused" or attempt == self.endpoint.retries:
                    raise LLMError(kind, self._describe(error, attempt + 1)) from None
                self._sleep(self._delay(attempt) if wait is None else wait)
                continue
            return self._completion(response)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def take_counters(self) -> Counter[str]:
        """What was counted since the last call (requests, tokens, failed attempts by kind)."""
        return self._tally.take()

    def _completion(self, response: Any) -> Completion:
        if not response.choices:
            raise LLMError("empty_answer", "the server answered with no choices")
        choice = response.choices[0]
        usage = response.usage
        prompt_tokens = usage.prompt_tokens if usage is not None else 0
        completion_tokens = usage.completion_tokens if usage is not None else 0
        self.budget.add_tokens(prompt_tokens + completion_tokens)
        self._tally.add("prompt_tokens", prompt_tokens)
        self._tally.add("completion_tokens", completion_tokens)
        return Completion(
            choice.message.content or "", choice.finish_reason, prompt_tokens, completion_tokens
        )

    def _failure(self, error: openai.APIError) -> tuple[str, float | None]:
        """(kind, the server's requested wait or None)."""
        if isinstance(error, openai.APITimeoutError):
            return "timeout", None
        if isinstance(error, openai.APIConnectionError):
            return "connection", None
        if isinstance(error, openai.APIStatusError):
            wait = retry_after(error.response.headers)
            if error.status_code == 429:
                return "rate_limited", wait
            if error.status_code >= 500 or error.status_code in RETRYABLE_STATUS:
                return "server_error", wait
        return "refused", None

    def _delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so workers that failed together retry apart."""
        return self.endpoint.backoff * 2**attempt * (0.5 + random.random() / 2)

    def _describe(self, error: openai.APIError, attempts: int) -> str:
        status = getattr(error, "status_code", None)
        where = self.endpoint.base_url or "the OpenAI API"
        head = f"HTTP {status} from {where}" if status else f"no answer from {where}"
        text = f"{head} after {attempts} attempt(s): {error.message}"
        return text.replace(self._secret, "***") if self._secret else text


def retry_after(headers: Any) -> float | None:
    """The wait a server asks for (`retry-after-ms`, or `retry-after` in seconds or as an HTTP
    date), at most `LONGEST_WAIT_SECONDS`; None when it asks for none."""
    wait = None
    if headers.get("retry-after-ms"):
        try:
            wait = float(headers["retry-after-ms"]) / 1000
        except ValueError:
            wait = None
    if wait is None and headers.get("retry-after"):
        value = headers["retry-after"]
        try:
            wait = float(value)
        except ValueError:
            try:
                wait = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                wait = None
    if wait is None:
        return None
    return min(max(wait, 0.0), LONGEST_WAIT_SECONDS)
