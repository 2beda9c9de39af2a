"""How many requests and tokens a build may spend, shared by every thread that asks.

A request is taken from the budget before it is sent, so the request count is never exceeded;
tokens are known only once an answer arrives, so the token budget is checked before each
request and may be passed by the answers already in flight. When either runs out, the request
raises `BudgetExhausted`, its shard stops without a receipt, and a rerun resumes it with every
answer received so far served from the cache (cached answers cost nothing).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Protocol


class BudgetExhausted(Exception):
    """The build's request or token budget is spent; finished shards are kept."""


class Budget(Protocol):
    """What the LLM client asks of a budget (in process, or shared by a cluster's workers)."""

    def take_request(self) -> None:
        """Count one request about to be sent; raise `BudgetExhausted` when none is left."""

    def add_tokens(self, tokens: int) -> None:
        """Count the tokens an answer used."""


@dataclass
class BudgetState:
    """Limits (None for none) and what has been spent against them."""

    max_requests: int | None = None
    max_tokens: int | None = None
    requests: int = 0
    tokens: int = 0

    def take_request(self) -> None:
        if self.max_requests is not None and self.requests >= self.max_requests:
            raise BudgetExhausted(f"the request budget ({self.max_requests}) is spent")
        if self.max_tokens is not None and self.tokens >= self.max_tokens:
            raise BudgetExhausted(
                f"the token budget ({self.max_tokens}) is spent ({self.tokens} used)"
            )
        self.requests += 1

    def add_tokens(self, tokens: int) -> None:
        self.tokens += tokens


class LocalBudget:
    """A budget for the threads of one process (a test, a benchmark, a build in process)."""

    def __init__(self, max_requests: int | None = None, max_tokens: int | None = None) -> None:
        self.state = BudgetState(max_requests, max_tokens)
        self._lock = threading.Lock()

    def take_request(self) -> None:
        with self._lock:
            self.state.take_request()

    def add_tokens(self, tokens: int) -> None:
        with self._lock:
            self.state.add_tokens(tokens)

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError(
            "a LocalBudget counts in one process; a pipeline run on Ray needs one shared by "
            "its workers (regionkit.pipelines.ray_budget.SharedBudget)"
        )


class Unlimited:
    """No limits: what a generator spends unless given a budget."""

    def take_request(self) -> None:
        return None

    def add_tokens(self, tokens: int) -> None:
        return None


UNLIMITED = Unlimited()
