"""The compact text vocabulary of the mini world's evaluator CLIP: a fixed remap of CLIP BPE ids.

    python -c "from fypbench.metrics.clip_vocab import CompactTokenizer, build_vocab; t = CompactTokenizer(build_vocab(), 32); print(t(['A man, wearing red clothes, is walking on the beach'])[0, :16])"

Why: CLIP's BPE vocabulary has 49,408 tokens; a token embedding that size would dominate a tiny model's
weights, while the mini world's prompts (fypbench.world.mini.grammar) use fewer than a hundred of them.

How: text is tokenised exactly as open_clip's `SimpleTokenizer` does (its bundled BPE file
`bpe_simple_vocab_16e6.txt.gz`, lower-casing, whitespace cleaning), then every BPE id is remapped through a
fixed table, shipped next to the weights as `compact_vocab.json`:

    0 = padding, 1 = unknown (any BPE id outside the table), 2 = start of text,
    3 .. 3+n-1 = the n BPE ids that occur in the grammar's words, in increasing BPE-id order,
    3+n = end of text (the largest id: open_clip's text tower pools at the argmax token, as CLIP does).

The table is built by `build_vocab()` from the grammar's words (articles, characters, colours, scenes, styles,
verb phrases and the fixed words "wearing", "clothes", "is", ","); SimpleTokenizer splits text into words
before BPE, so a prompt's ids are the union of its words' ids and every grammar prompt maps without an
unknown id (tests/metrics/test_clip_vocab.py). Prompts from outside the grammar get unknown ids for words
the table lacks; `CompactTokenizer.unknown_words` reports them and the CLIP metrics log them. The file also
stores the decoded BPE strings and the sha256 of the BPE file: loading checks both against the installed
open_clip, so a changed BPE file cannot remap silently. Everything here works offline.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

VOCAB_FILE = "compact_vocab.json"
VOCAB_FORMAT = "fypbench-compact-clip-vocab/1"
PAD_ID, UNK_ID, SOT_ID = 0, 1, 2
FIRST_WORD_ID = 3
GRAMMAR_FIXED_WORDS = ("wearing", "clothes", "is", ",")


@functools.lru_cache(maxsize=1)
def _simple_tokenizer():
    import open_clip

    return open_clip.SimpleTokenizer()


def bpe_file() -> Path:
    from open_clip.tokenizer import default_bpe

    return Path(default_bpe())


def bpe_file_sha256() -> str:
    return hashlib.sha256(bpe_file().read_bytes()).hexdigest()


def grammar_words() -> list[str]:
    """Every word or phrase the mini world's grammar can write (fypbench.world.mini.grammar.compose)."""
    from fypbench.world.mini.appearance import CHARACTERS, COLOURS, SCENES, STYLES
    from fypbench.world.mini.grammar import ARTICLES, VERB_PHRASES

    words: list[str] = []
    for group in (ARTICLES, CHARACTERS, COLOURS, SCENES, STYLES, VERB_PHRASES, GRAMMAR_FIXED_WORDS):
        words.extend(w for w in group if w)
    return sorted(set(words))


def build_vocab() -> dict[str, Any]:
    """The compact vocabulary of the grammar's words (deterministic: it depends on the grammar and the BPE file)."""
    tokenizer = _simple_tokenizer()
    ids = sorted({i for word in grammar_words() for i in tokenizer.encode(word)})
    return {"format": VOCAB_FORMAT, "base_tokenizer": "open_clip.SimpleTokenizer",
            "bpe_file": bpe_file().name, "bpe_file_sha256": bpe_file_sha256(),
            "pad_id": PAD_ID, "unk_id": UNK_ID, "sot_id": SOT_ID, "first_word_id": FIRST_WORD_ID,
            "eot_id": FIRST_WORD_ID + len(ids), "vocab_size": FIRST_WORD_ID + len(ids) + 1,
            "bpe_ids": ids, "bpe_tokens": [tokenizer.decoder[i] for i in ids]}


