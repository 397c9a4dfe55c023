"""One decoder engine in its own process: greedy (and beam) decoding figures.

    python worker_decoder.py torch CHECKPOINT --threads 2
    python worker_decoder.py edgelm FOLDER --threads 2
    python worker_decoder.py ct2 CT2_FOLDER --threads 2   (CTranslate2's own environment)
    python worker_decoder.py genai GENAI_FOLDER --threads 2   (onnxruntime-genai's)
    python worker_decoder.py llama MODEL.gguf --threads 2 --beams 1   (llama-cpp-python's)
    python worker_decoder.py torch CHECKPOINT --device cuda --batches 1,16  (fp16 on the GPU)

Prints one JSON line: load_s, ttft_ms, per_token_ms, tokens_per_s (new tokens
over the whole call, prompt included), beam_tokens_per_s, peak_rss_mb; with
--batches, tokens_per_s_bN (new tokens of all rows per second) for each batch size.
Every run generates exactly --new tokens (eos is ignored via min_new_tokens).
With --serve (harness.run_interleaved) it first answers requests for bursts of
greedy generations (their ms, one JSON list per request), then prints that line.
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time
from pathlib import Path

import numpy as np
from harness import peak_rss_mb, serve  # this folder is on sys.path as a script


def prompt_ids(length: int, vocab: int) -> list[int]:
    return np.random.default_rng(0).integers(100, min(vocab, 20000), size=length).tolist()


def torch_engine(path: str, threads: int, device: str):
    """PyTorch eager `generate`: float32 on CPU, float16 on CUDA."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    dtype = torch.float16 if device == "cuda" else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype).to(device).eval()

    def generate(rows: list[list[int]], new: int, beams: int = 1, first_only: bool = False
                 ) -> None:
        with torch.inference_mode():
            model.generate(torch.tensor(rows, device=device),
                           attention_mask=torch.ones(len(rows), len(rows[0]), dtype=torch.long,
                                                     device=device),
                           max_new_tokens=1 if first_only else new,
                           min_new_tokens=1 if first_only else new, num_beams=beams,
                           do_sample=False, pad_token_id=0)
        if device == "cuda":
            torch.cuda.synchronize()

    return generate, int(model.config.vocab_size)


def edgelm_engine(path: str, threads: int, device: str, packed_cache: bool = False):
    import edgelm
    from edgelm.generation.search import sample_or_greedy

    pipe = edgelm.Pipeline(path, threads=threads, device=device, packed_cache=packed_cache)

    def generate(rows: list[list[int]], new: int, beams: int = 1, first_only: bool = False
                 ) -> None:
        config = edgelm.GenerationConfig(max_new_tokens=1 if first_only else new,
                                         min_new_tokens=1 if first_only else new,
                                         num_beams=beams)
        if beams > 1:
            pipe.generate_ids(rows, config)
        else:
            for _ in sample_or_greedy(pipe.runner, rows, config, pipe.eos_ids, pad_id=0):
                pass

    return generate, pipe.info.vocab_size


def ct2_engine(path: str, threads: int, device: str):
    import ctranslate2

    generator = ctranslate2.Generator(path, device="cpu", intra_threads=threads, inter_threads=1)
    tokens = json.loads((Path(path) / "vocabulary.json").read_text())

    def generate(rows: list[list[int]], new: int, beams: int = 1, first_only: bool = False
                 ) -> None:
        n = 1 if first_only else new
        generator.generate_batch([[tokens[i] for i in ids] for ids in rows], max_length=n,
                                 min_length=n,
                                 beam_size=beams,
                                 sampling_topk=1, include_prompt_in_result=False)

    return generate, len(tokens)


def genai_engine(path: str, threads: int, device: str):
    """onnxruntime-genai's own generation loop over the folder its builder wrote (the
    thread count is set in that folder's genai_config.json by the benchmark)."""
    import onnxruntime_genai as og

    model = og.Model(og.Config(path))
    config = json.loads((Path(path) / "genai_config.json").read_text())["model"]
    vocab = config["vocab_size"]
    # Its sliding-window attention (Gemma 2) wants a cache at least the window long, so
    # max_length may exceed the call's tokens: the loop stops after `new` tokens itself.
    window = int((config["decoder"].get("sliding_window") or {}).get("window_size", 0))

    def generate(rows: list[list[int]], new: int, beams: int = 1, first_only: bool = False
                 ) -> None:
        n = 1 if first_only else new
        params = og.GeneratorParams(model)
        total = len(rows[0]) + n
        params.set_search_options(max_length=max(total, window), min_length=total,
                                  do_sample=False, batch_size=len(rows), num_beams=beams)
        generator = og.Generator(model, params)
        generator.append_tokens(np.array(rows, dtype=np.int32))
        for _ in range(n):
            generator.generate_next_token()

    return generate, int(vocab)


