"""An LLM's verdict on a model's free-text answers, for evaluation (`regionkit eval --judge`).

Each answer is scored 1-10 against its reference (prompt `judge_caption.v1`), through the same
client, cache and budget as the recipes' generation: a rerun of an evaluation asks nothing it
asked before. A verdict that is not a score in range is asked for once more; an answer without
a verdict is reported as such, never given a score.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol

from regionkit.pipelines.llm.budget import UNLIMITED, Budget, BudgetExhausted
from regionkit.pipelines.llm.cache import ResponseCache
from regionkit.pipelines.llm.client import ChatClient, Endpoint, LLMError
from regionkit.pipelines.llm.exchange import json_exchange
from regionkit.pipelines.llm.prompts import load_prompt
from regionkit.pipelines.llm.tally import Tally

PROMPT_ID = "judge_caption.v1"
LOWEST, HIGHEST = 1, 10
VERDICT_SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "integer"}, "reason": {"type": "string"}},
    "required": ["score", "reason"],
    "additionalProperties": False,
}


class Case(Protocol):
    """What the judge reads of one answer."""

    question: str
    reference: str
    answer: str


class CaptionJudge:
    """Scores answers in [0, 1] ((score - 1) / 9), None where no valid verdict came.

    Args:
        endpoint: the judging model's server.
        cache_folder: the answer cache shared with the recipes.
        budget: what the judge may spend.
    """

    def __init__(self, endpoint: Endpoint, cache_folder: Path, budget: Budget = UNLIMITED) -> None:
        self.endpoint = endpoint
        self.client = ChatClient(endpoint, budget)
        self.cache = ResponseCache(Path(cache_folder))
        self.prompt = load_prompt(PROMPT_ID)
        self.tally = Tally()

    def __call__(self, cases: Sequence[Case]) -> list[float | None]:
        with ThreadPoolExecutor(self.endpoint.max_in_flight) as pool:
            return list(pool.map(self._verdict, cases))

    def take_counters(self) -> Counter[str]:
        """Requests, cache hits and failures since the last call."""
        return self.tally.take() + self.client.take_counters()

    def _verdict(self, case: Case) -> float | None:
        fields = {"question": case.question, "reference": case.reference, "answer": case.answer}
        messages = self.prompt.messages(fields)
        params = self.prompt.params("verdict", VERDICT_SCHEMA)
        try:
            for attempt in range(2):
                completion, value, problems = json_exchange(
                    self.client, self.cache, messages, params, self.tally
                )
                problems = problems or _problems(value)
                if not problems:
                    return (value["score"] - LOWEST) / (HIGHEST - LOWEST)
                if attempt == 0:
                    messages = messages + self.prompt.again(completion.content, problems)
        except LLMError as error:
            self.tally.add(f"verdicts_failed/{error.kind}")
            return None
        except BudgetExhausted:
            self.tally.add("verdicts_failed/budget_spent")
            return None
        self.tally.add("verdicts_failed/invalid_answer")
        return None


def _problems(value: dict[str, Any] | None) -> list[str]:
    score = (value or {}).get("score")
    if not isinstance(score, int) or isinstance(score, bool) or not LOWEST <= score <= HIGHEST:
        return [f"score must be a whole number from {LOWEST} to {HIGHEST}, got {score!r}"]
    return []
