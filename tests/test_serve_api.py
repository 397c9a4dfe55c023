"""`edgelm serve` through the official openai client against a real uvicorn server."""

from __future__ import annotations

import json

import pytest

openai = pytest.importorskip("openai")
pytest.importorskip("uvicorn")

import httpx  # noqa: E402
import numpy as np  # noqa: E402

import edgelm  # noqa: E402
from edgelm.serve import ServeOptions, create_app  # noqa: E402
from edgelm.serve.run import in_thread as running  # noqa: E402

KEY = "sk-edgelm-test"
MESSAGES = [{"role": "user", "content": "Edge devices run small models."}]


@pytest.fixture(scope="module")
def folders(exported):
    return {"llama": exported("llama", "fp32"), "emb": exported("bert-emb", "fp32"),
            "cls": exported("bert-cls", "fp32"), "ner": exported("bert-ner", "fp32")}


@pytest.fixture(scope="module")
def base_url(folders):
    options = ServeOptions(api_key=KEY, threads=1, max_batch=8, names=tuple(folders))
    app = create_app(list(folders.values()), options)
    with running(app) as url:
        yield url


@pytest.fixture()
def client(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture()
def http(base_url):
    with httpx.Client(base_url=base_url, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


@pytest.fixture(scope="module")
def llama(folders):
    return edgelm.Pipeline(folders["llama"], threads=1)


def test_chat_completion_is_the_pipelines_chat(client, llama):
    reply = client.chat.completions.create(model="llama", messages=MESSAGES, max_tokens=10,
                                           temperature=0)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == llama.chat(MESSAGES, max_new_tokens=10)
    assert choice.finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens >= 1 and reply.usage.prompt_tokens > 1
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens


def test_streaming_chat_matches_the_pipelines_stream(client, llama):
    stream = client.chat.completions.create(model="llama", messages=MESSAGES, max_tokens=12,
                                            temperature=0.8, seed=4, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == llama.chat(MESSAGES, max_new_tokens=12, temperature=0.8, seed=4)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens >= 1


def test_completions_n_and_stop(client, llama):
    reply = client.completions.create(model="llama", prompt="The quick brown fox", max_tokens=8,
                                      temperature=0.9, seed=7, n=3, stop=["e"])
    solo = llama("The quick brown fox", max_new_tokens=8, do_sample=True, temperature=0.9,
                 seed=7, num_return_sequences=3, stop="e", return_full_text=False)
    assert [c.text for c in reply.choices] == [r["generated_text"] for r in solo]
    assert [c.index for c in reply.choices] == [0, 1, 2]


def test_streaming_completion_ends_with_done(http):
    body = {"model": "llama", "prompt": "Edge", "max_tokens": 5, "stream": True, "seed": 1}
    with http.stream("POST", "/v1/completions", json=body) as r:
        assert r.status_code == 200
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[6:]) for line in lines[:-1]]
    assert events[-1]["choices"][0]["finish_reason"] in ("stop", "length")


def test_embeddings_float_and_base64(client, folders):
    pipe = edgelm.Pipeline(folders["emb"], threads=1)
    texts = ["A man is eating food.", "Edge devices"]
    got = client.embeddings.create(model="emb", input=texts)  # the client asks for base64
    raw = client.embeddings.create(model="emb", input=texts, encoding_format="float")
    want = pipe(texts)
    for result in (got, raw):
        vectors = np.array([d.embedding for d in result.data])
        np.testing.assert_allclose(vectors, want, atol=1e-5)
    tokens = sum(len(e.ids) for e in pipe.tokenizer.encode_batch(texts).encodings)
    assert got.usage.prompt_tokens == raw.usage.prompt_tokens == tokens > 0


def test_classify_has_tei_shape(http, folders):
    one = http.post("/v1/classify", json={"model": "cls", "inputs": "I loved it"}).json()
    assert isinstance(one, list) and set(one[0]) == {"label", "score"}
    assert abs(sum(r["score"] for r in one) - 1) < 1e-4
    many = http.post("/v1/classify", json={"model": "ner", "inputs": ["a b", "c"]}).json()
    assert isinstance(many, list) and len(many) == 2


def test_unknown_model_is_not_found(client):
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="nope", messages=MESSAGES)


def test_api_key_is_required_except_for_health(base_url):
    bare = openai.OpenAI(base_url=f"{base_url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        bare.models.list()
    assert httpx.get(f"{base_url}/health").status_code == 200
    assert httpx.get(f"{base_url}/metrics").status_code == 401


def test_models_and_metrics(client, http):
    assert sorted(m.id for m in client.models.list()) == ["cls", "emb", "llama", "ner"]
    assert client.models.retrieve("llama").id == "llama"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("../llama")
    text = http.get("/metrics").text
    assert "edgelm_requests_total" in text and "edgelm_batch_size" in text
    assert "edgelm_server_info{id=" in text and "process_resident_memory_bytes" in text


def test_concurrent_requests_get_their_solo_text(client, llama):
    """Requests sharing the running batch (joining at whatever step) decode as if alone."""
    from concurrent.futures import ThreadPoolExecutor

    cases = [(f"Edge devices {i}", dict(max_tokens=6 + 2 * i, temperature=0.6 + 0.1 * i, seed=i))
             for i in range(4)]
    cases += [("The quick brown fox", dict(max_tokens=12, temperature=0)),
              ("Café déjà vu", dict(max_tokens=9, temperature=0, stop=["e"]))]

    def ask(case):
        prompt, options = case
        return client.completions.create(model="llama", prompt=prompt, **options)

    with ThreadPoolExecutor(len(cases)) as pool:
        replies = list(pool.map(ask, cases))
    for (prompt, options), reply in zip(cases, replies):
        solo = llama(prompt, return_full_text=False, max_new_tokens=options["max_tokens"],
                     temperature=options["temperature"], seed=options.get("seed"),
                     stop=options.get("stop", ()))
        assert reply.choices[0].text == solo[0]["generated_text"]


def test_a_list_of_prompts_is_one_job_each(client, llama):
    reply = client.completions.create(model="llama", prompt=["Edge", "The quick"], n=2,
                                      max_tokens=5, temperature=1.0, seed=3)
    want = [r["generated_text"] for p in ("Edge", "The quick")
            for r in llama(p, return_full_text=False, max_new_tokens=5, do_sample=True, seed=3,
                           num_return_sequences=2)]
    assert [c.text for c in reply.choices] == want
    assert reply.usage.completion_tokens >= 4
