"""`tiny-random`: a small Gemma-3-architecture model with random weights and a byte-level tokenizer.

Built in code from a fixed seed in milliseconds, so unit tests need no files and no network. It has
the same architecture as the default model (sliding-window and global attention layers), so batching
and padding bugs show up here first.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, PreTrainedTokenizerFast

SPECIAL_TOKENS = ("<pad>", "<eos>", "<bos>")


def byte_tokenizer() -> PreTrainedTokenizerFast:
    """A real byte-level BPE tokenizer with no merges: 3 special tokens + 256 byte tokens."""
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(alphabet):
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(
        single="<bos> $A", special_tokens=[("<bos>", vocab["<bos>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def letters_tokenizer() -> PreTrainedTokenizerFast:
    """Five tokens — "<eos>" (also BOS and padding), "a", "b", "c" and space — so that every sequence
    can be enumerated and every non-EOS token is text (pools and text predicates see the same support)."""
    vocab = {"<eos>": 0}
    for symbol in ("a", "b", "c", "Ġ"):  # "Ġ" is the byte-level form of a space
        vocab[symbol] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.TemplateProcessing(single="<eos> $A", special_tokens=[("<eos>", 0)])
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<eos>", eos_token="<eos>", pad_token="<eos>"
    )


def tiny_random_model(
    *, seed: int = 0, dtype: torch.dtype = torch.float32, letters: bool = False
) -> tuple[Gemma3ForCausalLM, PreTrainedTokenizerFast]:
    """The tiny model and its tokenizer; the same seed always gives the same weights.

    `letters=True` gives the 7-token variant (`tiny-letters`) used to check samplers against exact
    enumeration of every sequence.
    """
    tokenizer = letters_tokenizer() if letters else byte_tokenizer()
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        head_dim=32,
        query_pre_attn_scalar=32,
        sliding_window=8,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=512,
        initializer_range=0.05 if letters else 0.17,
        pad_token_id=0,
        eos_token_id=0 if letters else 1,
        bos_token_id=0 if letters else 2,
        tie_word_embeddings=True,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        module = Gemma3ForCausalLM(config)
    module = module.to(dtype=dtype).eval()  # type: ignore[call-arg]
    return module, tokenizer
