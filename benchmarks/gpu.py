"""GPU: edgelm fp16 (--target cuda) vs PyTorch eager fp16, on one CUDA device.

    python benchmarks/gpu.py [--rounds 3]

GPT-2 124M and SmolLM2-135M shapes (greedy, 16-token prompt + 64 new tokens,
batch 1 and 16; time to first token; 4-beam) and BERT-base shapes (batch 32 x
128 tokens). Weights are seeded random values of the real shapes: the GPU
machine reaches no registry, so SmolLM2's packaged weights cannot travel there,
and speed does not depend on the values. Each engine runs in its own process,
in alternating rounds; medians. Results: benchmarks/results/gpu.{md,json}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gpt2_decode import CACHE as BENCH_CACHE
from gpt2_decode import bpe_tokenizer, gpt2_checkpoint
from harness import Engine, hardware, run_alternating, write_results

from edgelm.bench.exports import cached_export

HERE = Path(__file__).resolve().parent
CACHE = BENCH_CACHE / "gpu"  # gpt2-124m comes from gpt2_decode's cache (the same checkpoint)
SMOLLM2_SHAPES = {  # HuggingFaceTB/SmolLM2-135M's config.json
    "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
    "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
    "max_position_embeddings": 8192, "rope_theta": 100000.0, "rms_norm_eps": 1e-5,
    "tie_word_embeddings": True, "bos_token_id": 0, "eos_token_id": 0,
}


def _wordpiece_tokenizer(folder: Path, vocab_size: int) -> None:
    """A WordPiece tokenizer of BERT's vocabulary size (speed needs only the ids)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = {t: i for i, t in enumerate(specials)}
    vocab |= {f"w{i}": i for i in range(len(specials), vocab_size)}
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            cls_token="[CLS]", sep_token="[SEP]").save_pretrained(folder)


def checkpoint(name: str) -> Path:
    if name == "gpt2-124m":
        return gpt2_checkpoint()
    folder = CACHE / name
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    import transformers as tf

    torch.manual_seed(0)
    if name == "smollm2-135m-shapes":
        model = tf.LlamaForCausalLM(tf.LlamaConfig(architectures=["LlamaForCausalLM"],
                                                   **SMOLLM2_SHAPES))
        model.eval().save_pretrained(folder)
        bpe_tokenizer(folder, model.config.vocab_size, eos_id=0, eos_token="<eos>")
    else:
        model = tf.BertForSequenceClassification(
            tf.BertConfig(num_labels=2, architectures=["BertForSequenceClassification"]))
        model.eval().save_pretrained(folder)
        _wordpiece_tokenizer(folder, model.config.vocab_size)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batches", default="16")
    args = parser.parse_args()
    python = [sys.executable]
    payload = {"hardware": hardware(), "models": {}}
    gpu = payload["hardware"]["gpu"]
    lines = ["# GPU: edgelm fp16 (--target cuda) vs PyTorch eager fp16\n",
             f"GPU: {gpu}; CPU: {payload['hardware']['cpu']}; "
             f"{args.rounds} alternating rounds, each engine in its own process, medians.\n"]
    batches = [int(b) for b in args.batches.split(",")]
    for name in ("gpt2-124m", "smollm2-135m-shapes"):
        ckpt = checkpoint(name)
        folder = cached_export(ckpt, "fp16", "cuda")
        worker = [*python, str(HERE / "worker_decoder.py")]
        common = ["--device", "cuda", "--threads", "4", "--batches", args.batches, "--runs", "3"]
        results = run_alternating([
            Engine(name="PyTorch fp16", command=[*worker, "torch", str(ckpt), *common]),
            Engine(name="edgelm fp16", command=[*worker, "edgelm", str(folder), *common]),
        ], args.rounds)
        payload["models"][name] = {k: r.rounds for k, r in results.items()}
        base = results["PyTorch fp16"]
        header = ["tokens/s b1", "vs PyTorch"] + [
            h for b in batches for h in (f"tokens/s b{b}", "vs PyTorch")] + [
            "TTFT ms", "beam-4 tokens/s"]
        lines += [f"\n## {name}: 16-token prompt + 64 new tokens, greedy\n",
                  "| engine | " + " | ".join(header) + " |",
                  "|---" * (len(header) + 1) + "|"]
        for engine, r in results.items():
            cells = [f"{r.median('tokens_per_s'):.1f}",
                     f"{r.median('tokens_per_s') / base.median('tokens_per_s'):.2f}x"]
            for b in batches:
                key = f"tokens_per_s_b{b}"
                cells += [f"{r.median(key):.0f}", f"{r.median(key) / base.median(key):.2f}x"]
            cells += [f"{r.median('ttft_ms'):.1f}", f"{r.median('beam_tokens_per_s'):.1f}"]
            lines.append(f"| {engine} | " + " | ".join(cells) + " |")
    ckpt = checkpoint("bert-base")
    folder = cached_export(ckpt, "fp16", "cuda")
    worker = [*python, str(HERE / "worker_encoder.py")]
    common = ["--device", "cuda", "--threads", "4", "--batch", "32", "--length", "128",
              "--runs", "50"]
    results = run_alternating([
        Engine(name="PyTorch fp16", command=[*worker, "torch", str(ckpt), *common]),
        Engine(name="edgelm fp16", command=[*worker, "edgelm", str(folder / "model.onnx"),
                                            *common]),
    ], args.rounds)
    payload["models"]["bert-base"] = {k: r.rounds for k, r in results.items()}
    base = results["PyTorch fp16"].median("ms")
    lines += ["\n## bert-base: batch 32 x 128 tokens, sequence classification\n",
              "| engine | ms | speed-up vs PyTorch |", "|---|---|---|"]
    for engine, r in results.items():
        lines.append(f"| {engine} | {r.median('ms'):.2f} | {base / r.median('ms'):.2f}x |")
    write_results(HERE / "results" / "gpu.md", payload, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
