"""`edgelm serve --ray`: the server as Ray Serve replicas on a local Ray instance, driven
by the openai client (slow: Ray starts its own processes; needs the `ray` extra)."""

from __future__ import annotations

import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

pytest.importorskip("ray.serve")
openai = pytest.importorskip("openai")

import httpx  # noqa: E402

import edgelm  # noqa: E402
from edgelm.serve.run import free_port, spawned  # noqa: E402

KEY = "sk-ray-test"
SERVER_ID = re.compile(r'^edgelm_server_info\{id="(\w+)"\} 1\.0$', re.MULTILINE)
MESSAGES = [{"role": "user", "content": "Edge devices run small models."}]


@pytest.mark.slow  # a local Ray instance and 2 replicas: 30-60 s on 2 cores
def test_two_ray_replicas_answer_the_openai_client(exported):
    chat, emb = exported("llama", "fp32"), exported("bert-emb", "fp32")
    port = free_port()
    command = [sys.executable, "-m", "edgelm", "serve", str(chat), str(emb), "--name", "chat",
               "--name", "emb", "--port", str(port), "--threads", "1", "--ray",
               "--replicas", "2"]
    env = {**os.environ, "EDGELM_API_KEY": KEY, "RAY_ADDRESS": ""}  # a Ray of its own
    with spawned(command, port, env=env, start_timeout=300) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0, timeout=120)
        replies = [client.chat.completions.create(model="chat", messages=MESSAGES,
                                                  max_tokens=8, temperature=0)
                   for _ in range(4)]
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in
                           client.chat.completions.create(model="chat", messages=MESSAGES,
                                                          max_tokens=8, temperature=0,
                                                          stream=True) if chunk.choices)
        vectors = client.embeddings.create(model="emb", input=["hello", "edge devices"])
        with pytest.raises(openai.NotFoundError):
            client.embeddings.create(model="nope", input="x")
        assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 401  # the key holds
        ids = replica_ids(url)
    expected = edgelm.Pipeline(chat, threads=1).chat(MESSAGES, max_new_tokens=8)
    assert expected.strip()
    assert {r.choices[0].message.content for r in replies} == {expected}
    assert streamed == expected
    ours = np.asarray(edgelm.Pipeline(emb, threads=1)(["hello", "edge devices"]))
    theirs = np.asarray([d.embedding for d in vectors.data])
    assert np.abs(ours - theirs).max() < 1e-5
    assert len(ids) == 2  # two replicas, each a server with its own id, both answered


def replica_ids(url: str, seconds: float = 120.0) -> set[str]:
    """The server ids /metrics reports, scraped 32 at a time, 8 in flight, until two are
    seen or `seconds` pass. Sequential scrapes are not enough: Ray routes each request
    to the less busy of two replicas, and idle ones tie (16 in a row once all reached
    one replica), so concurrent scrapes give the router a busier one to avoid."""
    def scrape(_: int) -> str:
        return httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"},
                         timeout=30).text

    ids: set[str] = set()
    deadline = time.monotonic() + seconds
    with ThreadPoolExecutor(8) as pool:
        while len(ids) < 2 and time.monotonic() < deadline:
            ids |= {SERVER_ID.search(text).group(1) for text in pool.map(scrape, range(32))}
    return ids

