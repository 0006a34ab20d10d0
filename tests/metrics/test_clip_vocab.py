"""The evaluator CLIP's compact vocabulary: covers the grammar, remaps exactly, works offline, detects tampering."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

from fypbench.errors import UserError
from fypbench.metrics.clip_metrics import MINI_CLIP_DIR
from fypbench.metrics.clip_vocab import (
    FIRST_WORD_ID,
    PAD_ID,
    SOT_ID,
    UNK_ID,
    VOCAB_FILE,
    CompactTokenizer,
    build_vocab,
    load_vocab,
)
from fypbench.world.mini.grammar import compose, random_prompt


@pytest.fixture(scope="module")
def tokenizer():
    return CompactTokenizer(build_vocab(), context_length=32)


def test_works_offline(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the tokenizer tried to open a network connection")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    tokens = CompactTokenizer(build_vocab(), 32)(["A panda, in the snow, pixel art"])
    assert tokens.shape == (1, 32) and int(tokens[0, 0]) == SOT_ID


def test_every_grammar_prompt_maps_without_unknown_tokens(tokenizer):
    from fypbench.protocol import load_protocol

    rng = np.random.default_rng(0)
    prompts = [compose(random_prompt(rng, motion=m, verb_probability=1.0)) for m in ("walk", "spinkick", "getup_faceup")
               for _ in range(300)]
    prompts += [s.prompt for s in load_protocol("fyp-1024").samples]
    for prompt in prompts:
        ids = tokenizer.encode(prompt)
        assert UNK_ID not in ids, (prompt, tokenizer.unknown_words(prompt))
        assert len(ids) + 2 <= tokenizer.context_length, prompt


def test_remap_is_the_clip_bpe_ids_in_order(tokenizer):
    import open_clip

    vocab = build_vocab()
    base = open_clip.SimpleTokenizer()
    prompt = "An astronaut, wearing purple clothes, is doing a spin kick in the street, van gogh style"
    expected = [FIRST_WORD_ID + vocab["bpe_ids"].index(i) for i in base.encode(prompt)]
    assert tokenizer.encode(prompt) == expected
    row = tokenizer([prompt])[0].tolist()
    n = len(expected)
    assert row[:n + 2] == [SOT_ID, *expected, vocab["eot_id"]] and set(row[n + 2:]) == {PAD_ID}
    # the end marker is the largest id: open_clip's text tower pools at the argmax token
    assert vocab["eot_id"] == vocab["vocab_size"] - 1 == max(row)
    assert vocab["bpe_ids"] == sorted(vocab["bpe_ids"]) and len(vocab["bpe_ids"]) < 128


def test_unknown_words_and_truncation(tokenizer):
    assert tokenizer.unknown_words("A zebra in the park") == ["zebra</w>"]
    assert UNK_ID in tokenizer.encode("A zebra in the park")
    row = tokenizer(["a man " * 40], context_length=8)[0].tolist()
    assert len(row) == 8 and row[0] == SOT_ID and row[-1] == tokenizer.eot_id


def test_shipped_vocabulary_is_the_grammar_vocabulary():
    shipped = load_vocab(MINI_CLIP_DIR / VOCAB_FILE)
    assert shipped == build_vocab()


def test_tampered_vocabulary_is_a_user_error(tmp_path):
    vocab = build_vocab()
    vocab["bpe_tokens"][0] = "zebra</w>"
    path = tmp_path / VOCAB_FILE
    path.write_text(json.dumps(vocab))
    with pytest.raises(UserError, match="bpe_tokens"):
        load_vocab(path)
    vocab = build_vocab()
    vocab["bpe_file_sha256"] = "0" * 64
    path.write_text(json.dumps(vocab))
    with pytest.raises(UserError, match="BPE file"):
        load_vocab(path)
    with pytest.raises(UserError, match="not found"):
        load_vocab(tmp_path / "absent.json")
