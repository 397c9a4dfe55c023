"""Arbitrary request bodies: a result or a 4xx OpenAI error object, never a 500."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("starlette")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from edgelm.serve import ServeOptions, create_app  # noqa: E402

scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
FIELDS = ["model", "messages", "prompt", "input", "inputs", "max_tokens", "temperature",
          "top_p", "seed", "stop", "n", "stream", "encoding_format", "logprobs", "bogus"]
GOOD = {"model": st.sampled_from(["llama", "emb", "nope"]),
        "messages": st.lists(st.fixed_dictionaries(
            {"role": st.sampled_from(["user", "system", "x"]), "content": st.text(max_size=30)}),
            max_size=3),
        "prompt": st.text(max_size=30), "input": st.text(max_size=30),
        "max_tokens": st.integers(-5, 200), "temperature": st.floats(-1, 3),
        "n": st.integers(0, 3), "stream": st.booleans()}
BASE = {"/v1/chat/completions": {"model": "llama", "max_tokens": 4,
                                  "messages": [{"role": "user", "content": "hi"}]},
        "/v1/completions": {"model": "llama", "prompt": "hi", "max_tokens": 4},
        "/v1/embeddings": {"model": "emb", "input": "hi"},
        "/v1/classify": {"inputs": "hi"}}
# A valid body with some fields changed (to plausible or arbitrary values) or removed.
changes = st.dictionaries(st.sampled_from(FIELDS), st.just(None), max_size=4).flatmap(
    lambda keys: st.fixed_dictionaries({k: GOOD.get(k, values) | values for k in keys}))
removed = st.sets(st.sampled_from(FIELDS), max_size=2)


@pytest.fixture(scope="module")
def client(exported):
    app = create_app([exported("llama", "fp32"), exported("bert-emb", "fp32")],
                     ServeOptions(threads=1, names=("llama", "emb")))
    with TestClient(app) as c:
        yield c


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(sorted(BASE)), change=changes, drop=removed)
def test_any_body_is_a_result_or_a_4xx(client, path, change, drop):
    body = {k: v for k, v in {**BASE[path], **change}.items() if k not in drop}
    r = client.post(path, content=json.dumps(body).encode("ascii"),
                    headers={"Content-Type": "application/json"})
    assert r.status_code < 500, r.text
    if r.status_code != 200:
        error = r.json()["error"]
        assert error["message"] and "\n" not in error["message"]
