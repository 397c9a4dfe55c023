"""Soak `edgelm serve`: 5,000 mixed requests from concurrent clients; does memory grow?

    python benchmarks/serve_soak.py --generation FOLDER --embeddings FOLDER \\
        [--classifier FOLDER] [--requests 5000] [--clients 16] [--threads 2]

One `edgelm serve` process (127.0.0.1 only) serves the folders; --clients concurrent
clients send a fixed, seeded mix: embeddings (1-4 texts), classification, chat and
completions (greedy and seeded sampling, streamed or not, with stop strings), streams
abandoned after their first chunk, model lists, health checks, and deliberately bad
requests (malformed JSON, unknown models, negative max_tokens, unknown fields, oversized
n). The server's resident memory (process_resident_memory_bytes from its /metrics) is
sampled after a warm-up of 10% of the requests and then every 500; the goal is growth
under 5% after warm-up, with no error response but the deliberate ones (each must be a
4xx OpenAI error object). Results: results/serve_soak-<cpu>.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
from harness import edgelm_serve_command, hardware, machine_tag, write_results

from edgelm.serve.run import free_port, spawned

HERE = Path(__file__).resolve().parent
RSS = re.compile(r"^process_resident_memory_bytes (\S+)$", re.MULTILINE)
WORDS = ("edge small model battery fast slow loved hated movie market storm river "
         "bicycle planet quiet loud Café déjà vu 🙂 the a of and to").split()
# (kind, weight): the mix, drawn per request from a seeded generator
MIX = [("embed", 30), ("classify", 15), ("chat", 15), ("chat_stream", 10), ("complete", 8),
       ("abandon", 5), ("models", 4), ("health", 3), ("bad", 10)]
BAD = [  # (body or raw bytes, path): each must get a 4xx error object
    (b"{not json", "/v1/chat/completions"),
    ({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}, "/v1/chat/completions"),
    ({"model": "gen", "messages": [{"role": "user", "content": "hi"}], "max_tokens": -3},
     "/v1/chat/completions"),
    ({"model": "gen", "prompt": "hi", "max_tokens": 10**9}, "/v1/completions"),
    ({"model": "emb", "input": "hi", "colour": "blue"}, "/v1/embeddings"),
    ({"model": "gen", "messages": []}, "/v1/chat/completions"),
    ({"model": "emb", "input": 42}, "/v1/embeddings"),
    ({"model": "gen", "prompt": "hi", "n": 1000}, "/v1/completions"),
]


def text(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(words))


async def one(c: httpx.AsyncClient, kind: str, rng: random.Random, has_cls: bool
              ) -> tuple[str, int, bool]:
    """(kind, status, as expected) of one request of `kind`."""
    if kind == "classify" and not has_cls:
        kind = "embed"
    if kind == "embed":
        inputs = [text(rng, rng.randint(3, 30)) for _ in range(rng.randint(1, 4))]
        r = await c.post("/v1/embeddings", json={"model": "emb", "input": inputs})
        return kind, r.status_code, r.status_code == 200 and len(r.json()["data"]) == len(inputs)
    if kind == "classify":
        r = await c.post("/v1/classify", json={"model": "cls", "inputs": text(rng, 12)})
        return kind, r.status_code, r.status_code == 200
    if kind in ("chat", "complete"):
        options = {"max_tokens": rng.randint(4, 16), "temperature": rng.choice([0, 0.8]),
                   "seed": rng.randint(0, 99), "stop": rng.choice([None, ["."]])}
        if kind == "chat":
            body = {"model": "gen", "messages": [{"role": "user", "content": text(rng, 8)}]}
            path = "/v1/chat/completions"
        else:
            body, path = {"model": "gen", "prompt": text(rng, 8)}, "/v1/completions"
        r = await c.post(path, json={**body, **options})
        return kind, r.status_code, r.status_code == 200 and bool(r.json()["choices"])
    if kind in ("chat_stream", "abandon"):
        body = {"model": "gen", "messages": [{"role": "user", "content": text(rng, 8)}],
                "max_tokens": rng.randint(8, 24), "temperature": 0, "stream": True}
        seen = False
        async with c.stream("POST", "/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                return kind, r.status_code, False
            async for line in r.aiter_lines():
                if line == "data: [DONE]":
                    seen = True
                elif kind == "abandon" and line.startswith("data: {"):
                    return kind, 200, True  # leave mid-stream: the server must free the row
        return kind, 200, seen
    if kind == "models":
        r = await c.get("/v1/models")
        return kind, r.status_code, r.status_code == 200
    if kind == "health":
        r = await c.get("/health")
        return kind, r.status_code, r.status_code == 200
    body, path = rng.choice(BAD)
    if isinstance(body, bytes):
        r = await c.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = await c.post(path, json=body)
    ok = 400 <= r.status_code < 500 and "message" in r.json().get("error", {})
    return kind, r.status_code, ok


async def soak(url: str, args: argparse.Namespace, has_cls: bool) -> dict:
    kinds, weights = zip(*MIX)
    plan = random.Random(args.seed).choices(kinds, weights, k=args.requests)
    next_index, outcomes, samples = 0, Counter(), []
    failures: list[str] = []
    warmup = args.requests // 10
    lock = asyncio.Lock()
    started = time.monotonic()

    async def rss(c: httpx.AsyncClient) -> float:
        return float(RSS.search((await c.get("/metrics")).text).group(1)) / 2**20

    async def client(k: int) -> None:
        nonlocal next_index
        async with httpx.AsyncClient(base_url=url, timeout=300) as c:
            while True:
                async with lock:
                    i = next_index
                    if i >= len(plan) or time.monotonic() - started > args.deadline:
                        return
                    next_index += 1
                kind, status, ok = await one(c, plan[i], random.Random(args.seed * 100_003 + i),
                                             has_cls)
                outcomes[(kind, status, ok)] += 1
                if not ok and len(failures) < 20:
                    failures.append(f"request {i} {kind}: {status}")
                done = i + 1
                if done == warmup or (done > warmup and done % 500 == 0) or done == len(plan):
                    samples.append((done, await rss(c)))

    await asyncio.gather(*[client(k) for k in range(args.clients)])
    samples.sort()
    after = [mb for done, mb in samples if done >= warmup]
    return {"requests": next_index, "seconds": time.monotonic() - started,
            "outcomes": {f"{k} {s} {'ok' if ok else 'FAILED'}": n
                         for (k, s, ok), n in sorted(outcomes.items())},
            "failures": failures, "rss_mb": samples,
            "rss_growth": after[-1] / after[0] - 1 if len(after) > 1 else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generation", type=Path, required=True)
    parser.add_argument("--embeddings", type=Path, required=True)
    parser.add_argument("--classifier", type=Path)
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline", type=float, default=1800, help="seconds in all")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    models = {"gen": args.generation, "emb": args.embeddings,
              **({"cls": args.classifier} if args.classifier else {})}
    port = free_port()
    command = edgelm_serve_command(models, port=port, threads=args.threads, max_batch=8,
                                   max_context=512)
    with spawned(command, port, start_timeout=300) as url:
        result = asyncio.run(soak(url, args, bool(args.classifier)))
    info = hardware()
    failed = sum(n for key, n in result["outcomes"].items() if key.endswith("FAILED"))
    growth = result["rss_growth"]
    verdict = ("PASS" if failed == 0 and growth is not None and growth < 0.05
               and result["requests"] == args.requests else "FAIL")
    samples = ", ".join(f"{done}: {mb:.0f}" for done, mb in result["rss_mb"])
    md = (f"# edgelm serve soak ({info['cpu']}, {info['cores']} cores, {args.threads} threads)\n\n"
          f"{result['requests']} requests from {args.clients} clients in "
          f"{result['seconds']:.0f} s; {failed} unexpected outcomes; RSS growth after warm-up "
          f"{growth * 100:+.2f}% (goal < 5%): **{verdict}**\n\n"
          f"RSS MB by requests done: {samples}\n\n| kind status outcome | count |\n|---|---|\n"
          + "".join(f"| {k} | {n} |\n" for k, n in result["outcomes"].items()))
    print(md)
    write_results(args.json or HERE / "results" / f"serve_soak-{machine_tag(info)}",
                  {"hardware": info, "args": {k: str(v) for k, v in vars(args).items()},
                   "verdict": verdict, **result}, md)
    sys.exit(0 if verdict == "PASS" else 1)


if __name__ == "__main__":
    main()
