"""Tiny random-init checkpoints with real tokenizers, built at test time.

Seeded, two layers, width 32-64: exporting one takes about a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import transformers
from tokenizers import (
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
    trainers,
)

CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "Edge devices run small, fast language models.",
    "Café déjà vu: naïve résumé, coöperate!",
    "東京は日本の首都です。北京是中国的首都。",
    "Emoji 🙂🚀 and numbers 12345 67.89 mixed in text.",
    "A sentence with    many   spaces\tand\nnewlines.",
    "I loved this movie; the acting was wonderful and the plot gripping.",
    "Terrible, boring and far too long. I would not watch it again.",
] * 4


def wordpiece_tokenizer() -> Tokenizer:
    """An uncased BERT-style WordPiece tokenizer trained on CORPUS."""
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=300, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))],
    )
    tok.decoder = decoders.WordPiece()
    return tok


def bytelevel_bpe_tokenizer() -> Tokenizer:
    """A RoBERTa-style byte-level BPE tokenizer trained on CORPUS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    tok.decoder = decoders.ByteLevel()
    return tok


def save_tokenizer(tok: Tokenizer, folder: Path, *, roberta: bool) -> int:
    """Save as transformers does (tokenizer.json + config); returns the vocab size."""
    names = (dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>", pad_token="<pad>",
                  mask_token="<mask>", cls_token="<s>", sep_token="</s>") if roberta else
             dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]",
                  mask_token="[MASK]",
                  model_input_names=["input_ids", "token_type_ids", "attention_mask"]))
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, model_max_length=128, **names)
    fast.save_pretrained(folder)
    return tok.get_vocab_size()


# name -> (transformers model class, byte-level BPE tokenizer (else WordPiece), config
# keywords beyond the shared shape). Token ids of the specials match each tokenizer.
_BPE_IDS = dict(pad_token_id=1, bos_token_id=0, eos_token_id=2)
ENCODERS: dict[str, tuple[str, bool, dict]] = {
    "bert-cls": ("BertForSequenceClassification", False, {}),
    "distilbert-cls": ("DistilBertForSequenceClassification", False, {}),
    "roberta-cls": ("RobertaForSequenceClassification", True, dict(**_BPE_IDS,
                                                                    type_vocab_size=1)),
    "bert-emb": ("BertModel", False, {}),
    "bert-ner": ("BertForTokenClassification", False, {}),
    "bert-qa": ("BertForQuestionAnswering", False, {}),
    "bert-nli": ("BertForSequenceClassification", False, {}),
    "bert-rerank": ("BertForSequenceClassification", False, {}),
    "roberta-qa": ("RobertaForQuestionAnswering", True, dict(**_BPE_IDS, type_vocab_size=1)),
    "electra-cls": ("ElectraForSequenceClassification", False, dict(embedding_size=32)),
    "albert-cls": ("AlbertForSequenceClassification", False, dict(embedding_size=32)),
    "mpnet-emb": ("MPNetModel", True, dict(_BPE_IDS)),
    "deberta-v2-cls": ("DebertaV2ForSequenceClassification", False, dict(
        relative_attention=True, pos_att_type=["p2c", "c2p"], position_biased_input=False,
        position_buckets=32, max_relative_positions=-1, norm_rel_ebd="layer_norm",
        share_att_key=True)),
    "modernbert-cls": ("ModernBertForSequenceClassification", False, dict(
        global_attn_every_n_layers=2, local_attention=16, pad_token_id=0, cls_token_id=2,
        sep_token_id=3, bos_token_id=2, eos_token_id=3)),
}
NER_LABELS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]


def encoder_config(name: str, vocab: int) -> transformers.PretrainedConfig:
    model_class, _, extra = ENCODERS[name]
    config_class = getattr(transformers, model_class).config_class
    common = dict(vocab_size=vocab, architectures=[model_class], max_position_embeddings=130)
    if model_class.startswith("DistilBert"):
        shape = dict(dim=64, n_layers=2, n_heads=4, hidden_dim=128)
    else:
        shape = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=128)
    if name.endswith("-ner"):
        shape.update(id2label=dict(enumerate(NER_LABELS)))
    elif name.endswith("-nli"):  # MNLI's order, as roberta-large-mnli and bart-large-mnli
        labels = ["contradiction", "neutral", "entailment"]
        shape.update(num_labels=3, id2label=dict(enumerate(labels)),
                     label2id={label: i for i, label in enumerate(labels)})
    elif name.endswith("-rerank"):  # a cross-encoder: one relevance logit
        shape.update(num_labels=1, id2label={0: "LABEL_0"})
    elif name.endswith("-cls"):
        shape.update(num_labels=3, id2label={0: "negative", 1: "neutral", 2: "positive"})
    return config_class(**common, **shape, **extra)


