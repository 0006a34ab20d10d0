"""The split rule between the mini world's training streams and its evaluation protocols.

    python -c "from fypbench.world.mini import splits; print(splits.split_tags(splits.Appearance('hulk', None, 'on the moon'), 'walk', 0.0))"

The rule (checked by tests/world/mini/test_splits.py over thousands of stream items):

1. Held-out motions. The real clips in HELD_OUT_CLIPS (HELD_OUT_MOTIONS: the same as (kind, name) pairs) are
   used only by protocols, never by a training stream.
   Training uses the other real clips (TRAIN_REAL_CLIPS) and the procedural motions.
2. Disjoint seed spaces. Every seed a training stream puts in a MotionSpec (or passes to the renderer) comes from
   `train_seed(stream, index)`, every protocol seed from `eval_seed(*parts)`. Both are 63-bit sha256 seeds
   (fypbench.seeding.derive_seed); eval seeds have bit 62 (EVAL_SEED_BIT) set, training seeds have it clear, so
   the spaces are disjoint by construction and `is_eval_seed(seed)` checks any stored seed. A protocol's
   procedural motion therefore never reproduces a training motion's jitter/trajectory draw.
3. Held-out appearance combinations, explicitly listed below and never contained in a training item:
   - HELD_OUT_CHARACTER_SCENE: 16 of the 156 character x scene pairs (10.3 %; "hulk on the moon" among them),
     at most 2 per character and per scene;
   - HELD_OUT_STYLE_CHARACTER: 9 of the 91 (style, character) pairs with a style;
   - HELD_OUT_MOTION_CHARACTER: 9 (motion, character) pairs over motions that training does use. A motion is
     identified by its verb phrase here (grammar.VERBS), because a prompt cannot tell the real "dance_a" clip
     from the procedural "dance": holding out ("dance_a", "astronaut") keeps every "dancing" motion away from
     the astronaut in training, whether or not the prompt says the verb.
4. Held-out views. Training streams draw views (degrees, relative to the character's start heading) with
   |view| <= TRAIN_VIEW_LIMIT_DEG (the front hemisphere); a protocol view beyond it is tagged "unseen".

A training item is allowed iff `train_allows(appearance, motion)` and `train_allows_spec(spec)`; a protocol
sample is tagged with `split_tags(appearance, motion, view)` ("seen"/"unseen" per axis).
"""

from __future__ import annotations

from typing import Literal

from fypbench.seeding import SEED_BITS, derive_seed
from fypbench.world.mini.appearance import CHARACTERS, SCENES, STYLES, Appearance
from fypbench.world.mini.grammar import VERBS
from fypbench.world.mini.motion import PROCEDURAL_MOTIONS, REAL_CLIPS, MotionSpec

Split = Literal["seen", "unseen"]

HELD_OUT_CLIPS: tuple[str, ...] = ("dance_b", "spinkick", "cartwheel", "getup_faceup", "walker_turn_right1")
# (kind, name), so `(spec.kind, spec.name) in HELD_OUT_MOTIONS` is exact although "walk", "run", "jump" and
# "kick" name both a real clip and a procedural motion (none of the held-out clip names is procedural).
HELD_OUT_MOTIONS: frozenset[tuple[str, str]] = frozenset(("real", name) for name in HELD_OUT_CLIPS)
TRAIN_REAL_CLIPS: tuple[str, ...] = tuple(c for c in REAL_CLIPS if c not in HELD_OUT_CLIPS)

# (character, scene)
HELD_OUT_CHARACTER_SCENE: frozenset[tuple[str, str]] = frozenset({
    ("hulk", "on the moon"), ("man", "on the moon"),
    ("iron man", "in the snow"), ("batman", "in the snow"),
    ("stormtrooper", "on the beach"), ("panda", "on the beach"),
    ("astronaut", "in the forest"),
    ("superman", "in the desert"), ("girl", "in the desert"),
    ("spider man", "in antarctica"),
    ("batman", "in the park"),
    ("robot", "on the sea"), ("astronaut", "on the sea"),
    ("panda", "in the street"),
    ("fireman", "on the mountain"),
    ("policeman", "brown background"),
})
# (style, character)
HELD_OUT_STYLE_CHARACTER: frozenset[tuple[str, str]] = frozenset({
    ("van gogh style", "iron man"), ("minecraft", "panda"), ("cartoon", "batman"), ("at sunset", "stormtrooper"),
    ("black and white", "spider man"), ("pixel art", "superman"), ("watercolor painting", "hulk"),
    ("cartoon", "girl"), ("minecraft", "astronaut"),
})
# (motion, character); compared by verb phrase (see rule 3)
HELD_OUT_MOTION_CHARACTER: frozenset[tuple[str, str]] = frozenset({
    ("jump", "robot"), ("punch", "panda"), ("backflip", "girl"), ("run", "stormtrooper"), ("kick", "batman"),
    ("dance_a", "astronaut"), ("roll", "superman"), ("walk", "spider man"), ("wave", "fireman"),
})
_HELD_OUT_VERB_CHARACTER: frozenset[tuple[str, str]] = frozenset(
    (VERBS[motion], character) for motion, character in HELD_OUT_MOTION_CHARACTER)

