"""`edgelm serve --ray`: the server as Ray Serve replicas on a local Ray instance, driven
by the openai client (slow: Ray starts its own processes; needs the `ray` extra)."""

from __future__ import annotations

import os
import re
import sys

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
        metrics = [httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {KEY}"},
                             timeout=30).text for _ in range(16)]
    expected = edgelm.Pipeline(chat, threads=1).chat(MESSAGES, max_new_tokens=8)
    assert expected.strip()
    assert {r.choices[0].message.content for r in replies} == {expected}
    assert streamed == expected
    ours = np.asarray(edgelm.Pipeline(emb, threads=1)(["hello", "edge devices"]))
    theirs = np.asarray([d.embedding for d in vectors.data])
    assert np.abs(ours - theirs).max() < 1e-5
    # Two replicas, each a server with its own id: 16 scrapes reached both (Ray routes to
    # the less loaded of two random replicas; all 16 on one: p ~ 2 * 2^-16)
    assert len({SERVER_ID.search(text).group(1) for text in metrics}) == 2

