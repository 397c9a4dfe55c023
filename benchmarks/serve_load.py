"""`edgelm serve` under load, on 127.0.0.1 only, beside llama-cpp-python's server.

Generation: 1 streaming client alone, then 8 concurrent ones (aggregate tokens/s, the
ratio, p50 time to first token). Encoders: one sequential client, then 32 concurrent
single-text clients (requests/s and the ratio). Every server runs in a process of its own
(`edgelm serve`; `python -m llama_cpp.server` on a GGUF of the same model), started for its
round and stopped after it, engines taking turns over --rounds; every loop has a fixed
request count and a deadline.

    python benchmarks/serve_load.py --generation FOLDER [--embeddings FOLDER] \\
        [--llama-cpp GGUF --llama-python PYTHON] [--threads 2] [--max-tokens 64] \\
        [--rounds 2] [--json OUT]

PYTHON has `llama-cpp-python[server]` (built from source: see benchmarks/README.md).
llama-cpp-python's server decodes one request at a time (a lock around its model);
`--interrupt_requests False` makes a new request wait instead of cutting the stream
being decoded; `--flash_attn True` as llama.cpp's own tools default to on the CPU. Completion tokens: the `usage` edgelm sends with
`stream_options.include_usage`; llama-cpp-python sends no usage in streams, so its
tokens are its content chunks (one per token). A classification folder given as
--embeddings is driven through /v1/classify. Results: results/serve_load-<cpu>.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
from harness import edgelm_serve_command, hardware, machine_tag, write_results

from edgelm.manifest import read_manifest
from edgelm.serve.run import free_port, spawned
from edgelm.types import Task

HERE = Path(__file__).resolve().parent
PROMPTS = ["Write a long story about a lighthouse keeper and a storm.",
           "Explain, step by step, how a bicycle gear system works.",
           "Describe a walk through a busy market in the morning.",
           "List many facts about the planets of the solar system."]


@dataclass(frozen=True)
class Server:
    name: str
    command: list[str]  # with {port} where the port goes
    health: str

    def start(self, port: int):  # -> context manager yielding the base URL
        command = [part.replace("{port}", str(port)) for part in self.command]
        return spawned(command, port, health=self.health, start_timeout=300)


async def stream_one(c: httpx.AsyncClient, prompt: str, max_tokens: int) -> tuple[float, int]:
    """(time to first token, completion tokens) of one streamed chat completion."""
    body = {"model": "gen", "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    started, first, chunks, usage = time.perf_counter(), None, 0, None
    async with c.stream("POST", "/v1/chat/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if event.get("usage"):
                usage = event["usage"]["completion_tokens"]
            if event.get("choices") and event["choices"][0]["delta"].get("content"):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - started
    return (first if first is not None else time.perf_counter() - started), usage or chunks


async def connected(url: str, clients: int, health: str) -> list[httpx.AsyncClient]:
    """`clients` HTTP clients, each with its connection open (a GET of `health`): the
    rounds time requests, not connection set-up."""
    opened = [httpx.AsyncClient(base_url=url, timeout=600) for _ in range(clients)]
    await asyncio.gather(*[c.get(health) for c in opened])
    return opened


async def generation_round(url: str, clients: int, each: int, max_tokens: int,
                           deadline_s: float, health: str) -> dict:
    ttfts: list[float] = []
    total = 0
    deadline = time.monotonic() + deadline_s
    opened = await connected(url, clients, health)

    async def client(k: int, c: httpx.AsyncClient) -> None:
        nonlocal total
        for i in range(each):
            if time.monotonic() > deadline:
                return
            ttft, tokens = await stream_one(c, PROMPTS[(k + i) % len(PROMPTS)], max_tokens)
            ttfts.append(ttft)
            total += tokens

    started = time.perf_counter()
    await asyncio.gather(*[client(k, c) for k, c in enumerate(opened)])
    wall = time.perf_counter() - started
    await asyncio.gather(*[c.aclose() for c in opened])
    return {"clients": clients, "requests": len(ttfts), "tokens": total, "seconds": wall,
            "tokens_per_s": total / wall, "ttft_p50_s": statistics.median(ttfts)}


async def encoder_round(url: str, path: str, clients: int, total: int, deadline_s: float,
                        health: str) -> dict:
    done = 0
    deadline = time.monotonic() + deadline_s
    field = "input" if path == "/v1/embeddings" else "inputs"
    opened = await connected(url, clients, health)

    async def client(k: int, c: httpx.AsyncClient) -> None:
        nonlocal done
        for i in range(k, total, clients):
            if time.monotonic() > deadline:
                return
            text = f"{PROMPTS[i % len(PROMPTS)]} (request {i})"
            (await c.post(path, json={"model": "enc", field: text})).raise_for_status()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*[client(k, c) for k, c in enumerate(opened)])
    wall = time.perf_counter() - started
    await asyncio.gather(*[c.aclose() for c in opened])
    return {"clients": clients, "requests": done, "seconds": wall, "requests_per_s": done / wall}


def generation(url: str, args: argparse.Namespace, health: str) -> dict:
    asyncio.run(generation_round(url, 1, 1, 4, args.deadline, health))  # warm-up
    one = asyncio.run(generation_round(url, 1, args.requests * 2, args.max_tokens,
                                       args.deadline, health))
    eight = asyncio.run(generation_round(url, 8, args.requests, args.max_tokens, args.deadline,
                                         health))
    return {"one_client": one, "eight_clients": eight,
            "tokens_per_s_ratio": eight["tokens_per_s"] / one["tokens_per_s"]}


def encoders(url: str, path: str, args: argparse.Namespace) -> dict:
    asyncio.run(encoder_round(url, path, 4, 16, args.deadline, "/health"))  # warm-up
    seq = asyncio.run(encoder_round(url, path, 1, args.encoder_requests, args.deadline,
                                    "/health"))
    many = asyncio.run(encoder_round(url, path, 32, args.encoder_requests, args.deadline,
                                     "/health"))
    return {"path": path, "sequential": seq, "32_clients": many,
            "throughput_ratio": many["requests_per_s"] / seq["requests_per_s"]}


def servers(args: argparse.Namespace) -> list[Server]:
    t = str(args.threads)
    models = {"gen": args.generation, **({"enc": args.embeddings} if args.embeddings else {})}
    found = [Server("edgelm", edgelm_serve_command(
        models, port="{port}", threads=args.threads, max_batch=max(args.max_batch, 32),
        max_context=args.max_context), "/health")]
    if args.llama_cpp:
        found.append(Server("llama.cpp", [
            str(args.llama_python), "-m", "llama_cpp.server", "--model", str(args.llama_cpp),
            "--model_alias", "gen", "--port", "{port}", "--n_threads", t,
            "--n_threads_batch", t, "--n_ctx", str(args.max_context),
            "--flash_attn", "True", "--interrupt_requests", "False", "--verbose", "False"],
            "/v1/models"))
    return found


def summary(rounds: dict[str, list[dict]]) -> dict:
    def median(engine: str, *keys: str) -> float:
        values = []
        for r in rounds[engine]:
            value = r
            for key in keys:
                value = value[key]
            values.append(value)
        return statistics.median(values)

    out = {}
    for engine in rounds:
        out[engine] = {
            "one_client_tokens_per_s": median(engine, "generation", "one_client", "tokens_per_s"),
            "eight_clients_tokens_per_s": median(engine, "generation", "eight_clients",
                                                 "tokens_per_s"),
            "eight_over_one": median(engine, "generation", "tokens_per_s_ratio"),
            "ttft_p50_alone_s": median(engine, "generation", "one_client", "ttft_p50_s"),
            "ttft_p50_eight_s": median(engine, "generation", "eight_clients", "ttft_p50_s")}
        if rounds[engine][0].get("encoder"):
            out[engine]["encoder_sequential_per_s"] = median(engine, "encoder", "sequential",
                                                             "requests_per_s")
            out[engine]["encoder_32_clients_per_s"] = median(engine, "encoder", "32_clients",
                                                             "requests_per_s")
            out[engine]["encoder_ratio"] = median(engine, "encoder", "throughput_ratio")
    return out


def markdown(info: dict, args: argparse.Namespace, table: dict) -> str:
    lines = [f"# edgelm serve under load ({info['cpu']}, {info['cores']} cores, "
             f"{args.threads} threads per server)", "",
             f"Generation: {args.generation.name}"
             + (f" vs llama-cpp-python server on {args.llama_cpp.name}" if args.llama_cpp else "")
             + f"; greedy chat, {args.max_tokens} new tokens, streaming; medians of "
             f"{args.rounds} rounds, servers taking turns.", "",
             "| server | 1 client tok/s | 8 clients tok/s | 8 / 1 | TTFT p50 alone | "
             "TTFT p50 under 8 |", "|---|---|---|---|---|---|"]
    for engine, row in table.items():
        lines.append(f"| {engine} | {row['one_client_tokens_per_s']:.1f} | "
                     f"{row['eight_clients_tokens_per_s']:.1f} | {row['eight_over_one']:.2f}x | "
                     f"{row['ttft_p50_alone_s']:.3f} s | {row['ttft_p50_eight_s']:.3f} s |")
    if "llama.cpp" in table:
        ours, theirs = table["edgelm"], table["llama.cpp"]
        lines += ["", f"edgelm / llama.cpp at 8 clients: "
                  f"{ours['eight_clients_tokens_per_s'] / theirs['eight_clients_tokens_per_s']:.2f}x"
                  f"; at 1 client: "
                  f"{ours['one_client_tokens_per_s'] / theirs['one_client_tokens_per_s']:.2f}x"]
    if "encoder_ratio" in table["edgelm"]:
        row = table["edgelm"]
        lines += ["", f"Encoder ({args.embeddings.name}): one client "
                  f"{row['encoder_sequential_per_s']:.1f} req/s, 32 clients "
                  f"{row['encoder_32_clients_per_s']:.1f} req/s "
                  f"({row['encoder_ratio']:.2f}x)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generation", type=Path, required=True)
    parser.add_argument("--embeddings", type=Path)
    parser.add_argument("--llama-cpp", type=Path, help="a GGUF of the same model")
    parser.add_argument("--llama-python", type=Path, default=Path(sys.executable))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-context", type=int, default=512)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests", type=int, default=2, help="per generation client")
    parser.add_argument("--encoder-requests", type=int, default=512)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--deadline", type=float, default=300, help="seconds per loop")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    path = None
    if args.embeddings:
        task = read_manifest(args.embeddings, verify=False).task
        path = "/v1/embeddings" if task is Task.FEATURE_EXTRACTION else "/v1/classify"
    rounds: dict[str, list[dict]] = {}
    for r in range(args.rounds):
        for server in servers(args):
            with server.start(free_port()) as url:
                result = {"generation": generation(url, args, server.health)}
                if server.name == "edgelm" and path:
                    result["encoder"] = encoders(url, path, args)
            rounds.setdefault(server.name, []).append(result)
            print(f"round {r + 1} {server.name}: {json.dumps(result)}", flush=True)
    info = hardware()
    table = summary(rounds)
    payload = {"hardware": info, "args": {k: str(v) for k, v in vars(args).items()},
               "summary": table, "rounds": rounds}
    text = markdown(info, args, table)
    print(text)
    write_results(args.json or HERE / "results" / f"serve_load-{machine_tag(info)}", payload,
                  text)


if __name__ == "__main__":
    main()