def build_encoder(name: str, folder: Path, seed: int = 0) -> Path:
    """Save a random-init checkpoint `name` (a key of ENCODERS) with its tokenizer."""
    model_class, bpe, _ = ENCODERS[name]
    folder.mkdir(parents=True, exist_ok=True)
    tok = bytelevel_bpe_tokenizer() if bpe else wordpiece_tokenizer()
    vocab = save_tokenizer(tok, folder, roberta=bpe)
    torch.manual_seed(seed)
    model = getattr(transformers, model_class)(encoder_config(name, vocab)).eval()
    model.save_pretrained(folder)
    return folder


def decoder_tokenizer() -> Tokenizer:
    """A GPT-2-style byte-level BPE tokenizer with <|endoftext|> (id 0)."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.decoder = decoders.ByteLevel()
    return tok


CHAT_TEMPLATE = (
    "{% for m in messages %}<|endoftext|>{{ m['role'] }}\n{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|endoftext|>assistant\n{% endif %}"
)

# name -> (transformers model class, config keywords). Shapes beyond the standard ones:
# head sizes 10, 12, 16, 20, 24 and 40 (padded to multiples of 16 in the graph),
# grouped-query attention, biases, tied and untied heads, a sliding window shorter than
# the prompts, partial rotary, sequential and parallel residuals.
DECODERS: dict[str, tuple[str, dict]] = {
    "gpt2": ("GPT2LMHeadModel", dict(n_embd=64, n_layer=2, n_head=4)),
    "gpt2-odd": ("GPT2LMHeadModel", dict(n_embd=48, n_layer=3, n_head=2,
                                         activation_function="gelu")),
    # Unscaled attention; a local layer whose window is shorter than the prompts.
    "gpt-neo": ("GPTNeoForCausalLM", dict(
        hidden_size=48, num_layers=2, num_heads=4, attention_types=[[["local", "global"], 1]],
        window_size=5, intermediate_size=96)),
    "llama": ("LlamaForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=True)),
    "llama-odd": ("LlamaForCausalLM", dict(
        hidden_size=40, intermediate_size=96, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=1, attention_bias=True, tie_word_embeddings=False,
        rope_theta=500.0)),
    "qwen2": ("Qwen2ForCausalLM", dict(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, tie_word_embeddings=False)),
    "mistral": ("MistralForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=10, sliding_window=6, tie_word_embeddings=False)),
    "qwen3": ("Qwen3ForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=20, tie_word_embeddings=True)),
    "phi3": ("Phi3ForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=4, tie_word_embeddings=False, pad_token_id=0)),
    # Phi-4-mini's partial rotary, on a head padded from 40 to 48.
    "phi3-partial": ("Phi3ForCausalLM", dict(
        hidden_size=80, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, partial_rotary_factor=0.4, tie_word_embeddings=True,
        pad_token_id=0)),
    "opt": ("OPTForCausalLM", dict(
        hidden_size=48, ffn_dim=96, num_hidden_layers=2, num_attention_heads=4,
        word_embed_proj_dim=48, pad_token_id=1)),
    "gpt-neox": ("GPTNeoXForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        rotary_pct=0.5, tie_word_embeddings=False)),
    "gpt-neox-sequential": ("GPTNeoXForCausalLM", dict(
        hidden_size=80, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        rotary_pct=0.4, use_parallel_residual=False, attention_bias=False,
        tie_word_embeddings=False)),
    "gemma": ("GemmaForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=1, head_dim=24)),
    # Soft caps low enough to bend the random fixture's scores and logits; a window
    # shorter than the prompts on alternate layers; query_pre_attn_scalar != head_dim.
    "gemma2": ("Gemma2ForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=16, sliding_window=6,
        layer_types=["sliding_attention", "full_attention"], attn_logit_softcapping=8.0,
        final_logit_softcapping=10.0)),
    # Two rotary tables: a local base on sliding layers, a linearly scaled global one.
    "gemma3": ("Gemma3ForCausalLM", dict(
        hidden_size=64, intermediate_size=128, num_hidden_layers=3, num_attention_heads=4,
        num_key_value_heads=2, head_dim=24, query_pre_attn_scalar=20, sliding_window=6,
        layer_types=["sliding_attention", "full_attention", "sliding_attention"],
        rope_parameters={"sliding_attention": {"rope_type": "default", "rope_theta": 100.0},
                         "full_attention": {"rope_type": "linear", "rope_theta": 10000.0,
                                            "factor": 4.0}})),
}


def decoder_config(name: str, vocab: int) -> transformers.PretrainedConfig:
    model_class, shape = DECODERS[name]
    config_class = getattr(transformers, model_class).config_class
    positions = "n_positions" if model_class.startswith("GPT2") else "max_position_embeddings"
    return config_class(vocab_size=vocab, bos_token_id=0, eos_token_id=0,
                        initializer_range=0.3, architectures=[model_class],
                        **{positions: 128}, **shape)


def build_decoder(name: str, folder: Path, seed: int = 0) -> Path:
    """Save a random-init causal LM `name` (a key of DECODERS) with its tokenizer.

    Weights are drawn wider than usual (initializer_range 0.3) so that the next-token
    distribution is peaked and greedy/beam choices are not decided by rounding; the
    eos row is doubled so that eos, length penalty and early stopping come into play.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tok = decoder_tokenizer()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
        unk_token="<|endoftext|>", model_max_length=128)
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    torch.manual_seed(seed)
    model_class = getattr(transformers, DECODERS[name][0])
    model = model_class(decoder_config(name, tok.get_vocab_size()))
    with torch.no_grad():  # make eos likely, so sequences end at different lengths
        model.get_output_embeddings().weight[0] *= 2.0
    model.eval().save_pretrained(folder)
    return folder


