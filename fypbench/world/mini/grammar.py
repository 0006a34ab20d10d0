"""The mini world's prompt grammar: compose, parse (its exact inverse) and random prompts.

    python -c "from fypbench.world.mini.grammar import parse; print(parse('A man, wearing red clothes, is walking on the beach, cartoon'))"

    prompt := Article " " Character [", wearing " Colour " clothes"] ( [","] " is " Verb " " Scene | ", " Scene ) [", " Style]

(reference/mini_world.md §6 with the comma fixed). The bracketed comma before " is" is written exactly when the
colour clause is present ("A man, wearing red clothes, is walking on the beach"; "The hulk is boxing in the
snow, at sunset"), so every PromptParts has one spelling and `parse(compose(p)) == p`,
`compose(parse(t)) == t`. Article is "a"/"an" (agreeing with the character's first sound) or "the"; only the
first letter of a prompt may be upper case. Examples: "An astronaut, on the moon"; "A girl, wearing orange
clothes, is squatting on the beach, pixel art".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fypbench.world.mini.appearance import CHARACTERS, COLOURS, RECOLOURABLE, SCENES, STYLES, Appearance
from fypbench.world.mini.motion import PROCEDURAL_MOTIONS, REAL_CLIPS

ARTICLES = ("a", "an", "the")

# The verb phrase of each motion. Real DeepMimic clips and procedural motions share names where they show the
# same action ("walk", "run", "jump", "kick"); the walker_* clips are walks with a heading change.
_BASE_VERBS: dict[str, str] = {
    "walk": "walking", "run": "running", "jump": "jumping", "dance_a": "dancing", "dance_b": "dancing",
    "dance": "dancing", "punch": "punching", "kick": "kicking", "spinkick": "doing a spin kick",
    "spin": "spinning", "cartwheel": "doing a cartwheel", "backflip": "doing a backflip", "roll": "rolling",
    "crawl": "crawling", "getup_facedown": "getting up", "getup_faceup": "getting up", "wave": "waving",
    "squat": "squatting", "arms_raise": "raising both arms", "box": "boxing", "bow": "bowing",
    "turn": "turning around", "clap": "clapping",
}
WALKER_PREFIX = "walker_"


def _verb_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for name in (*REAL_CLIPS, *PROCEDURAL_MOTIONS):
        if name.startswith(WALKER_PREFIX):
            table[name] = "walking"
        elif name in _BASE_VERBS:
            table[name] = _BASE_VERBS[name]
        else:
            raise RuntimeError(f"motion {name!r} (fypbench.world.mini.motion) has no verb in grammar._BASE_VERBS")
    return table


VERBS: dict[str, str] = _verb_table()
VERB_PHRASES: tuple[str, ...] = tuple(dict.fromkeys(VERBS.values()))


def motions_for_verb(verb: str) -> tuple[str, ...]:
    """Every motion name whose verb phrase is `verb` (e.g. "dancing" -> dance_a, dance_b, dance)."""
    names = tuple(name for name, phrase in VERBS.items() if phrase == verb)
    if not names:
        raise ValueError(f"unknown verb phrase {verb!r}")
    return names


def indefinite_article(character: str) -> str:
    return "an" if character[0] in "aeiou" else "a"


@dataclass(frozen=True)
class PromptParts:
    """A prompt's words: the appearance it fixes, the verb phrase (None: no verb clause) and the article."""

    appearance: Appearance
    verb: str | None
    article: str

    def __post_init__(self) -> None:
        if self.article not in ARTICLES:
            raise ValueError(f"unknown article {self.article!r} (known: {', '.join(ARTICLES)})")
        if self.article != "the" and self.article != indefinite_article(self.appearance.character):
            raise ValueError(f"article {self.article!r} does not agree with {self.appearance.character!r} "
                             f"(use {indefinite_article(self.appearance.character)!r} or 'the')")
        if self.verb is not None and self.verb not in VERB_PHRASES:
            raise ValueError(f"unknown verb phrase {self.verb!r}")


def compose(parts: PromptParts) -> str:
    """The prompt text of `parts` (first letter upper case)."""
    a = parts.appearance
    text = f"{parts.article} {a.character}"
    if a.colour is not None:
        text += f", wearing {a.colour} clothes"
    if parts.verb is not None:
        text += ("," if a.colour is not None else "") + f" is {parts.verb} {a.scene}"
    else:
        text += f", {a.scene}"
    if a.style:
        text += f", {a.style}"
    return text[0].upper() + text[1:]


