"""The generation step: what a recipe wants written, written by a template or by an LLM.

A `GenerateStep` subclass says, for each row, what it wants written (`asks`: one per region,
pair, or image, each with the facts it is to be written from), how to write it offline
(`template`), what a valid answer is (`check`), and how answers become the row's turns
(`apply`). A generator answers the asks: `TemplateGenerator` from the facts, deterministically;
`LLMGenerator` through an OpenAI-compatible endpoint, with structured output, many requests in
flight, a persistent cache, one retry that shows the model what was wrong, and a budget.
Either way an answer passes the same `check` before it reaches a row, and an ask that gets no
valid answer is quarantined with the reason (and the invalid answers).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from regionkit.builders.base import Built, Rejected
from regionkit.pipelines.llm.budget import UNLIMITED, Budget
from regionkit.pipelines.llm.cache import ResponseCache
from regionkit.pipelines.llm.client import ChatClient, Completion, Endpoint, LLMError
from regionkit.pipelines.llm.exchange import json_exchange
from regionkit.pipelines.llm.prompts import Prompt, load_prompt
from regionkit.pipelines.llm.tally import Tally
from regionkit.pipelines.step import Resources, Step, StepResult


@dataclass(frozen=True)
class Ask:
    """One thing a step wants written.

    Attributes:
        key: what it is about, for quarantine lines (`region 3`, `regions 0 and 2`).
        facts: everything the text may be written from (JSON-serialisable).
        view: what else the step needs to show it (the image and the region, for a vision
            endpoint); never written as text.
    """

    key: str
    facts: dict[str, Any]
    view: dict[str, Any] | None = None


@dataclass(frozen=True)
class Answer:
    """An ask's outcome: a valid answer, or why there is none (`code`, `reason`, `record`)."""

    ask: Ask
    value: dict[str, Any] | None = None
    code: str = ""
    reason: str = ""
    record: Any = None


class Generator(ABC):
    """Writes answers to asks.

    Attributes:
        name: what rows record as `provenance.generator`.
        task_resources: what a shard's task needs while this generator works in it, when not
            what its steps declare (None); a recipe passes it to its `Pipeline`.
    """

    name: str
    task_resources: Resources | None = None

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}

    def setup(self) -> None:
        """Once per worker process."""
        return None

    @abstractmethod
    def prompt_id(self, step: GenerateStep) -> str:
        """The id of the text that writes `step`'s answers."""

    @abstractmethod
    def answer(self, step: GenerateStep, asks: Sequence[Ask]) -> list[Answer]:
        """One answer per ask, in order."""

    def take_counters(self) -> Counter[str]:
        """What was counted since the last call."""
        return Counter()


class TemplateGenerator(Generator):
    """The offline generator: each step's `template`, deterministic, no network."""

    name = "template"

    def prompt_id(self, step: GenerateStep) -> str:
        return f"{step.name}.template.v{step.version}"

    def answer(self, step: GenerateStep, asks: Sequence[Ask]) -> list[Answer]:
        answers = []
        for ask in asks:
            value = step.template(ask)
            problems = step.check(ask, value)
            if problems:
                answers.append(Answer(ask, None, "template_unwritable", "; ".join(problems), value))
            else:
                answers.append(Answer(ask, value))
        return answers


class LLMGenerator(Generator):
    """Answers from an OpenAI-compatible endpoint.

    Args:
        endpoint: the server, model and concurrency.
        cache_folder: the persistent cache (on a cluster, a shared folder).
        budget: what may be spent, shared by every worker of the build.
    """

    task_resources = Resources(cpus=0.25)  # mostly waiting on the server

    def __init__(self, endpoint: Endpoint, cache_folder: Path, budget: Budget = UNLIMITED) -> None:
        self.endpoint = endpoint
        self.cache_folder = Path(cache_folder)
        self.budget = budget
        self.name = endpoint.generator
        self._client: ChatClient | None = None
        self._cache = ResponseCache(self.cache_folder)
        self._tally = Tally()

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self.endpoint.identity()}

    def setup(self) -> None:
        self._client = ChatClient(self.endpoint, self.budget)

    def prompt_id(self, step: GenerateStep) -> str:
        return step.prompt_id

    def answer(self, step: GenerateStep, asks: Sequence[Ask]) -> list[Answer]:
        if self._client is None:
            self.setup()
        prompt = load_prompt(step.prompt_id)
        cache = self._cache
        with ThreadPoolExecutor(self.endpoint.max_in_flight) as pool:
            return list(pool.map(lambda ask: self._answer(step, prompt, cache, ask), asks))

    def take_counters(self) -> Counter[str]:
        counters = self._tally.take()
        if self._client is not None:
            counters += self._client.take_counters()
        return counters

    def __getstate__(self) -> dict[str, Any]:
        """A worker makes its own client (and reads the key from its own environment)."""
        return {**self.__dict__, "_client": None}

    def _answer(self, step: GenerateStep, prompt: Prompt, cache: ResponseCache, ask: Ask) -> Answer:
        messages = prompt.messages(step.prompt_fields(ask), step.prompt_images(ask))
        params = prompt.params(step.name, step.schema)
        try:
            first, value, problems = self._attempt(step, cache, ask, messages, params)
            if not problems:
                return Answer(ask, value)
            self._tally.add("answers_retried_with_problems")
            messages = messages + prompt.again(first.content, problems)
            second, value, again = self._attempt(step, cache, ask, messages, params)
        except LLMError as error:
            self._tally.add(f"asks_failed/{error.kind}")
            return Answer(ask, None, f"llm_{error.kind}", str(error))
        if not again:
            return Answer(ask, value)
        self._tally.add("asks_failed/invalid_answer")
        reason = f"invalid answer: {'; '.join(problems)}; asked again: {'; '.join(again)}"
        record = {"answers": [first.content, second.content], "problems": [problems, again]}
        return Answer(ask, None, "invalid_answer", reason, record)

    def _attempt(
        self,
        step: GenerateStep,
        cache: ResponseCache,
        ask: Ask,
        messages: list[dict[str, Any]],
        params: dict[str, Any],
    ) -> tuple[Completion, dict[str, Any] | None, list[str]]:
        """One request (or its cached answer): the completion, the parsed value, its problems."""
        assert self._client is not None
        completion, value, problems = json_exchange(
            self._client, cache, messages, params, self._tally
        )
        if value is None:
            return completion, None, problems
        return completion, value, step.check(ask, value)