def _check_vocab(vocab: Mapping[str, Any], where: str) -> None:
    from fypbench.errors import UserError

    if vocab.get("format") != VOCAB_FORMAT:
        raise UserError(f"{where}: field 'format' is {vocab.get('format')!r}, expected {VOCAB_FORMAT!r}")
    ids = vocab.get("bpe_ids")
    if not isinstance(ids, list) or not ids or ids != sorted(set(ids)):
        raise UserError(f"{where}: field 'bpe_ids' must be a non-empty increasing list of BPE ids")
    expected = {"pad_id": PAD_ID, "unk_id": UNK_ID, "sot_id": SOT_ID, "first_word_id": FIRST_WORD_ID,
                "eot_id": FIRST_WORD_ID + len(ids), "vocab_size": FIRST_WORD_ID + len(ids) + 1}
    for key, value in expected.items():
        if vocab.get(key) != value:
            raise UserError(f"{where}: field {key!r} is {vocab.get(key)!r}, expected {value}")
    if vocab.get("bpe_file_sha256") != bpe_file_sha256():
        raise UserError(f"{where}: made with another CLIP BPE file than open_clip's installed {bpe_file().name} "
                        "(sha256 differs); the remap would be wrong")
    decoder = _simple_tokenizer().decoder
    tokens = vocab.get("bpe_tokens")
    if not isinstance(tokens, list) or len(tokens) != len(ids) or any(decoder.get(i) != t for i, t in zip(ids, tokens)):
        raise UserError(f"{where}: field 'bpe_tokens' does not match the installed BPE vocabulary")


def load_vocab(path: str | os.PathLike) -> dict[str, Any]:
    from fypbench.errors import UserError

    path = Path(path)
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found (the evaluator CLIP's compact vocabulary)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: invalid JSON ({error})") from None
    if not isinstance(vocab, dict):
        raise UserError(f"{path}: expected a JSON object")
    _check_vocab(vocab, str(path))
    return vocab


class CompactTokenizer:
    """open_clip SimpleTokenizer + the compact remap; the call interface of open_clip's tokenizers."""

    def __init__(self, vocab: Mapping[str, Any], context_length: int):
        if context_length < 3:
            raise ValueError(f"context_length must be >= 3, got {context_length}")
        self.vocab = dict(vocab)
        self.context_length = int(context_length)
        self.eot_id = int(vocab["eot_id"])
        self.vocab_size = int(vocab["vocab_size"])
        self._remap = {int(b): FIRST_WORD_ID + k for k, b in enumerate(vocab["bpe_ids"])}
        self._base = _simple_tokenizer()

    @classmethod
    def from_file(cls, path: str | os.PathLike, context_length: int) -> CompactTokenizer:
        return cls(load_vocab(path), context_length)

    def sha256(self) -> str:
        return hashlib.sha256(json.dumps(self.vocab, sort_keys=True).encode("utf-8")).hexdigest()

    def encode(self, text: str) -> list[int]:
        """Compact ids of the text's BPE tokens (no start/end markers); unknown BPE ids -> UNK_ID."""
        return [self._remap.get(i, UNK_ID) for i in self._base.encode(text)]

    def unknown_words(self, text: str) -> list[str]:
        """The BPE tokens of `text` outside the compact vocabulary (decoded)."""
        return [self._base.decoder[i] for i in self._base.encode(text) if i not in self._remap]

    def __call__(self, texts: str | Sequence[str], context_length: int | None = None):
        import torch

        if isinstance(texts, str):
            texts = [texts]
        length = int(context_length or self.context_length)
        out = torch.zeros(len(texts), length, dtype=torch.long)
        for row, text in enumerate(texts):
            tokens = [SOT_ID, *self.encode(text), self.eot_id]
            if len(tokens) > length:  # as open_clip: cut, keep the end marker last
                tokens = tokens[:length]
                tokens[-1] = self.eot_id
            out[row, :len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        return out