class _Cursor:
    """Left-to-right matcher over one prompt; errors name the position and the text found there."""

    def __init__(self, text: str, original: str):
        self.text = text
        self.original = original
        self.pos = 0

    def fail(self, expected: str, known: tuple[str, ...] = ()) -> ValueError:
        rest = self.original[self.pos:]
        found = repr(rest[:20]) if rest else "the end of the prompt"
        options = f" (known: {', '.join(repr(o) for o in known)})" if known else ""
        return ValueError(f"cannot parse prompt {self.original!r} at character {self.pos}: expected {expected}, "
                          f"found {found}{options}")

    def literal(self, word: str) -> bool:
        if self.text.startswith(word, self.pos):
            self.pos += len(word)
            return True
        return False

    def expect(self, word: str) -> None:
        if not self.literal(word):
            raise self.fail(repr(word))

    def choice(self, options: tuple[str, ...], what: str, followers: tuple[str, ...]) -> str:
        """The longest option at the cursor that is followed by one of `followers` ("" = end of text)."""
        for option in sorted(options, key=len, reverse=True):
            end = self.pos + len(option)
            if not self.text.startswith(option, self.pos):
                continue
            after = self.text[end:]
            if any((after == "") if f == "" else after.startswith(f) for f in followers):
                self.pos = end
                return option
        raise self.fail(what, tuple(o for o in options if o))

    def at_end(self) -> bool:
        return self.pos == len(self.text)


def parse(text: str) -> PromptParts:
    """The PromptParts of a grammar prompt; ValueError naming the word and position it cannot parse."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"cannot parse prompt {text!r}: expected a non-empty string")
    cursor = _Cursor(text[0].lower() + text[1:], text)
    article = cursor.choice(ARTICLES, "an article", (" ",))
    cursor.expect(" ")
    character = cursor.choice(tuple(CHARACTERS), "a character", (",", " ", ""))
    colour = None
    if cursor.literal(", wearing "):
        colour = cursor.choice(tuple(COLOURS), "a colour", (" clothes",))
        cursor.expect(" clothes")
    verb = None
    if cursor.literal(", is " if colour is not None else " is "):
        verb = cursor.choice(VERB_PHRASES, "a verb phrase", (" ",))
        cursor.expect(" ")
    elif colour is not None and cursor.text.startswith(" is ", cursor.pos):
        raise cursor.fail("',' before ' is' (a colour clause is closed by a comma)")
    else:
        cursor.expect(", ")
    scene = cursor.choice(tuple(SCENES), "a scene", (",", " ", ""))
    style = ""
    if cursor.literal(", "):
        style = cursor.choice(tuple(s for s in STYLES if s), "a style", (",", " ", ""))
    if not cursor.at_end():
        raise cursor.fail("the end of the prompt")
    try:
        return PromptParts(Appearance(character, colour, scene, style), verb, article)
    except ValueError as error:
        raise ValueError(f"cannot parse prompt {text!r}: {error}") from None


Allow = Callable[[Appearance, str | None], bool]
MAX_DRAWS = 10_000
NO_COLOUR_PROBABILITY = 0.25


def _draw(rng: np.random.Generator, motion: str | None, verb_probability: float) -> PromptParts:
    character = str(rng.choice(list(CHARACTERS)))
    colour = None
    if character in RECOLOURABLE and rng.random() >= NO_COLOUR_PROBABILITY:
        colour = str(rng.choice(list(COLOURS)))
    scene = str(rng.choice(list(SCENES)))
    style = str(rng.choice(list(STYLES)))
    article = "the" if rng.random() < 0.2 else indefinite_article(character)
    verb = VERBS[motion] if motion is not None and rng.random() < verb_probability else None
    return PromptParts(Appearance(character, colour, scene, style), verb, article)


def random_prompt(rng: np.random.Generator, motion: str | None = None, verb_probability: float = 0.5,
                  allow: Allow | None = None) -> PromptParts:
    """Random prompt words for `motion` (characters, scenes and styles uniform, "" style included; recolourable
    characters wear a colour with probability 0.75; "the" with probability 0.2). With `motion`, the verb clause
    appears with `verb_probability`. `allow(appearance, motion)` rejects combinations (redrawn)."""
    if motion is not None and motion not in VERBS:
        raise ValueError(f"unknown motion {motion!r} (known: {', '.join(VERBS)})")
    if not 0.0 <= verb_probability <= 1.0:
        raise ValueError(f"verb_probability must be in [0, 1], got {verb_probability}")
    for _ in range(MAX_DRAWS):
        parts = _draw(rng, motion, verb_probability)
        if allow is None or allow(parts.appearance, motion):
            return parts
    raise ValueError(f"no allowed appearance for motion {motion!r} in {MAX_DRAWS} draws")
