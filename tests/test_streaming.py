"""Incremental detokenization and stop strings, on a byte-level BPE built here."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from edgelm.generation.streaming import StopStrings, TextStream


def byte_level_tokenizer() -> Tokenizer:
    """Every byte, plus one merge that is a space and the first byte of 'é' (0xC3 0xA9)."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    vocab["ĠÃ"] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[("Ġ", "Ã")]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def test_pieces_concatenate_to_the_whole_decode():
    tok = byte_level_tokenizer()
    prompt, generated = tok.encode("Hi").ids, tok.encode(" é là-bas ü").ids
    stream = TextStream(tok, prompt)
    pieces = [stream.push(t) for t in generated] + [stream.flush()]
    assert "".join(pieces) == " é là-bas ü" == tok.decode(prompt + generated)[len("Hi"):]
    assert all("\ufffd" not in p for p in pieces)


def test_stop_is_seen_on_the_token_that_completes_it_mid_character():
    tok = byte_level_tokenizer()
    prompt = tok.encode("Say").ids
    generated = tok.encode(" Hi é").ids  # ..., 'i', 'ĠÃ' (space + half of é), '©'
    assert tok.id_to_token(generated[-2]) == "ĠÃ"
    stops = StopStrings(tok, [prompt], ("Hi ",))
    seen = [stops(0, generated[: i + 1]) for i in range(len(generated))]
    assert seen == [False] * (len(generated) - 2) + [True, True]
    assert stops.finish(0) == " Hi é"
