"""An LLM budget shared by every worker of a build: one small Ray actor keeps the count.

Each worker's client asks the actor before each request (a round trip of about a millisecond,
small beside an LLM's answer) and reports the tokens of each answer without waiting.
"""

from __future__ import annotations

from typing import Any

import ray

from regionkit.pipelines.llm.budget import BudgetExhausted, BudgetState


@ray.remote(num_cpus=0)
class _BudgetKeeper:
    def __init__(self, max_requests: int | None, max_tokens: int | None) -> None:
        self.state = BudgetState(max_requests, max_tokens)

    def take_request(self) -> str | None:
        try:
            self.state.take_request()
        except BudgetExhausted as spent:
            return str(spent)
        return None

    def add_tokens(self, tokens: int) -> None:
        self.state.add_tokens(tokens)

    def spent(self) -> dict[str, Any]:
        return {"requests": self.state.requests, "tokens": self.state.tokens}


class SharedBudget:
    """A `Budget` every worker of a Ray cluster shares; make it on the driver, once connected.

    Args:
        max_requests: most requests the build may send (None: no limit).
        max_tokens: most tokens its answers may use (None: no limit).
    """

    def __init__(self, max_requests: int | None, max_tokens: int | None) -> None:
        self._keeper = _BudgetKeeper.remote(max_requests, max_tokens)

    def take_request(self) -> None:
        refusal = ray.get(self._keeper.take_request.remote())
        if refusal is not None:
            raise BudgetExhausted(refusal)

    def add_tokens(self, tokens: int) -> None:
        self._keeper.add_tokens.remote(tokens)

    def spent(self) -> dict[str, Any]:
        """Requests and tokens spent so far."""
        return ray.get(self._keeper.spent.remote())
