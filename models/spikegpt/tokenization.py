"""A character-level tokenizer as a transformers fast tokenizer: one token per character.

`char_tokenizer` builds it from the characters of the given texts (sorted, so
the same texts always give the same ids), with ``<unk>`` as id 0 for any
character it has not seen (also the end-of-text token, since plain text has
none). It is a `transformers.PreTrainedTokenizerFast`: ``save_pretrained``
writes ``tokenizer.json`` and ``AutoTokenizer.from_pretrained`` reads it back
with no code of ours; decoding joins the characters as they are, so
``decode(encode(text)) == text`` for any text of known characters (newlines
and runs of spaces included).
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers

from .. import _transformers  # noqa: F401  (bt_neurons first: a broken torchvision reads as absent)

from transformers import PreTrainedTokenizerFast  # noqa: E402  isort: skip

__all__ = ["UNK", "char_tokenizer"]

#: The token of every character the tokenizer has not seen; id 0.
UNK = "<unk>"


def char_tokenizer(texts: Iterable[str]) -> PreTrainedTokenizerFast:
    """A character-level tokenizer whose vocabulary is ``<unk>`` plus every character of ``texts``.

    Raises:
        TypeError: an item of ``texts`` is not a string.
        ValueError: the texts hold no character at all.
    """
    chars: set[str] = set()
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"texts[{i}] must be a string, got {type(text).__name__}")
        chars.update(text)
    chars.discard(UNK)
    if not chars:
        raise ValueError("texts must hold at least one character")
    vocab = {UNK: 0, **{c: i + 1 for i, c in enumerate(sorted(chars))}}
    core = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")  # every character
    core.decoder = decoders.Fuse()  # characters joined with nothing between them
    return PreTrainedTokenizerFast(
        tokenizer_object=core, unk_token=UNK, eos_token=UNK, model_input_names=["input_ids"]
    )
