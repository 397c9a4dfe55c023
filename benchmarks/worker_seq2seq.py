"""One encoder-decoder engine in its own process, for seq2seq_decode.py.

    python worker_seq2seq.py torch CHECKPOINT --batch 8 --beams 4 --serve
    python worker_seq2seq.py edgelm FOLDER ...
    python worker_seq2seq.py ct2 CT2_FOLDER ...        (CTranslate2's environment)
    python worker_seq2seq.py optimum OPTIMUM_FOLDER ... (optimum's environment)

A call translates --batch sources of --source tokens into exactly --new tokens
(eos held off by each engine's minimum length), greedy or --beams.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from harness import peak_rss_mb, serve  # this folder is on sys.path as a script


def sources(batch: int, length: int, vocab: int, eos: int) -> list[list[int]]:
    rng = np.random.default_rng(0)
    return [[*rng.integers(300, min(vocab, 20000), size=length - 1).tolist(), eos]
            for _ in range(batch)]


def torch_engine(path: str, threads: int):
    import torch
    from transformers import AutoModelForSeq2SeqLM

    torch.set_num_threads(threads)
    model = AutoModelForSeq2SeqLM.from_pretrained(path).eval()

    def generate(rows: list[list[int]], new: int, beams: int) -> None:
        with torch.inference_mode():
            model.generate(torch.tensor(rows), max_new_tokens=new, min_new_tokens=new,
                           num_beams=beams, do_sample=False)

    return generate, model.config


def optimum_engine(path: str, threads: int):
    import onnxruntime as ort
    import torch
    from optimum.onnxruntime import ORTModelForSeq2SeqLM

    torch.set_num_threads(threads)
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    model = ORTModelForSeq2SeqLM.from_pretrained(path, session_options=options)

    def generate(rows: list[list[int]], new: int, beams: int) -> None:
        model.generate(input_ids=torch.tensor(rows), max_new_tokens=new, min_new_tokens=new,
                       num_beams=beams, do_sample=False)

    return generate, model.config


def edgelm_engine(path: str, threads: int):
    import edgelm

    pipe = edgelm.Pipeline(path, threads=threads)

    def generate(rows: list[list[int]], new: int, beams: int) -> None:
        config = edgelm.GenerationConfig(max_new_tokens=new, min_new_tokens=new,
                                         num_beams=beams)
        pipe.generate_ids(rows, config)

    return generate, json.loads((Path(path) / "config.json").read_text()) \
        if (Path(path) / "config.json").exists() else None


def ct2_engine(path: str, threads: int):
    import ctranslate2

    translator = ctranslate2.Translator(path, device="cpu", intra_threads=threads,
                                        inter_threads=1)
    vocabulary = Path(path) / "shared_vocabulary.json"
    tokens = json.loads(vocabulary.read_text())

    def generate(rows: list[list[int]], new: int, beams: int) -> None:
        translator.translate_batch([[tokens[i] for i in ids] for ids in rows],
                                   max_decoding_length=new, min_decoding_length=new,
                                   beam_size=beams, return_scores=False)

    return generate, None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("engine", choices=["torch", "edgelm", "ct2", "optimum"])
    parser.add_argument("path")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--beams", type=int, default=1)
    parser.add_argument("--source", type=int, default=32)
    parser.add_argument("--new", type=int, default=32)
    parser.add_argument("--vocab", type=int, required=True)
    parser.add_argument("--eos", type=int, required=True)
    parser.add_argument("--serve", action="store_true")
    args = parser.parse_args()
    engines = {"torch": torch_engine, "edgelm": edgelm_engine, "ct2": ct2_engine,
               "optimum": optimum_engine}
    generate, _ = engines[args.engine](args.path, args.threads)
    rows = sources(args.batch, args.source, args.vocab, args.eos)
    generate(rows, 4, args.beams)  # warm-up

    def finish() -> dict[str, float]:
        return {"peak_rss_mb": round(peak_rss_mb(), 1)}

    if args.serve:
        serve(lambda: generate(rows, args.new, args.beams), finish,
              settle=lambda: generate(rows, 4, args.beams))
    else:
        print(json.dumps(finish()))


if __name__ == "__main__":
    main()