TRAIN_VIEW_LIMIT_DEG = 90.0

EVAL_SEED_BIT = 1 << (SEED_BITS - 1)


def _check_tables() -> None:
    for motion in HELD_OUT_CLIPS:
        if motion not in REAL_CLIPS or motion in PROCEDURAL_MOTIONS:
            raise RuntimeError(f"held-out motion {motion!r} is not a real-only clip name")
    for character, scene in HELD_OUT_CHARACTER_SCENE:
        if character not in CHARACTERS or scene not in SCENES:
            raise RuntimeError(f"bad held-out character x scene pair {(character, scene)!r}")
    for style, character in HELD_OUT_STYLE_CHARACTER:
        if not style or style not in STYLES or character not in CHARACTERS:
            raise RuntimeError(f"bad held-out style x character pair {(style, character)!r}")
    for motion, character in HELD_OUT_MOTION_CHARACTER:
        if motion not in VERBS or motion in HELD_OUT_CLIPS or character not in CHARACTERS:
            raise RuntimeError(f"bad held-out motion x character pair {(motion, character)!r}")


_check_tables()


def _known_motion(motion: str) -> None:
    if motion not in VERBS:
        raise ValueError(f"unknown motion {motion!r} (known: {', '.join(VERBS)})")


def motion_split(motion: str) -> Split:
    """"unseen" for a held-out real clip, else "seen"."""
    _known_motion(motion)
    return "unseen" if motion in HELD_OUT_CLIPS else "seen"


def held_out_pairs(appearance: Appearance, motion: str | None) -> tuple[str, ...]:
    """The kinds of held-out pair the combination contains: "character_scene", "style_character",
    "motion_character" (empty: none)."""
    kinds = []
    if (appearance.character, appearance.scene) in HELD_OUT_CHARACTER_SCENE:
        kinds.append("character_scene")
    if (appearance.style, appearance.character) in HELD_OUT_STYLE_CHARACTER:
        kinds.append("style_character")
    if motion is not None:
        _known_motion(motion)
        if (VERBS[motion], appearance.character) in _HELD_OUT_VERB_CHARACTER:
            kinds.append("motion_character")
    return tuple(kinds)


def combination_split(appearance: Appearance, motion_name: str | None) -> Split:
    """"unseen" when the appearance (with the motion) contains a held-out pair, else "seen"."""
    return "unseen" if held_out_pairs(appearance, motion_name) else "seen"


def _wrap_degrees(view: float) -> float:
    return (float(view) + 180.0) % 360.0 - 180.0


def view_split(view: float) -> Split:
    return "seen" if abs(_wrap_degrees(view)) <= TRAIN_VIEW_LIMIT_DEG else "unseen"


def train_allows(appearance: Appearance, motion_name: str | None) -> bool:
    """Whether a training item may show `appearance` with `motion_name` (None: appearance pairs only)."""
    if motion_name is not None and motion_split(motion_name) == "unseen":
        return False
    return not held_out_pairs(appearance, motion_name)


def train_allows_spec(spec: MotionSpec) -> bool:
    """Whether a training item may use this motion spec: no held-out clip, no eval seed, a training view."""
    if spec.name not in (REAL_CLIPS if spec.kind == "real" else PROCEDURAL_MOTIONS):
        raise ValueError(f"unknown {spec.kind} motion {spec.name!r}")
    if (spec.kind, spec.name) in HELD_OUT_MOTIONS:
        return False
    return not is_eval_seed(spec.seed) and view_split(spec.view) == "seen"


def split_tags(appearance: Appearance, motion: str, view: float) -> dict[str, str]:
    """The tags a protocol sample carries: motion/combination/view split and the held-out pair kinds."""
    return {
        "motion_split": motion_split(motion),
        "combination_split": combination_split(appearance, motion),
        "view_split": view_split(view),
        "held_out_pairs": ",".join(held_out_pairs(appearance, motion)),
    }


def train_seed(stream: str, index: int) -> int:
    """The training seed of item `index` of `stream` (bit 62 clear)."""
    if index < 0:
        raise ValueError(f"index must be >= 0, got {index}")
    return derive_seed("train", stream, int(index)) & (EVAL_SEED_BIT - 1)


def eval_seed(*parts: object) -> int:
    """A protocol seed from stable parts, e.g. (protocol name, sample id, purpose) (bit 62 set)."""
    if not parts:
        raise ValueError("eval_seed needs at least one part")
    return derive_seed("eval", *parts) | EVAL_SEED_BIT


def is_eval_seed(seed: int) -> bool:
    seed = int(seed)
    if not 0 <= seed < (1 << SEED_BITS):
        raise ValueError(f"seed {seed} is outside the {SEED_BITS}-bit seed range")
    return bool(seed & EVAL_SEED_BIT)
