"""LLM step throughput against a local OpenAI-compatible server that answers after a fixed delay.

For 1, 8 and 64 requests in flight, the generation step (Seed captions: prompt rendering,
structured output, the cache, answer checks) is timed next to the raw `openai` client sending
the same messages from as many threads, in the same run, against the same server. The server
runs in its own process, as a real endpoint would, so it does not share the clients' GIL. Then
the step runs again over its full cache: no request is sent. The cache lies where a user's
does (a temporary folder beside the default cache, `~/.cache/regionkit/`, removed afterwards):
creating a file costs twenty times more on some machines' /tmp than on their home disk.

    python bench/llm_throughput.py              # 50 ms per answer
    python bench/llm_throughput.py --delay 0.2
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
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
from regionkit.pipelines.recipe_run import default_cache_folder

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


def _step_run(base_url: str, in_flight: int, asks_count: int, cache: Path) -> tuple[float, int]:
    """Seconds the step takes to answer `asks_count` asks, and the requests it sent."""
    endpoint = Endpoint("bench", base_url, max_in_flight=in_flight, retries=0)
    step = SeedTurns(LLMGenerator(endpoint, cache), captions=REGIONS_PER_ROW)
    asks = _asks(step, asks_count)
    started = time.perf_counter()
    answers = step.generator.answer(step, asks)
    seconds = time.perf_counter() - started
    assert all(a.value is not None for a in answers), "the bench server's answers must pass"
    return seconds, step.generator.take_counters()["requests"]


def _raw_run(base_url: str, in_flight: int, asks_count: int) -> float:
    """The `openai` client alone: the same messages and parameters, as many threads."""
    client = openai.OpenAI(base_url=base_url, api_key="none", max_retries=0)
    step = SeedTurns(LLMGenerator(Endpoint("bench", base_url), Path(".")))
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


def _serve(delay: float, address: multiprocessing.Queue, stop: multiprocessing.Event) -> None:
    reply = Reply('{"caption": "a small brown dog"}', delay=delay)
    with StubChatServer(lambda body: reply) as server:
        address.put(server.base_url)
        stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--delay", type=float, default=0.05, help="seconds per answer")
    parser.add_argument("--levels", default="1,8,64", help="requests in flight to measure")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each, medians taken")
    parser.add_argument(
        "--cache-root",
        type=Path,
        default=default_cache_folder().parent,
        help="where the benchmark's temporary caches go (default: beside the default cache)",
    )
    args = parser.parse_args()
    args.cache_root.mkdir(parents=True, exist_ok=True)
    levels = [int(v) for v in args.levels.split(",")]
    address: multiprocessing.Queue = multiprocessing.Queue()
    stop = multiprocessing.Event()
    server = multiprocessing.Process(target=_serve, args=(args.delay, address, stop), daemon=True)
    server.start()
    base_url = address.get(timeout=30)
    print(
        f"server answers after {args.delay * 1000:.0f} ms; requests/s, medians of "
        f"{args.repeat} runs taken in turns (higher is better)"
    )
    print(f"{'in flight':>9} {'requests':>9} {'raw client':>11} {'LLM step':>9} {'ratio':>6}")
    try:
        with tempfile.TemporaryDirectory(dir=args.cache_root, prefix="bench-") as tmp:
            for level in levels:
                count = max(40, 20 * level)
                _raw_run(base_url, level, min(count, 2 * level))  # warm the connection pool
                raws, steps = [], []
                for turn in range(args.repeat):  # in turns, so drift hits both alike
                    raws.append(_raw_run(base_url, level, count))
                    cache = Path(tmp) / f"cache-{level}-{turn}"
                    steps.append(_step_run(base_url, level, count, cache)[0])
                raw, step = statistics.median(raws), statistics.median(steps)
                print(
                    f"{level:>9} {count:>9} {count / raw:>11.1f} {count / step:>9.1f} "
                    f"{raw / step:>6.2f}"
                )
            count, cache = 20 * max(levels), Path(tmp) / "rerun"
            first, sent = _step_run(base_url, max(levels), count, cache)
            again, resent = _step_run(base_url, max(levels), count, cache)
            print(
                f"cached rerun of {count} answers: first run {first:.2f} s ({sent} requests), "
                f"rerun {again:.3f} s ({resent} requests), {first / again:.0f}x faster"
            )
    finally:
        stop.set()
        server.join(timeout=10)


if __name__ == "__main__":
    main()
