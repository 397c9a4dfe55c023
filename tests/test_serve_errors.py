"""Bad requests get a 4xx OpenAI error object, and the server keeps serving."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

pytest.importorskip("starlette")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

import edgelm  # noqa: E402
from edgelm.serve import ServeOptions, create_app  # noqa: E402
from edgelm.serve.run import in_thread as running  # noqa: E402

CHAT = {"model": "llama", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 3}


@pytest.fixture(scope="module")
def served(exported):
    folders = [exported("llama", "fp32"), exported("bert-emb", "fp32")]
    options = ServeOptions(threads=1, max_batch=8, batch_window_ms=300, names=("llama", "emb"))
    app = create_app(folders, options)
    with running(app) as url:
        yield url, app.state.server


@pytest.fixture()
def http(served):
    with httpx.Client(base_url=served[0], timeout=60) as c:
        yield c


def with_(**changes):
    body = {**CHAT, **changes}
    return {k: v for k, v in body.items() if v is not ...}


BAD_BODIES = {
    "wrong type max_tokens": (with_(max_tokens="5"), 400, "max_tokens"),
    "wrong type messages": (with_(messages="hi"), 400, "messages"),
    "wrong type temperature": (with_(temperature="hot"), 400, "temperature"),
    "bool as int": (with_(max_tokens=True), 400, "max_tokens"),
    "negative max_tokens": (with_(max_tokens=-1), 400, "max_tokens"),
    "huge max_tokens": (with_(max_tokens=10**9), 400, "max_tokens"),
    "max_tokens over context": (with_(max_tokens=128), 400, "max_tokens"),
    "prompt over context": (with_(messages=[{"role": "user", "content": "word " * 400}]),
                            400, "messages"),
    "empty messages": (with_(messages=[]), 400, "messages"),
    "no messages": (with_(messages=...), 400, "messages"),
    "bad role": (with_(messages=[{"role": "robot", "content": "x"}]), 400, "messages[0].role"),
    "unknown field": (with_(temperatur=0.5), 400, "temperatur"),
    "unsupported field": (with_(logprobs=True), 400, "logprobs"),
    "unknown model": (with_(model="../../etc/passwd"), 404, "model"),
    "wrong task": (with_(model="emb"), 400, "model"),
    "greedy n": (with_(n=2, temperature=0), 400, "n"),
    "n over the batch": (with_(n=9, temperature=1), 400, "n"),
    "top_p zero": (with_(top_p=0), 400, "top_p"),
    "empty stop": (with_(stop=[""]), 400, "stop"),
}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_chat_bodies_are_4xx_errors(http, case):
    body, status, param = BAD_BODIES[case]
    r = http.post("/v1/chat/completions", json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert "\n" not in error["message"] and error["message"]
    if param is not None:
        assert error["param"] == param
    assert http.post("/v1/chat/completions", json=CHAT).status_code == 200


@pytest.mark.parametrize("raw, status", [
    (b"{not json", 400), (b"[1, 2]", 400), (b"", 400), (b"\xff\xfe", 400),
    (b'{"model": "llama", "prompt": "' + b"x" * (1 << 20) + b'"}', 413),
    (b"[" * 100000 + b"]" * 100000, 400), (b'{"model": "llama", "prompt": "\\ud800"}', 400),
])
def test_malformed_and_oversized_bodies(http, raw, status):
    r = http.post("/v1/completions", content=raw, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text[:200]
    assert r.json()["error"]["message"]
    assert http.post("/v1/completions", json={"model": "llama", "prompt": "a",
                                              "max_tokens": 2}).status_code == 200


def test_bad_encoder_bodies(http):
    for body, param in [({"model": "emb", "input": []}, "input"),
                        ({"model": "emb", "input": [1, 2]}, "input"),
                        ({"model": "emb", "input": "x", "encoding_format": "hex"},
                         "encoding_format"),
                        ({"model": "emb", "inputs": "x"}, "input")]:
        r = http.post("/v1/embeddings", json=body)
        assert r.status_code == 400 and r.json()["error"]["param"] == param, r.text
    assert http.post("/v1/classify", json={"inputs": "x"}).status_code == 400  # no classifier
    assert http.post("/v1/embeddings", json={"model": "emb", "input": "x"}).status_code == 200


def test_unknown_paths_and_methods_are_error_objects(http):
    assert http.get("/v1/nothing").json()["error"]["code"] == "not_found"
    r = http.get("/v1/chat/completions")
    assert r.status_code == 405 and "error" in r.json()


def test_concurrent_embeddings_run_as_one_batch(served, exported):
    url, server = served
    batcher = server.models["emb"].worker
    texts = [f"text number {i} about edge devices" for i in range(6)]
    before = len(batcher.batches)

    async def all_at_once() -> list[list[float]]:
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            replies = await asyncio.gather(*[
                c.post("/v1/embeddings", json={"model": "emb", "input": t}) for t in texts])
        return [r.json()["data"][0]["embedding"] for r in replies]

    vectors = asyncio.run(all_at_once())
    assert sum(batcher.batches[before:]) == len(texts)  # every text embedded, once
    pipe = edgelm.Pipeline(exported("bert-emb", "fp32"), threads=1)
    np.testing.assert_allclose(np.array(vectors), pipe(texts), atol=1e-5)
    assert 'edgelm_batch_size_count{model="emb"}' in httpx.get(f"{url}/metrics").text


def test_abandoned_streams_free_their_rows(served):
    url, server = served
    scheduler = server.models["llama"].worker
    body = {"model": "llama", "prompt": "Edge devices", "max_tokens": 100, "stream": True,
            "temperature": 0}
    solo = httpx.post(f"{url}/v1/completions", json={**body, "stream": False}, timeout=60)
    assert solo.json()["usage"]["completion_tokens"] >= 30  # long enough to leave midway

    async def abandon(c: httpx.AsyncClient, gate: asyncio.Semaphore) -> None:
        async with gate:
            async with c.stream("POST", "/v1/completions", json=body) as r:
                assert r.status_code == 200
                async for line in r.aiter_lines():
                    if line.startswith("data: {"):
                        break  # leave after the first chunk

    async def main() -> None:
        gate = asyncio.Semaphore(8)
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            await asyncio.gather(*[abandon(c, gate) for _ in range(100)])

    abandoned = scheduler.abandoned
    asyncio.run(main())
    deadline = time.monotonic() + 20
    while (scheduler.jobs or scheduler.waiting) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not scheduler.jobs and not scheduler.waiting and scheduler.batch.used == 0
    # Most streams are left mid-way; how many finish first depends on the CPU and the load
    # (a tiny model's 100 steps take ~30 ms on a fast one), so only a floor far below.
    assert scheduler.abandoned - abandoned >= 10
    r = httpx.post(f"{url}/v1/completions", timeout=60,
                   json={"model": "llama", "prompt": "a", "max_tokens": 3})
    assert r.status_code == 200 and r.json()["choices"][0]["finish_reason"]


def test_requests_waiting_together_run_as_one_batch():
    """Batching itself, without the network's timing: six requests queued before the
    thread starts are one call; one whose client left (cancelled) is skipped."""
    from edgelm.serve.batcher import Batcher
    from edgelm.serve.errors import ApiError

    calls: list[list[str]] = []
    batcher = Batcher(lambda texts, key: calls.append(texts) or list(texts), name="fake",
                      max_batch=8, window_s=0.05, max_queue=16)
    futures = [batcher.submit([f"t{i}"]) for i in range(6)]
    futures[2].cancel()
    batcher.start()
    try:
        assert [f.result(timeout=30) for i, f in enumerate(futures) if i != 2] == \
            [[f"t{i}"] for i in range(6) if i != 2]
    finally:
        batcher.stop()
    assert calls == [["t0", "t1", "t3", "t4", "t5"]]
    with pytest.raises(ApiError, match="shutting down"):
        batcher.submit(["late"])


def test_the_server_thread_is_alive(served):
    assert any(t.name == "edgelm-serve-llama" and t.is_alive() for t in threading.enumerate())
