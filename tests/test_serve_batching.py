"""Continuous batching gives each request the text it would get alone through the pipeline."""

from __future__ import annotations

import pytest

pytest.importorskip("starlette")

import edgelm  # noqa: E402
from edgelm.generation.config import GenerationConfig  # noqa: E402
from edgelm.serve.job import End, Job, Piece  # noqa: E402
from edgelm.serve.prompts import completion_text, encode_prompt  # noqa: E402
from edgelm.serve.scheduler import Scheduler  # noqa: E402

PROMPTS = ["The quick brown fox", "Edge devices", "Café déjà vu: naïve résumé, coöperate!",
           "A", "Emoji 🙂🚀 and numbers 12345 67.89 mixed in text."]
OPTIONS = [dict(max_new_tokens=12), dict(max_new_tokens=7, do_sample=True, seed=3),
           dict(max_new_tokens=20, do_sample=True, temperature=0.7, top_p=0.9, seed=11),
           dict(max_new_tokens=15, stop=("e",)),
           dict(max_new_tokens=9, do_sample=True, seed=5, num_return_sequences=3,
                repetition_penalty=1.3)]


class Collect:
    def __init__(self, n: int) -> None:
        self.pieces = [""] * n
        self.ends: dict[int, End] = {}

    def __call__(self, event) -> None:
        if isinstance(event, Piece):
            self.pieces[event.index] += event.text
        elif isinstance(event, End):
            self.ends[event.index] = event
        else:
            raise AssertionError(event)


def make_job(pipe, text: str, options: dict, capacity: int) -> tuple[Job, Collect, list[int]]:
    config = GenerationConfig.make(**options)
    ids, _ = encode_prompt(pipe, text, max_tokens=config.max_new_tokens, capacity=capacity,
                           special_tokens=True)
    out = Collect(config.num_return_sequences)
    return Job(ids, config, out, tokenizer=pipe.tokenizer, eos_ids=pipe.eos_ids,
               pad_id=pipe.pad_id), out, ids


@pytest.mark.parametrize("name", ["llama", "gpt2"])
def test_requests_joining_at_different_steps_get_their_solo_text(exported, name):
    pipe = edgelm.Pipeline(exported(name, "fp32"), threads=1)
    capacity = pipe.info.max_positions
    scheduler = Scheduler(pipe.runner, name=name, capacity=capacity, max_rows=16,
                          max_queue=8, pad_id=pipe.pad_id)
    made = [make_job(pipe, t, o, capacity) for t, o in zip(PROMPTS, OPTIONS)]
    for i, (job, _, _) in enumerate(made):  # job i joins after 2*i ticks
        scheduler.submit(job)
        for _ in range(2):
            scheduler.tick()
    for _ in range(100):
        if not scheduler.jobs and not scheduler.waiting:
            break
        scheduler.tick()
    assert scheduler.batch.used == 0 and not scheduler.jobs
    assert scheduler.peak_rows >= 4  # requests did share steps
    assert scheduler.batch.moves >= 1  # and rows moved to fill the holes of finished ones
    for text, options, (job, out, ids) in zip(PROMPTS, OPTIONS, made):
        solo = pipe(text, return_full_text=False, **options)
        assert [completion_text(pipe, ids, out.ends[i].tokens, job.config.stop)
                for i in range(job.n)] == [r["generated_text"] for r in solo]
        if job.n == 1:  # streamed pieces: the pipeline's stream
            assert out.pieces[0] == "".join(pipe.stream(text, **options))



def test_a_failing_step_fails_its_requests_and_the_next_one_runs(exported, monkeypatch):
    from edgelm.serve.job import Failed

    pipe = edgelm.Pipeline(exported("llama", "fp32"), threads=1)
    capacity = pipe.info.max_positions
    scheduler = Scheduler(pipe.runner, name="llama", capacity=capacity, max_rows=4,
                          max_queue=4, pad_id=pipe.pad_id)
    events: list = []
    job, _, _ = make_job(pipe, "Edge devices", dict(max_new_tokens=5), capacity)
    job.emit = events.append
    real_step = pipe.runner.step
    monkeypatch.setattr(pipe.runner, "step", lambda *a: (_ for _ in ()).throw(
        RuntimeError("onnxruntime says no\nsecond line")))
    scheduler.submit(job)
    scheduler.tick()
    assert [e.message for e in events if isinstance(e, Failed)] == ["onnxruntime says no"]
    assert not scheduler.jobs and scheduler.batch.used == 0
    monkeypatch.setattr(pipe.runner, "step", real_step)
    again, out, ids = make_job(pipe, "Edge devices", dict(max_new_tokens=5), capacity)
    scheduler.submit(again)
    for _ in range(10):
        scheduler.tick()
    assert completion_text(pipe, ids, out.ends[0].tokens, ()) == \
        pipe("Edge devices", max_new_tokens=5, return_full_text=False)[0]["generated_text"]