DECODER_PROMPTS = [
    "The quick brown fox",
    "Edge devices run",
    "Café déjà vu",
    "東京は日本",
    "I loved this movie; the acting was wonderful and the plot gripping.",
]


def teacher_forced(model, tokenizer, runner, prompt: str, new_tokens: int
                   ) -> tuple[list[int], int, np.ndarray]:
    """transformers' greedy continuation of `prompt`, fed whole through the ONNX runner.

    Returns the sequence, the prompt's length and the runner's logits at every position.
    """
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=new_tokens, min_new_tokens=new_tokens,
                             do_sample=False, pad_token_id=tokenizer.eos_token_id)[0].tolist()
    logits, _ = runner.prefill([out], len(out), every_position=True)
    return out, ids.shape[1], logits[0]


def agreement(sequence: list[int], prompt_length: int, logits: np.ndarray) -> tuple[int, int]:
    """How many of the continuation's tokens the logits' argmax predicts, and of how many."""
    predicted = logits[prompt_length - 1 : -1].argmax(-1)
    return int((predicted == np.array(sequence[prompt_length:])).sum()), \
        len(sequence) - prompt_length


def seq2seq_tokenizer() -> Tokenizer:
    """A byte-level BPE tokenizer that ends every source with </s>, as T5's and Marian's do:
    <pad> 0, </s> 1, <unk> 2, <s> 3."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<pad>", "</s>", "<unk>", "<s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS, trainer)
    tok.post_processor = processors.TemplateProcessing(single="$A </s>",
                                                       special_tokens=[("</s>", 1)])
    tok.decoder = decoders.ByteLevel()
    return tok


_S2S_IDS = dict(pad_token_id=0, eos_token_id=1, bos_token_id=3)
# name -> (transformers model class, config keywords). Odd shapes: T5's relative buckets
# saturate within the test sources (max_distance 10), v1.1's inner width differs from
# d_model, Marian's heads (20) are padded to 32 for GroupQueryAttention.
SEQ2SEQ: dict[str, tuple[str, dict]] = {
    "t5": ("T5ForConditionalGeneration", dict(
        d_model=48, d_kv=12, d_ff=96, num_layers=3, num_decoder_layers=3, num_heads=4,
        feed_forward_proj="relu", relative_attention_num_buckets=8,
        relative_attention_max_distance=10, decoder_start_token_id=0)),
    "t5-v1_1": ("T5ForConditionalGeneration", dict(
        d_model=40, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=3,
        feed_forward_proj="gated-gelu", tie_word_embeddings=False,
        relative_attention_num_buckets=8, relative_attention_max_distance=10,
        decoder_start_token_id=0)),
    "bart": ("BartForConditionalGeneration", dict(
        d_model=48, encoder_layers=1, decoder_layers=3, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=96, decoder_ffn_dim=96,
        max_position_embeddings=128, decoder_start_token_id=1, forced_eos_token_id=1,
        init_std=0.3)),
    "marian": ("MarianMTModel", dict(
        d_model=40, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
        decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
        max_position_embeddings=128, activation_function="swish", scale_embedding=True,
        decoder_start_token_id=0, forced_eos_token_id=1, init_std=0.3)),
}
SEQ2SEQ_SOURCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Edge devices run",
    "Café déjà vu: naïve résumé, coöperate! 東京は日本の首都です。",
]


def build_seq2seq(name: str, folder: Path, seed: int = 0) -> Path:
    """Save a random-init encoder-decoder `name` (a key of SEQ2SEQ) with its tokenizer;
    its eos row doubled so that sequences end at different lengths."""
    folder.mkdir(parents=True, exist_ok=True)
    tok = seq2seq_tokenizer()
    transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        bos_token="<s>", model_max_length=128).save_pretrained(folder)
    torch.manual_seed(seed)
    model_class = getattr(transformers, SEQ2SEQ[name][0])
    config = model_class.config_class(vocab_size=tok.get_vocab_size(),
                                      architectures=[SEQ2SEQ[name][0]],
                                      **_S2S_IDS, **SEQ2SEQ[name][1])
    model = model_class(config)
    with torch.no_grad():
        model.get_output_embeddings().weight[1] *= 2.0
    model.eval().save_pretrained(folder)
    return folder
