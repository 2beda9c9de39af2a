"""LLM step throughput against a local OpenAI-compatible server that answers after a fixed delay.

For 1, 8 and 64 requests in flight, the generation step (Seed captions: prompt rendering,
structured output, the cache, answer checks) is timed next to the raw `openai` client sending
the same messages from as many threads, in the same run, against the same server. Then the
step runs again over its full cache: no request is sent.

    python bench/llm_throughput.py              # 50 ms per answer
    python bench/llm_throughput.py --delay 0.2
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

from regionkit.catalog.records import make_region, make_row
from regionkit.pipelines.curation.seed_turns import SeedTurns
from regionkit.pipelines.llm.client import Endpoint
from regionkit.pipelines.llm.generate import Ask, LLMGenerator
from regionkit.pipelines.llm.prompts import load_prompt
from regionkit.pipelines.llm.stub_server import Reply, StubChatServer

REGIONS_PER_ROW = 4


def _asks(step: SeedTurns, count: int) -> list[Ask]:
    """`count` distinct asks (each a region with its own text), so none is a cache hit."""
    asks: list[Ask] = []
    row_number = 0
    while len(asks) < count:
        regions = [
            make_region(str(k), [10 + 40 * k, 10, 40 + 40 * k, 60], category="dog")
            for k in range(REGIONS_PER_ROW)
        ]
        groundings = [
            {"text": f"dog number {row_number}-{k}", "regions": [k]} for k in range(REGIONS_PER_ROW)
        ]
        row = make_row(
            source="coco",
            split="train",
            native_key=str(row_number),
            image_path="/x.jpg",
            width=200,
            height=100,
            builder="coco",
            builder_version="1",
            source_files=[],
            regions=regions,
            groundings=groundings,
        )
        asks += step.asks(row)
        row_number += 1
    return asks[:count]


def _step_rate(server: StubChatServer, in_flight: int, asks_count: int, cache: Path) -> float:
    endpoint = Endpoint("bench", server.base_url, max_in_flight=in_flight, retries=0)
    step = SeedTurns(LLMGenerator(endpoint, cache), captions=REGIONS_PER_ROW)
    asks = _asks(step, asks_count)
    started = time.perf_counter()
    answers = step.generator.answer(step, asks)
    seconds = time.perf_counter() - started
    assert all(a.value is not None for a in answers), "the bench server's answers must pass"
    return seconds


def _raw_rate(server: StubChatServer, in_flight: int, asks_count: int) -> float:
    """The `openai` client alone: the same messages and parameters, as many threads."""
    client = openai.OpenAI(base_url=server.base_url, api_key="none", max_retries=0)
    step = SeedTurns(LLMGenerator(Endpoint("bench", server.base_url), Path(".")))
    prompt = load_prompt(step.prompt_id)
    requests = [prompt.messages(step.prompt_fields(a)) for a in _asks(step, asks_count)]
    params = prompt.params(step.name, step.schema)

    def send(messages: list[dict]) -> str:
        response = client.chat.completions.create(model="bench", messages=messages, **params)
        return response.choices[0].message.content or ""

    started = time.perf_counter()
    with ThreadPoolExecutor(in_flight) as pool:
        list(pool.map(send, requests))
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per answer")
    parser.add_argument("--levels", default="1,8,64", help="requests in flight to measure")
    args = parser.parse_args()
    reply = Reply('{"caption": "a small brown dog"}', delay=args.delay)
    print(f"server answers after {args.delay * 1000:.0f} ms; requests/s (higher is better)")
    print(f"{'in flight':>9} {'requests':>9} {'raw client':>11} {'LLM step':>9} {'ratio':>6}")
    with StubChatServer(lambda body: reply) as server, tempfile.TemporaryDirectory() as tmp:
        for level in (int(v) for v in args.levels.split(",")):
            count = max(40, 20 * level)
            _raw_rate(server, level, min(count, 2 * level))  # warm the connection pool
            raw = _raw_rate(server, level, count)
            step = _step_rate(server, level, count, Path(tmp) / f"cache-{level}")
            print(
                f"{level:>9} {count:>9} {count / raw:>11.1f} {count / step:>9.1f} "
                f"{raw / step:>6.2f}"
            )
        level = max(int(v) for v in args.levels.split(","))
        cache = Path(tmp) / "rerun"
        sent_before = len(server.requests)
        first = _step_rate(server, level, 20 * level, cache)
        sent = len(server.requests) - sent_before
        again = _step_rate(server, level, 20 * level, cache)
        resent = len(server.requests) - sent_before - sent
        print(
            f"cached rerun of {20 * level} answers: first run {first:.2f} s ({sent} requests), "
            f"rerun {again:.3f} s ({resent} requests), {first / again:.0f}x faster"
        )


if __name__ == "__main__":
    main()
