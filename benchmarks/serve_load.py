"""`edgelm serve` under load, on 127.0.0.1 only: what batching buys.

Generation: 8 concurrent streaming clients vs 1 (aggregate tokens/s, the ratio, and
p50 time to first token under load). Embeddings: 32 concurrent single-text clients vs
one sequential client (requests/s and the ratio). Every loop has a fixed request
count and a deadline; the server runs in this process and stops at the end.

    python benchmarks/serve_load.py --generation FOLDER --embeddings FOLDER \\
        [--threads 2] [--max-batch 8] [--max-context 512] [--max-tokens 32] [--json OUT]

A classification folder given as --embeddings is driven through /v1/classify.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgelm.manifest import read_manifest  # noqa: E402
from edgelm.serve import ServeOptions, create_app  # noqa: E402
from edgelm.serve.run import in_thread as running  # noqa: E402
from edgelm.types import Task  # noqa: E402

PROMPTS = ["Write a long story about a lighthouse keeper and a storm.",
           "Explain, step by step, how a bicycle gear system works.",
           "Describe a walk through a busy market in the morning.",
           "List many facts about the planets of the solar system."]


async def stream_one(c: httpx.AsyncClient, model: str, prompt: str, max_tokens: int
                     ) -> tuple[float, int]:
    """(time to first token, completion tokens) of one streamed chat completion."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    started, first, tokens = time.perf_counter(), None, 0
    async with c.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
            elif first is None and event["choices"] and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
    return (first if first is not None else time.perf_counter() - started), tokens


async def generation_round(url: str, model: str, clients: int, each: int, max_tokens: int,
                           deadline_s: float) -> dict:
    ttfts: list[float] = []
    total = 0
    deadline = time.monotonic() + deadline_s

    async def client(k: int) -> None:
        nonlocal total
        async with httpx.AsyncClient(base_url=url, timeout=600) as c:
            for i in range(each):
                if time.monotonic() > deadline:
                    return
                ttft, tokens = await stream_one(c, model, PROMPTS[(k + i) % len(PROMPTS)],
                                                max_tokens)
                ttfts.append(ttft)
                total += tokens

    started = time.perf_counter()
    await asyncio.gather(*[client(k) for k in range(clients)])
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": len(ttfts), "tokens": total, "seconds": wall,
            "tokens_per_s": total / wall, "ttft_p50_s": statistics.median(ttfts)}


async def encoder_round(url: str, model: str, path: str, clients: int, total: int,
                        deadline_s: float) -> dict:
    done = 0
    deadline = time.monotonic() + deadline_s
    field = "input" if path == "/v1/embeddings" else "inputs"

    async def client(k: int) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=url, timeout=600) as c:
            for i in range(k, total, clients):
                if time.monotonic() > deadline:
                    return
                text = f"{PROMPTS[i % len(PROMPTS)]} (request {i})"
                (await c.post(path, json={"model": model, field: text})).raise_for_status()
                done += 1

    started = time.perf_counter()
    await asyncio.gather(*[client(k) for k in range(clients)])
    wall = time.perf_counter() - started
    return {"clients": clients, "requests": done, "seconds": wall, "requests_per_s": done / wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generation", type=Path)
    parser.add_argument("--embeddings", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-context", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--requests", type=int, default=2, help="per generation client")
    parser.add_argument("--encoder-requests", type=int, default=256)
    parser.add_argument("--deadline", type=float, default=300, help="seconds per round")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    folders = [f for f in (args.generation, args.embeddings) if f is not None]
    if not folders:
        parser.error("pass --generation and/or --embeddings")
    names = tuple(["gen"] * bool(args.generation) + ["enc"] * bool(args.embeddings))
    options = ServeOptions(threads=args.threads, max_batch=max(args.max_batch, 32),
                           max_context=args.max_context, names=names)
    app = create_app(folders, options)
    result: dict = {"cpu": platform.processor() or platform.machine(),
                    "threads": args.threads, "max_batch": options.max_batch}
    with running(app) as url:
        if args.generation:
            asyncio.run(generation_round(url, "gen", 1, 1, 4, args.deadline))  # warm-up
            one = asyncio.run(generation_round(url, "gen", 1, args.requests * 2,
                                               args.max_tokens, args.deadline))
            eight = asyncio.run(generation_round(url, "gen", 8, args.requests,
                                                 args.max_tokens, args.deadline))
            result["generation"] = {"one_client": one, "eight_clients": eight,
                                    "tokens_per_s_ratio": eight["tokens_per_s"]
                                    / one["tokens_per_s"]}
        if args.embeddings:
            task = read_manifest(args.embeddings, verify=False).task
            path = "/v1/embeddings" if task is Task.FEATURE_EXTRACTION else "/v1/classify"
            asyncio.run(encoder_round(url, "enc", path, 4, 16, args.deadline))  # warm-up
            seq = asyncio.run(encoder_round(url, "enc", path, 1, args.encoder_requests,
                                            args.deadline))
            many = asyncio.run(encoder_round(url, "enc", path, 32, args.encoder_requests,
                                             args.deadline))
            result["encoder"] = {"path": path, "sequential": seq, "32_clients": many,
                                 "throughput_ratio": many["requests_per_s"]
                                 / seq["requests_per_s"]}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
