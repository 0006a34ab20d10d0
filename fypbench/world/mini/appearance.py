"""The mini world's appearance vocabulary: every prompt word is a rendering parameter.

    python -c "from fypbench.world.mini.appearance import Appearance; print(Appearance('man', 'red', 'on the moon', 'cartoon'))"

Characters are palettes (skin, shirt, pants, shoes, hair); a clothing colour (only for the characters in
RECOLOURABLE) replaces the shirt, with trousers at 70 % of it; scenes are procedural backgrounds; styles are
post-filters. See ../shared/reference/mini_world.md §5-6.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

RGB = tuple[int, int, int]

PALETTE_SLOTS = ("skin", "shirt", "pants", "shoes", "hair")

CHARACTERS: dict[str, dict[str, RGB]] = {
    "iron man": dict(skin=(200, 30, 30), shirt=(190, 25, 25), pants=(210, 170, 40), shoes=(190, 25, 25), hair=(210, 170, 40)),
    "stormtrooper": dict(skin=(240, 240, 240), shirt=(245, 245, 245), pants=(235, 235, 235), shoes=(20, 20, 20), hair=(235, 235, 235)),
    "astronaut": dict(skin=(225, 225, 230), shirt=(250, 250, 250), pants=(240, 240, 240), shoes=(120, 120, 130), hair=(200, 170, 60)),
    "hulk": dict(skin=(70, 160, 50), shirt=(70, 160, 50), pants=(110, 40, 140), shoes=(70, 160, 50), hair=(20, 20, 20)),
    "superman": dict(skin=(234, 192, 160), shirt=(30, 60, 200), pants=(30, 60, 200), shoes=(200, 20, 30), hair=(15, 15, 20)),
    "spider man": dict(skin=(200, 20, 30), shirt=(200, 20, 30), pants=(30, 50, 160), shoes=(200, 20, 30), hair=(200, 20, 30)),
    "batman": dict(skin=(40, 40, 45), shirt=(70, 70, 80), pants=(40, 40, 45), shoes=(20, 20, 20), hair=(30, 30, 35)),
    "robot": dict(skin=(160, 165, 175), shirt=(130, 135, 145), pants=(110, 115, 125), shoes=(60, 60, 70), hair=(160, 165, 175)),
    "panda": dict(skin=(245, 245, 245), shirt=(245, 245, 245), pants=(20, 20, 20), shoes=(20, 20, 20), hair=(20, 20, 20)),
    "fireman": dict(skin=(234, 192, 160), shirt=(220, 180, 40), pants=(60, 50, 40), shoes=(30, 30, 30), hair=(200, 30, 20)),
    "policeman": dict(skin=(198, 134, 66), shirt=(40, 60, 120), pants=(25, 30, 60), shoes=(10, 10, 10), hair=(20, 25, 50)),
    "man": dict(skin=(224, 172, 140), shirt=(120, 120, 120), pants=(50, 60, 90), shoes=(40, 30, 25), hair=(60, 40, 25)),
    "girl": dict(skin=(241, 194, 160), shirt=(230, 120, 170), pants=(90, 120, 200), shoes=(240, 240, 240), hair=(120, 70, 30)),
}
RECOLOURABLE = ("man", "girl", "robot", "astronaut")

COLOURS: dict[str, RGB] = {
    "red": (200, 30, 30), "blue": (30, 70, 200), "green": (40, 150, 60), "yellow": (230, 200, 40),
    "pink": (240, 130, 180), "black": (25, 25, 25), "white": (245, 245, 245), "purple": (120, 50, 160),
    "orange": (240, 130, 30),
}
PANTS_FACTOR = 0.7

# scene -> sky top, sky bottom, ground colour, extra painter (None: plain)
SCENES: dict[str, tuple[RGB, RGB, RGB, str | None]] = {
    "on the beach": ((120, 190, 240), (180, 220, 245), (230, 210, 150), "sea_line"),
    "on the sea": ((110, 170, 230), (160, 210, 240), (30, 100, 170), "waves"),
    "in the snow": ((190, 200, 210), (225, 230, 235), (250, 250, 252), "flakes"),
    "in the forest": ((110, 160, 110), (150, 190, 140), (70, 110, 50), "trees"),
    "on the moon": ((5, 5, 15), (15, 15, 30), (150, 150, 150), "stars"),
    "in the desert": ((240, 200, 120), (250, 220, 160), (220, 170, 90), "dunes"),
    "in antarctica": ((180, 220, 240), (220, 240, 250), (235, 245, 250), "ice"),
    "in the park": ((130, 190, 240), (190, 225, 245), (90, 170, 70), "bushes"),
    "in the street": ((170, 180, 190), (200, 205, 210), (90, 90, 95), "buildings"),
    "on the mountain": ((140, 180, 230), (200, 220, 240), (110, 100, 90), "peaks"),
    "brown background": ((150, 110, 70), (150, 110, 70), (130, 95, 60), None),
    "grey simple background": ((170, 170, 170), (170, 170, 170), (150, 150, 150), None),
}
# "" = no style
STYLES: tuple[str, ...] = ("", "at sunset", "van gogh style", "minecraft", "cartoon", "black and white",
                          "pixel art", "watercolor painting")


@dataclass(frozen=True)
class Appearance:
    """What a prompt fixes about a video besides the motion."""

    character: str
    colour: str | None
    scene: str
    style: str = ""

    def __post_init__(self) -> None:
        if self.character not in CHARACTERS:
            raise ValueError(f"unknown character {self.character!r}")
        if self.colour is not None:
            if self.colour not in COLOURS:
                raise ValueError(f"unknown colour {self.colour!r}")
            if self.character not in RECOLOURABLE:
                raise ValueError(f"{self.character!r} cannot wear a clothing colour (only {', '.join(RECOLOURABLE)})")
        if self.scene not in SCENES:
            raise ValueError(f"unknown scene {self.scene!r}")
        if self.style not in STYLES:
            raise ValueError(f"unknown style {self.style!r}")

    def palette(self) -> dict[str, RGB]:
        palette = dict(CHARACTERS[self.character])
        if self.colour is not None:
            shirt = COLOURS[self.colour]
            palette["shirt"] = shirt
            palette["pants"] = tuple(int(c * PANTS_FACTOR) for c in shirt)
        return palette

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


# The neutral appearance of source videos (Tune-A-Video / FOMM inputs): no prompted attribute.
NEUTRAL = Appearance(character="man", colour=None, scene="grey simple background", style="")
