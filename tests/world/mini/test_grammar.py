"""The mini world's prompt grammar: compose/parse round trips, the vocabulary, errors, random prompts."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from fypbench.world.mini.appearance import CHARACTERS, COLOURS, RECOLOURABLE, SCENES, STYLES, Appearance
from fypbench.world.mini.grammar import (VERB_PHRASES, VERBS, PromptParts, compose, indefinite_article,
                                         motions_for_verb, parse, random_prompt)
from fypbench.world.mini.motion import PROCEDURAL_MOTIONS, REAL_CLIPS


def test_examples_from_the_spec():
    assert parse("A man, wearing red clothes, is walking on the beach, cartoon") == PromptParts(
        Appearance("man", "red", "on the beach", "cartoon"), "walking", "a")
    assert parse("An astronaut, on the moon") == PromptParts(Appearance("astronaut", None, "on the moon"), None, "an")
    assert parse("The hulk is boxing in the snow, at sunset") == PromptParts(
        Appearance("hulk", None, "in the snow", "at sunset"), "boxing", "the")
    assert compose(PromptParts(Appearance("girl", "orange", "on the beach", "pixel art"), "squatting", "a")) == \
        "A girl, wearing orange clothes, is squatting on the beach, pixel art"


def test_every_motion_has_a_verb():
    assert set(VERBS) == set(REAL_CLIPS) | set(PROCEDURAL_MOTIONS)
    assert all(VERBS[name] == "walking" for name in REAL_CLIPS if name.startswith("walker_"))
    assert VERBS["spinkick"] == "doing a spin kick" and VERBS["arms_raise"] == "raising both arms"
    assert set(motions_for_verb("dancing")) == {"dance_a", "dance_b", "dance"}
    with pytest.raises(ValueError):
        motions_for_verb("flying")


def test_round_trip_over_the_whole_vocabulary():
    subjects = [(c, None) for c in CHARACTERS] + [(c, col) for c in RECOLOURABLE for col in COLOURS]
    count = 0
    for (character, colour), scene, style in itertools.product(subjects, SCENES, STYLES):
        for verb in (None, VERB_PHRASES[count % len(VERB_PHRASES)]):
            for article in ("the", indefinite_article(character)):
                parts = PromptParts(Appearance(character, colour, scene, style), verb, article)
                text = compose(parts)
                assert text[0].isupper()
                assert parse(text) == parts
                assert compose(parse(text)) == text
                assert parse(text[0].lower() + text[1:]) == parts
                count += 1
    assert count == 49 * 12 * 8 * 4


def test_every_verb_round_trips():
    for verb in VERB_PHRASES:
        parts = PromptParts(Appearance("robot", "green", "in the street", "minecraft"), verb, "a")
        assert parse(compose(parts)) == parts


def test_random_prompts_round_trip_and_cover_the_vocabulary():
    rng = np.random.default_rng(0)
    seen = {"characters": set(), "colours": set(), "scenes": set(), "styles": set(), "verbs": set()}
    for index in range(2000):
        motion = list(VERBS)[index % len(VERBS)]
        parts = random_prompt(rng, motion=motion)
        assert parse(compose(parts)) == parts
        assert parts.verb in (None, VERBS[motion])
        a = parts.appearance
        seen["characters"].add(a.character)
        seen["colours"].add(a.colour)
        seen["scenes"].add(a.scene)
        seen["styles"].add(a.style)
        seen["verbs"].add(parts.verb)
    assert seen["characters"] == set(CHARACTERS)
    assert seen["colours"] == set(COLOURS) | {None}
    assert seen["scenes"] == set(SCENES)
    assert seen["styles"] == set(STYLES)
    assert seen["verbs"] == set(VERB_PHRASES) | {None}


def test_random_prompt_is_deterministic_and_respects_allow():
    first = [random_prompt(np.random.default_rng(5), "walk") for _ in range(3)]
    assert first[0] == first[1] == first[2]
    no_verb = random_prompt(np.random.default_rng(1), "walk", verb_probability=0.0)
    assert no_verb.verb is None
    assert random_prompt(np.random.default_rng(1), "walk", verb_probability=1.0).verb == "walking"
    assert random_prompt(np.random.default_rng(1)).verb is None
    rng = np.random.default_rng(2)
    for _ in range(50):
        parts = random_prompt(rng, "run", allow=lambda a, m: a.scene == "on the moon" and a.style == "" and m == "run")
        assert parts.appearance.scene == "on the moon" and parts.appearance.style == ""
    with pytest.raises(ValueError, match="no allowed appearance"):
        random_prompt(rng, "run", allow=lambda a, m: False)
    with pytest.raises(ValueError, match="unknown motion"):
        random_prompt(rng, "fly")
    with pytest.raises(ValueError, match="verb_probability"):
        random_prompt(rng, "run", verb_probability=1.5)


@pytest.mark.parametrize("text, words", [
    ("A astronaut, on the moon", "article 'a' does not agree"),
    ("An man, on the moon", "article 'an' does not agree"),
    ("Some man, on the moon", "at character 0: expected an article"),
    ("A hero, on the moon", "at character 2: expected a character"),
    ("A man, wearing teal clothes, on the moon", "at character 15: expected a colour"),
    ("A man, wearing red clothes is walking on the beach", "expected ',' before ' is'"),
    ("A man, wearing red clothes, is flying on the beach",
     "at character 31: expected a verb phrase, found 'flying on the beach'"),
    ("A man on the beach", "at character 5: expected ', '"),
    ("A man, on the beach at sunset", "at character 19: expected the end of the prompt, found ' at sunset'"),
    ("A man, on the beach, sepia", "at character 21: expected a style"),
    ("A man, on mars", "at character 7: expected a scene"),
    ("A hulk, wearing red clothes, on the moon", "cannot wear a clothing colour"),
    ("A man, on the beach, cartoon, cartoon", "expected the end of the prompt"),
    ("A MAN, on the beach", "expected a character"),
    ("", "non-empty"),
])
def test_parse_errors_name_the_word_and_position(text, words):
    with pytest.raises(ValueError, match="cannot parse prompt") as error:
        parse(text)
    assert words in str(error.value)


def test_prompt_parts_validate():
    with pytest.raises(ValueError, match="unknown article"):
        PromptParts(Appearance("man", None, "on the moon"), None, "one")
    with pytest.raises(ValueError, match="unknown verb phrase"):
        PromptParts(Appearance("man", None, "on the moon"), "flying", "a")
