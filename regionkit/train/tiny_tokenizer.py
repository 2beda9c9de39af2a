"""A word-level tokenizer over the tiny region model's text ids (0-63), with a chat template.

Built in-process from the `tokenizers` library, it offers what a real checkpoint's tokenizer
offers the processor (`__call__`, `apply_chat_template`) with nothing to download, for the
tiny model in tests, benchmarks and the demo; its ids are few enough to read by eye."""

from __future__ import annotations

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

SPECIAL = ["<pad>", "<s>", "</s>", "[UNK]", "<|user|>", "<|assistant|>", "<|end|>"]
WORDS = [
    "what", "is", "where", "the", "a", "dog", "cat", "man", "chair", "in", "of", "and", "on",
    "it", "describe", "region", "?", ".", ",", "segment", "all", "show", "which", "here",
    "could", "sit", "A", "B", "C", "D",
]  # fmt: skip
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|>"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
"""Each message as `<|role|> content <|end|>`: the end of an assistant turn is its label's
last token, as `<|eot_id|>` is for Llama 3."""


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate([*SPECIAL, *WORDS])}
    assert len(vocab) < 64, "the tiny model's text ids are 0-63"
    model = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    model.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=model,
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        unk_token="[UNK]",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    return tokenizer