def text_answer_schema(field: str) -> dict[str, Any]:
    """The JSON schema of an answer that is one string field (strict mode's form)."""
    return {
        "type": "object",
        "properties": {field: {"type": "string"}},
        "required": [field],
        "additionalProperties": False,
    }


Answered = list[tuple[dict[str, Any], dict[str, Any]]]
"""The valid answers of a row: (the ask's facts, the answer), in the order asked."""


class GenerateStep(Step):
    """A step whose rows' dialogues are written by a generator; subclasses say what to write,
    how to check it and how answers become turns.

    Class attributes: `name`, `version`, `prompt_id` (the LLM prompt file), `schema` (the JSON
    schema of one answer), `task` (what the rows teach), and `silent_code`/`silent_reason`
    (the quarantine of a row left with no turn).

    Args:
        generator: writes the answers.
        per_row: most asks per row.
    """

    prompt_id: ClassVar[str]
    schema: ClassVar[dict[str, Any]]
    task: ClassVar[str]
    silent_code: ClassVar[str]
    silent_reason: ClassVar[str]

    def __init__(self, generator: Generator, per_row: int = 3) -> None:
        self.generator = generator
        self.per_row = per_row

    def params(self) -> dict[str, Any]:
        return {
            "generator": self.generator.describe(),
            "prompt_id": self.generator.prompt_id(self),
            "per_row": self.per_row,
        }

    def setup(self) -> None:
        self.generator.setup()

    @abstractmethod
    def asks(self, row: dict[str, Any]) -> list[Ask]:
        """What to write for `row` (may be none)."""

    @abstractmethod
    def prompt_fields(self, ask: Ask) -> dict[str, str]:
        """The prompt's `$fields` for `ask`."""

    def prompt_images(self, ask: Ask) -> list[bytes]:
        """Images (JPEG bytes) shown with the prompt to a vision endpoint; none by default."""
        return []

    @abstractmethod
    def template(self, ask: Ask) -> dict[str, Any]:
        """The offline answer to `ask`, shaped like the schema."""

    @abstractmethod
    def check(self, ask: Ask, value: dict[str, Any]) -> list[str]:
        """What is wrong with `value` as an answer to `ask` (empty when it is valid)."""

    @abstractmethod
    def turns(self, row: dict[str, Any], answered: Answered) -> list[dict[str, str]]:
        """The row's dialogue from its valid answers (and whatever else the row gives)."""

    def apply(self, built: Built, answers: list[Answer]) -> Built | Rejected:
        """The row with its dialogue, or its rejection when it is left with no turn."""
        answered = [(a.ask.facts, a.value) for a in answers if a.value is not None]
        turns = self.turns(built.row, answered)
        if not turns:
            return Rejected(built.row["id"], self.silent_code, self.silent_reason, built.units)
        return replace(built, row={**built.row, "task": self.task, "messages": turns})

    def process(self, rows: list[Built]) -> StepResult:
        asks = [(i, ask) for i, built in enumerate(rows) for ask in self.asks(built.row)]
        answers = self.generator.answer(self, [ask for _, ask in asks])
        per_row: list[list[Answer]] = [[] for _ in rows]
        for (i, _), answer in zip(asks, answers, strict=True):
            per_row[i].append(answer)
        result = StepResult([], counters=self.generator.take_counters())
        prompt_id = self.generator.prompt_id(self)
        for built, row_answers in zip(rows, per_row, strict=True):
            for failed in (a for a in row_answers if a.value is None):
                # the row goes on without this text: the entry keeps it and accounts for no unit
                key = f"{built.row['id']} {failed.ask.key}"
                result.rejected.append(Rejected(key, failed.code, failed.reason, {}, failed.record))
            outcome = self.apply(built, row_answers)
            if isinstance(outcome, Rejected):
                result.rejected.append(outcome)
                continue
            provenance = {
                **outcome.row["provenance"],
                "generator": self.generator.name,
                "prompt_id": prompt_id,
            }
            outcome.row = {**outcome.row, "provenance": provenance}
            result.rows.append(outcome)
        return result