def llama_engine(path: str, threads: int, device: str):
    """llama.cpp through llama-cpp-python: one greedy sequence through its Llama class;
    several rows through llama.cpp's own batched API (one llama_batch holding every
    row's tokens under its own sequence id, one llama_decode per step), in a context
    made for that many sequences with the Llama class's settings (each row's tokens
    equal its tokens alone: checked on SmolLM2 Q8_0)."""
    import llama_cpp
    from llama_cpp import _internals

    # flash attention on, as llama.cpp's own tools default to on the CPU (the Llama class
    # defaults to off): 1.1x its tokens/s at batch 8 here, the same tokens
    model = llama_cpp.Llama(model_path=path, n_threads=threads, n_threads_batch=threads,
                            n_ctx=2048, n_batch=512, flash_attn=True, verbose=False)
    vocab = int(model.n_vocab())
    contexts: dict[int, _internals.LlamaContext] = {}

    def context_for(rows: int) -> _internals.LlamaContext:
        if rows not in contexts:
            params = llama_cpp.llama_context_params.from_buffer_copy(model.context_params)
            params.n_ctx, params.n_batch, params.n_seq_max = 1024 * rows, 512 * rows, rows
            contexts[rows] = _internals.LlamaContext(model=model._model, params=params,
                                                     verbose=False)
        return contexts[rows]

    def batched(rows: list[list[int]], new: int) -> list[list[int]]:
        """Each row's `new` greedy tokens."""
        ctx = context_for(len(rows))
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(ctx.ctx), True)
        batch = llama_cpp.llama_batch_init(sum(map(len, rows)), 0, len(rows))
        try:
            def step(tokens: list[tuple[int, int, int, bool]]) -> None:
                batch.n_tokens = len(tokens)
                for i, (token, pos, seq, wanted) in enumerate(tokens):
                    batch.token[i], batch.pos[i], batch.n_seq_id[i] = token, pos, 1
                    batch.seq_id[i][0], batch.logits[i] = seq, wanted
                if llama_cpp.llama_decode(ctx.ctx, batch) != 0:
                    raise RuntimeError("llama_decode failed")

            step([(t, p, s, p == len(row) - 1) for s, row in enumerate(rows)
                  for p, t in enumerate(row)])
            lengths, generated = [len(row) for row in rows], [[] for _ in rows]
            for _ in range(new):
                # the last decode's outputs, in row order, counted from the end
                picks = [int(np.ctypeslib.as_array(
                    llama_cpp.llama_get_logits_ith(ctx.ctx, i - len(rows)), shape=(vocab,)
                ).argmax()) for i in range(len(rows))]
                for tokens, pick in zip(generated, picks):
                    tokens.append(pick)
                step([(t, lengths[s], s, True) for s, t in enumerate(picks)])
                lengths = [n + 1 for n in lengths]
            return generated
        finally:
            llama_cpp.llama_batch_free(batch)

    def generate(rows: list[list[int]], new: int, beams: int = 1, first_only: bool = False
                 ) -> list[list[int]]:
        if beams > 1:
            raise SystemExit("the llama engine has no beam search: pass --beams 1")
        if len(rows) > 1:
            return batched(rows, 1 if first_only else new)
        model.reset()
        model.eval(rows[0])
        tokens = []
        for _ in range(1 if first_only else new):
            tokens.append(model.sample(top_k=1, temp=0.0))  # greedy, whatever the token
            model.eval([tokens[-1]])
        return [tokens]

    return generate, vocab


def measure(generate, ids: list[list[int]], new: int, runs: int, beams: int,
            batches: list[int], vocab: int, prompt: int) -> dict[str, float]:
    """TTFT, per-token time and tokens/s at batch 1, beam tokens/s, tokens/s at `batches`."""
    ttft, total = [], []
    for _ in range(runs):
        t = time.perf_counter()
        generate(ids, new, first_only=True)
        ttft.append(time.perf_counter() - t)
        t = time.perf_counter()
        generate(ids, new)
        total.append(time.perf_counter() - t)
    t = time.perf_counter()
    generate(ids, new, beams=beams)
    beam_s = time.perf_counter() - t
    first, whole = statistics.median(ttft), statistics.median(total)
    result = {
        "ttft_ms": round(first * 1e3, 2),
        "per_token_ms": round((whole - first) / (new - 1) * 1e3, 3),
        "tokens_per_s": round(new / whole, 2),
        "beam_tokens_per_s": round(new / beam_s, 2),
    }
    for batch in batches:
        rows = [prompt_ids(prompt, vocab)] * batch
        generate(rows, 8)  # warm-up at this shape
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            generate(rows, new)
            times.append(time.perf_counter() - t)
        result[f"tokens_per_s_b{batch}"] = round(batch * new / statistics.median(times), 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine",
                        choices=["torch", "edgelm", "edgelm-packed", "ct2", "genai", "llama"])
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompt", type=int, default=16)
    parser.add_argument("--new", type=int, default=64)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rows", type=int, default=1,
                        help="equal prompts decoded together in every generation")
    parser.add_argument("--beams", type=int, default=4)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--batches", default="",
                        help="Also greedy tokens/s at these batch sizes, e.g. 16,32.")
    parser.add_argument("--serve", action="store_true",
                        help="greedy bursts on request (harness), the rest at the end")
    args = parser.parse_args()
    start = time.perf_counter()
    engines = {"torch": torch_engine, "edgelm": edgelm_engine,
               "edgelm-packed": functools.partial(edgelm_engine, packed_cache=True),
               "ct2": ct2_engine, "genai": genai_engine, "llama": llama_engine}
    generate, vocab = engines[args.engine](args.path, args.threads, args.device)
    load_s = time.perf_counter() - start
    ids = [prompt_ids(args.prompt, vocab)] * args.rows
    generate(ids, 8)  # warm-up
    batches = [int(b) for b in args.batches.split(",") if b]

    def finish() -> dict[str, float]:
        result = measure(generate, ids, args.new, args.runs, args.beams, batches, vocab,
                         args.prompt)
        return {"load_s": round(load_s, 3), **result, "peak_rss_mb": round(peak_rss_mb(), 1)}

    if args.serve:
        serve(lambda: generate(ids, args.new), finish, settle=lambda: generate(ids, 8))
    else:
        print(json.dumps(finish()))


if __name__ == "__main__":
    main()
