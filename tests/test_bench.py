"""`edgelm bench`: its JSON, CSV and PNG carry the right figures, checked independently."""

from __future__ import annotations

import csv
import json
import math
import struct

import numpy as np
import pytest
import torch
import transformers
from click.testing import CliRunner

import edgelm
import edgelm.bench.run as bench_run
from edgelm.bench import BenchOptions, Point, VariantResult, run_bench, trust
from edgelm.bench.measure import filler_text, windows
from edgelm.bench.run import PERPLEXITY_WINDOW
from edgelm.cli import main

TEXTS = ["I loved this movie", "Terrible, boring and far too long.", "Great acting!",
         "The plot was a mess", "A wonderful evening", "I would not watch it again"]


@pytest.fixture(autouse=True)
def bench_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("EDGELM_CACHE", str(tmp_path_factory.getbasetemp() / "bench-cache"))


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def test_classifier_bench_writes_json_csv_and_plot(checkpoints, tmp_path):
    data = tmp_path / "data.jsonl"
    labels = ["positive", 0, 2, "negative", 2, 0]  # names and indices both accepted
    data.write_text("".join(json.dumps({"text": t, "label": y}) + "\n"
                            for t, y in zip(TEXTS, labels)))
    out = tmp_path / "bench"
    result = invoke("bench", checkpoints["bert-cls"], "--data", data, "--batch-sizes", "1,4",
                    "--seq-lens", "8,24", "--rounds", "2", "--runs", "3", "--threads", "1",
                    "--json", f"{out}.json", "--csv", f"{out}.csv", "--plot", f"{out}.png")
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and "speed-up" in result.output
    # two rounds cannot show a spread: every speed-up is marked and the note says why
    assert "only 2 round(s)" in result.output and "x?" in result.output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["name"] == checkpoints["bert-cls"].name
    assert report["task"] == "text-classification" and not report["interrupted"]
    assert report["hardware"]["cores"] >= 1 and report["hardware"]["versions"]["onnxruntime"]
    assert report["options"]["threads"] == 1
    variants = {v["name"]: v for v in report["variants"]}
    assert list(variants) == ["PyTorch", "edgelm fp32", "edgelm int8"]
    model = transformers.AutoModelForSequenceClassification.from_pretrained(
        checkpoints["bert-cls"]).eval()
    tokenizer = transformers.AutoTokenizer.from_pretrained(checkpoints["bert-cls"])
    with torch.no_grad():
        predicted = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits.argmax(-1)
    truth = np.array([2, 0, 2, 0, 2, 0])
    expected_accuracy = float((predicted.numpy() == truth).mean())
    for name, v in variants.items():
        assert v["error"] is None and v["rounds"] == 2
        assert v["size_mb"] > 0 and v["load_s"] > 0 and v["peak_rss_mb"] > 20
        assert [(p["batch"], p["seq_len"]) for p in v["points"]] == [(1, 8), (1, 24), (4, 8),
                                                                     (4, 24)]
        for p, base in zip(v["points"], variants["PyTorch"]["points"]):
            assert 0 < p["p50_ms"] <= p["p90_ms"] <= p["p99_ms"]
            assert p["items_per_s"] == pytest.approx(p["batch"] / p["p50_ms"] * 1e3, rel=1e-3)
            assert p["bursts"] == 2 and len(p["burst_ms"]) == 2 and not p["settled"]
            low, high = sorted(p["burst_ms"])
            assert p["spread"] == pytest.approx((high - low) / ((high + low) / 2), abs=1e-4)
            ratios = [b / m for b, m in zip(base["burst_ms"], p["burst_ms"])]
            assert p["speedup"] == pytest.approx(sum(ratios) / 2, rel=1e-3)  # paired bursts
        if name != "edgelm int8":
            assert v["accuracy"] == pytest.approx(expected_accuracy)
    assert variants["edgelm fp32"]["agreement"] == 1.0
    assert variants["PyTorch"]["agreement"] is None
    assert variants["edgelm int8"]["size_mb"] < variants["edgelm fp32"]["size_mb"]
    assert variants["edgelm fp32"]["peak_rss_mb"] < variants["PyTorch"]["peak_rss_mb"]
    with (tmp_path / "bench.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert {r["variant"] for r in rows} == set(variants)
    pytorch_rows = [r for r in rows if r["variant"] == "PyTorch"]
    assert all(float(r["speedup"]) == 1.0 for r in pytorch_rows)
    assert png_size(tmp_path / "bench.png") == (1200, 800)


def test_decoder_bench_reports_tokens_ttft_and_perplexity(checkpoints, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(" ".join(TEXTS * 3))
    report = run_bench(checkpoints["gpt2"], BenchOptions(
        precisions=("fp32", "int8"), text=text, batch_sizes=(1, 2), seq_lens=(8,), rounds=1,
        runs=2, new_tokens=6, beams=2, threads=1, pause_s=0.01))
    variants = {v.name: v for v in report.variants}
    assert list(variants) == ["PyTorch", "edgelm fp32", "edgelm int8"]
    for v in variants.values():
        assert v.error is None and v.beam_tokens_per_s > 0
        assert [(p.batch, p.seq_len) for p in v.points] == [(1, 8), (2, 8)]
        for p in v.points:
            # each figure measured within its own calls (a duration, never a difference of
            # medians of different calls): TTFT is part of the call it is the median of
            assert p.bursts == 1 and 0 < p.ttft_ms <= p.burst_ms[0] and p.per_token_ms > 0
            assert p.tokens_per_s == pytest.approx(p.batch * 6 / p.burst_ms[0] * 1e3, rel=1e-3)
    # PyTorch's perplexity, computed here on the same tokens
    pipe = edgelm.Pipeline(variants["edgelm fp32"].path)
    ids = pipe.tokenizer.encode(text.read_text()).ids
    size = min(PERPLEXITY_WINDOW, pipe.info.max_positions)
    assert len(ids) > size  # two windows
    model = transformers.AutoModelForCausalLM.from_pretrained(checkpoints["gpt2"]).eval()
    losses = []
    for start, end in windows(len(ids), size):
        window = torch.tensor([ids[start:end]])
        with torch.no_grad():
            logits = model(window).logits[0, :-1]
        losses.append(torch.nn.functional.cross_entropy(logits, window[0, 1:], reduction="none"))
    assert sum(len(x) for x in losses) == len(ids) - 1  # every token but the first, once
    nll = torch.cat(losses).mean()
    assert variants["PyTorch"].perplexity == pytest.approx(math.exp(nll.item()), rel=1e-5)
    assert variants["edgelm fp32"].perplexity == pytest.approx(variants["PyTorch"].perplexity,
                                                               rel=1e-4)
    assert variants["edgelm fp32"].agreement == 1.0
    assert 0 <= variants["edgelm int8"].agreement <= 1


def test_onnx_folders_alone_and_interrupt(exported, tmp_path):
    calls = []

    def progress(label, done, total):
        calls.append(label)
        if done == 2:  # before the second variant's first burst
            raise KeyboardInterrupt

    folder = exported("bert-emb", "fp32")
    report = run_bench(folder.parent, BenchOptions(
        onnx=(folder, exported("bert-emb", "int8")), precisions=(), baseline=False,
        batch_sizes=(1,), seq_lens=(8,), rounds=2, runs=2, threads=1, pause_s=0.01),
        progress=progress)
    assert report.interrupted
    assert calls[:2] == [f"loading {v.name}" for v in report.variants]
    first, second = report.variants
    assert first.rounds == 1 and first.points[0].p50_ms > 0  # measured before the interrupt
    assert first.load_s is not None and first.peak_rss_mb is None  # end figures not reached
    assert second.rounds == 0 and second.points == []


@pytest.mark.parametrize("tokens", [5, 16, 40])
def test_filler_text_has_the_asked_token_count(exported, tokens):
    pipe = edgelm.Pipeline(exported("roberta-cls", "fp32"))

    class Counter:
        def token_count(self, text):
            return len(pipe.tokenizer.inner.encode(text).ids)

    assert Counter().token_count(filler_text(Counter(), tokens)) == tokens


@pytest.mark.parametrize(("args", "message"), [
    (["--batch-sizes", "0"], "batch_sizes=[0] must be"),
    (["--seq-lens", "4096"], "exceed the model's"),
    (["--data", "missing.jsonl"], "is not a file"),
    (["--precision", "int3"], "'int3' is not one of"),
    (["--new-tokens", "1"], "new_tokens=1 must be an integer >= 2"),
])
def test_bench_bad_options_are_one_line(checkpoints, args, message):
    result = CliRunner().invoke(main, ["bench", str(checkpoints["bert-cls"]), "--rounds", "1",
                                       *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output


def test_bench_bad_data_file_names_the_format(checkpoints, tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "fine"}\n')
    result = CliRunner().invoke(main, ["bench", str(checkpoints["bert-cls"]), "--data",
                                       str(data), "--rounds", "1"])
    assert result.exit_code == 1 and 'lacks a "text" or "label"' in result.output


@pytest.mark.parametrize(("n", "size"), [(2, 2), (5, 2), (10, 4), (100, 32), (33, 32), (31, 32)])
def test_perplexity_windows_predict_every_token_once(n, size):
    targets = [t for start, end in windows(n, size) for t in range(start + 1, end)]
    assert targets == list(range(1, n))
    assert all(1 < end - start <= size for start, end in windows(n, size))


def test_a_dying_worker_is_reported_and_the_others_measured(exported, monkeypatch):
    monkeypatch.setitem(bench_run.WORKER_MODULES, "pytorch", "edgelm.no_such_worker")
    folder = exported("bert-cls", "fp32")
    report = run_bench(folder.parent, BenchOptions(
        onnx=(folder,), precisions=(), batch_sizes=(1,), seq_lens=(8,), rounds=2, runs=2,
        threads=1, pause_s=0.01))
    pytorch, ours = report.variants
    assert pytorch.name == "PyTorch" and "No module named edgelm.no_such_worker" in pytorch.error
    assert pytorch.points == [] and ours.error is None and ours.rounds == 2
    assert ours.points[0].speedup is None  # nothing to pair with


@pytest.mark.parametrize(("bursts", "spread", "settled"), [
    ([10.0, 10.0, 10.0], 0.0, True),
    ([10.0, 11.0, 10.5], 0.0952, True),
    ([10.0, 13.0, 11.0], 0.2727, False),  # over the 15% limit
    ([10.0, 10.0], 0.0, False),  # too few rounds to tell
])
def test_spread_and_settled(bursts, spread, settled):
    point = Point(batch=1, seq_len=8, bursts=len(bursts), burst_ms=bursts)
    result = VariantResult(name="edgelm int8", engine="onnx", path="x", precision="int8",
                           size_mb=1.0, points=[point])
    trust.compare([result])
    assert point.spread == pytest.approx(spread, abs=1e-4) and point.settled is settled
    notes = trust.trust_notes([result], rounds=len(bursts))
    assert bool(notes) is not settled


def test_speedup_pairs_bursts_measured_together():
    # a busy second round slows both engines: pairing keeps the ratio, pooling would not
    base = Point(batch=1, seq_len=8, bursts=3, burst_ms=[20.0, 40.0, 20.0])
    ours = Point(batch=1, seq_len=8, bursts=3, burst_ms=[10.0, 20.0, 10.0])
    results = [VariantResult(name=name, engine="x", path="x", precision="fp32", size_mb=1.0,
                             points=[point]) for name, point in (("PyTorch", base),
                                                                 ("edgelm fp32", ours))]
    trust.compare(results)
    assert ours.speedup == 2.0 and base.speedup == 1.0
    assert ours.spread == 1.0 and trust.uncertain(ours, base)  # both bursts moved by 100%


def test_the_same_folder_twice_gets_two_names_and_two_results(exported):
    folder = exported("bert-cls", "int8")
    report = run_bench(folder.parent, BenchOptions(
        onnx=(folder, folder), precisions=(), baseline=False, batch_sizes=(1,), seq_lens=(8,),
        rounds=1, runs=2, threads=1, pause_s=0.01))
    names = [v.name for v in report.variants]
    assert len(set(names)) == 2 and all(v.rounds == 1 for v in report.variants)


def test_bench_checks_output_folders_before_measuring(checkpoints, tmp_path):
    result = CliRunner().invoke(main, ["bench", str(checkpoints["bert-cls"]), "--json",
                                       str(tmp_path / "missing" / "b.json")])
    assert result.exit_code == 1 and "does not exist" in result.output


@pytest.mark.parametrize(("family", "flags", "core"), [
    (26, {"avx512f", "avx512_vnni", "avx_vnni"}, "Zen 5"),
    (25, {"avx512f", "avx512_vnni"}, "Zen 4"),
    (25, {"avx2", "fma"}, "Zen 3"),
    (23, {"avx2", "rdpid"}, "Zen 2"),
    (6, {"avx2"}, None),  # an Intel family number
    (None, {"avx2"}, None),
])
def test_an_amd_cpu_is_named_with_its_core_generation(family, flags, core):
    """Virtual machines often call the CPU only "AMD EPYC"; results name Zen 4 and Zen 5
    apart, because their AVX-512 int8 speeds differ though their flags nearly match."""
    from edgelm.bench.system import amd_core

    assert amd_core(family, flags) == core
