"""Caption complexity: a 1-4 score counting the concrete visual constraints a caption states.

The score sets the text-guidance scale of the TC and ITC views (simple captions get high guidance). Bins: 1 = only
broad categories, 2 = 1-3 constraints, 3 = 4-6, 4 = more than 6; abstract or emotional words never count.

Two scorers share those bins:

* ``llm``: a chat model asked for ``[score: N]`` (the official GenView++ scorer), re-asked when the answer does not
  parse and falling back to the lexical score after the last attempt;
* ``lexical`` (ours): offline, deterministic counting of words and phrases from lists of concrete visual words.

This module is pure Python (no torch, no transformers): the model comes in as a ``generate(messages) -> str`` callable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from genview.errors import ConfigError
from genview.runtime.progress import progress

# --- Word classes of concrete visual constraints. Entries may be phrases ("in front of"): a phrase counts once.
# --- Object nouns are listed in the singular; regular plurals are recognised.

COLOR_WORDS: tuple[str, ...] = tuple(
    """
    red green blue yellow orange purple pink cyan brown white black gray grey violet magenta turquoise teal beige tan
    maroon navy indigo lavender gold golden silver crimson scarlet ivory olive lime khaki coral amber bronze emerald
    colorful colourful multicolored multicoloured
""".split()
) + ("navy blue", "sky blue", "royal blue", "hot pink", "lime green", "olive green")
# "light blue", "dark red", ...: a shade and its colour state one constraint, not two.
COLOR_SHADES: tuple[str, ...] = ("light", "dark", "pale", "bright", "deep")

TEXTURE_WORDS: tuple[str, ...] = tuple(
    """
    plain striped stripes dotted spotted checkered checked plaid tartan floral patterned textured smooth rough shiny
    glossy matte fluffy furry hairy wrinkled rusty transparent
    wooden wood metal metallic steel iron glass plastic stone brick concrete marble leather paper cardboard fabric
    cotton silk wool woolen denim ceramic porcelain rubber velvet lace straw bamboo copper
""".split()
) + ("polka dot", "polka dots")

SIZE_WORDS: tuple[str, ...] = tuple(
    """
    small medium large big tiny huge little giant enormous massive tall short long wide narrow thin thick miniature
""".split()
)

QUANTITY_WORDS: tuple[str, ...] = tuple(
    """
    one two three four five six seven eight nine ten eleven twelve twenty hundred dozen dozens several many few
    couple pair multiple single both group
""".split()
)

# Bare "on", "in", "at", "with" do not count: they are grammar more often than a relation ("on a blue background",
# "at the premiere"); the word after them carries the constraint when there is one ("on the left").
SPATIAL_WORDS: tuple[str, ...] = tuple("""
    top bottom left right center centre middle corner side foreground distance behind beside under underneath beneath
    below above over between near nearby inside outside among across along around through toward towards upper lower
""".split()) + (
    "top left", "top right", "bottom left", "bottom right", "upper left", "upper right", "lower left", "lower right",
    "in front of", "next to", "on top of", "close to", "far from", "surrounded by",
)  # fmt: skip

# Time of day and weather belong here because they set the light of the picture.
LIGHTING_WORDS: tuple[str, ...] = tuple(
    """
    light lights lit sunlight sunlit sunny sunset sunrise dusk dawn twilight night nighttime daylight shadow shadows
    shade dark darkness bright illuminated glowing glow neon candlelight moonlight backlit dim foggy misty fog mist
    hazy cloudy overcast silhouette silhouetted spotlight snowy rainy
""".split()
) + ("golden hour",)

# -ing forms and the third-person present that captions use ("actor attends the premiere").
ACTION_WORDS: tuple[str, ...] = tuple(
    """
    running walking sitting standing lying jumping playing eating drinking holding riding flying swimming reading
    writing smiling laughing posing looking talking speaking dancing singing driving cooking climbing sleeping wearing
    carrying throwing catching kicking surfing skiing skating skateboarding fishing waiting working cutting pointing
    waving watching hugging kissing fighting shooting painting pulling pushing lifting performing celebrating
    competing training grazing floating hanging leaning kneeling crouching resting blooming falling flowing
    runs walks sits stands lies jumps plays eats drinks holds rides flies swims reads writes smiles laughs poses
    looks talks speaks dances sings drives cooks climbs sleeps wears carries throws catches kicks surfs waits works
    cuts points waves watches hugs kisses fights paints performs celebrates competes attends arrives enters leaves
    scores
""".split()
)

STYLE_WORDS: tuple[str, ...] = tuple(
    """
    cartoon cartoonish anime sketch watercolor watercolour vintage retro antique modern futuristic medieval ancient
    gothic baroque victorian rustic minimalist realistic photorealistic surreal cinematic monochrome sepia graffiti
    mosaic origami vector traditional japanese chinese indian african mexican italian french
""".split()
) + ("black and white", "oil painting", "pixel art", "pop art", "3d render")

OBJECT_NOUNS: tuple[str, ...] = tuple(
    """
    man woman person people men women boy girl child children kid baby adult actor actress player team student
    teacher family crowd soldier doctor nurse artist musician singer dancer bride groom athlete tourist worker chef
    farmer friend couple politician footballer celebrity model fan audience
    dog puppy cat kitten horse bird cow sheep goat pig chicken duck fish elephant lion tiger bear zebra giraffe monkey
    rabbit deer wolf fox mouse mice butterfly bee snake
    car bus truck bike bicycle motorcycle train plane airplane boat ship taxi tractor helicopter
    chair table bed sofa couch lamp cup mug bowl plate bottle vase clock book phone laptop computer television
    window door wall floor roof stairs umbrella bag hat shirt dress shoe jacket glasses ball guitar piano flag
    sign key knife box basket candle mirror pillow blanket suit
    apple banana orange pizza cake bread coffee tea sandwich burger salad egg cheese fruit vegetable wine beer
    house building skyscraper bridge tower castle church temple road street park field forest mountain hill river
    lake sea ocean beach sky city town village garden kitchen room bedroom bathroom office restaurant cafe shop
    store market stage stadium desert island snow water sand grass tree flower rose leaf sun moon cloud rain
    premiere concert wedding festival party football soccer basketball tennis golf
    circle square triangle rectangle pentagon hexagon octagon star diamond cross ellipse oval ring crescent arrow
    heart line background backdrop outline border
""".split()
)
# A background or outline states its constraints through its attributes when it has some: "a blue background" is
# one constraint (the background colour), not two; a bare "an outline" is one.
ATTRIBUTE_CARRIERS: frozenset[str] = frozenset({"background", "backdrop", "outline", "border"})
ATTRIBUTE_CLASSES: frozenset[str] = frozenset({"color", "texture", "lighting"})

# These never count, whatever the lists above say.
BROAD_NOUNS: tuple[str, ...] = (
    "thing", "object", "shape", "figure", "picture", "image", "photo", "photograph", "drawing", "symbol", "form",
    "scene", "item", "view", "illustration",
)  # fmt: skip
ABSTRACT_WORDS: tuple[str, ...] = tuple(
    """
    beautiful lovely calm happy sad cheerful gloomy serene playful mysterious elegant lonely friendly peaceful quirky
    cute nice amazing wonderful stunning gorgeous pretty charming romantic cozy magical dreamy perfect great good best
    awesome fantastic joyful angry scary
""".split()
)

LOWEST_SCORE, HIGHEST_SCORE = 1, 4
# Four-digit numbers in captions are mostly years, which constrain nothing visible.
MAX_QUANTITY_DIGITS = 3


def _build_lexicon() -> dict[tuple[str, ...], str]:
    """Phrase (as a word tuple) -> word class. Attribute classes come last so they win on shared words ("orange")."""
    classes = {
        "object": OBJECT_NOUNS,
        "action": ACTION_WORDS,
        "quantity": QUANTITY_WORDS,
        "spatial": SPATIAL_WORDS,
        "style": STYLE_WORDS,
        "size": SIZE_WORDS,
        "lighting": LIGHTING_WORDS,
        "texture": TEXTURE_WORDS,
        "color": COLOR_WORDS + tuple(f"{shade} {color}" for shade in COLOR_SHADES for color in COLOR_WORDS),
    }
    lexicon = {tuple(phrase.split()): name for name, phrases in classes.items() for phrase in phrases}
    for word in BROAD_NOUNS + ABSTRACT_WORDS:
        lexicon.pop((word,), None)
    return lexicon


_LEXICON = _build_lexicon()
_LONGEST_PHRASE = max(len(phrase) for phrase in _LEXICON)


@dataclass(frozen=True)
class VisualConstraint:
    """One counted word or phrase of a caption."""

    phrase: str
    word_class: str
    start: int  # word indices in the tokenised caption, end exclusive
    end: int


def _words(caption: str) -> list[str]:
    caption = re.sub(r"['’]s\b", "", caption.lower())  # possessives: "dog's" is the noun "dog"
    return re.findall(r"[a-z0-9]+", caption)


def _singular_candidates(word: str) -> Iterator[str]:
    if word.endswith("ies"):
        yield word[:-3] + "y"
    if word.endswith("ves"):
        yield word[:-3] + "f"
        yield word[:-3] + "fe"
    if word.endswith("s"):
        yield word[:-1]
    if word.endswith("es"):
        yield word[:-2]


def _single_word_class(word: str) -> str | None:
    if word.isdigit():
        return "quantity" if len(word) <= MAX_QUANTITY_DIGITS else None
    for singular in _singular_candidates(word):
        if _LEXICON.get((singular,)) == "object":
            return "object"
    # Base forms of the listed verbs, as after plural subjects ("two dogs run"): "run" + "s" is listed.
    for inflected in (word + "s", word + "es"):
        if _LEXICON.get((inflected,)) == "action":
            return "action"
    return None


def _lexicon_matches(words: Sequence[str]) -> Iterator[VisualConstraint]:
    """Greedy longest-phrase matches, left to right, without overlaps."""
    i = 0
    while i < len(words):
        for length in range(min(_LONGEST_PHRASE, len(words) - i), 0, -1):
            word_class = _LEXICON.get(tuple(words[i : i + length]))
            if word_class is not None:
                break
        else:
            length, word_class = 1, _single_word_class(words[i])
        if word_class is not None:
            yield VisualConstraint(" ".join(words[i : i + length]), word_class, i, i + length)
        i += length


def visual_constraints(caption: str) -> list[VisualConstraint]:
    """The concrete visual constraints the lexical scorer finds in ``caption``, in order."""
    found: list[VisualConstraint] = []
    for match in _lexicon_matches(_words(caption)):
        previous = found[-1] if found else None
        described = previous is not None and previous.end == match.start and previous.word_class in ATTRIBUTE_CLASSES
        if match.phrase in ATTRIBUTE_CARRIERS and described:
            continue
        found.append(match)
    return found


def count_constraints(caption: str) -> int:
    return len(visual_constraints(caption))


def score_for_count(n: int) -> int:
    """Complexity score of ``n`` constraints: 0 -> 1, 1-3 -> 2, 4-6 -> 3, more than 6 -> 4."""
    if n < 0:
        raise ValueError(f"a constraint count cannot be negative, got {n}")
    if n == 0:
        return 1
    if n <= 3:
        return 2
    if n <= 6:
        return 3
    return 4


def lexical_score(caption: str) -> int:
    return score_for_count(count_constraints(caption))


# --- LLM scorer. Our wording of the official instructions (GenView++ adaptive_guidance_scale/score.py).

SYSTEM_PROMPT = """\
You rate the visual complexity of a text prompt for an image generator, from 1 to 4, by counting the concrete \
visual constraints the prompt states:
- object specificity: object type, quantity, material;
- visual attributes: colour, texture, lighting;
- spatial relations and positions;
- actions or interactions;
- style or cultural cues.
Abstract or emotional words (such as beautiful, calm, happy) are not constraints.
Scores:
1 = only broad categories, no concrete constraint;
2 = 1 to 3 constraints;
3 = 4 to 6 constraints;
4 = more than 6 constraints.
Answer exactly in the format [score: N], where N is 1, 2, 3 or 4, and nothing else."""

REASK_PROMPT = "That answer is not in the required format. Reply with only [score: N], where N is 1, 2, 3 or 4."

Message = dict[str, str]
Generate = Callable[[list[Message]], str]
ScoreSource = Literal["llm", "lexical-fallback", "lexical"]

_SCORE_PATTERN = re.compile(r"score\s*[:=]\s*\[?\s*(\d+(?:\.\d+)?)", re.IGNORECASE)


def user_prompt(caption: str) -> str:
    """The official user turn, character for character (no space after the colon, a closing full stop)."""
    return f"Now output the score of visual constraints for the following text prompt:{caption}."


def parse_score(answer: str) -> int | None:
    """The score in an answer such as ``[score: 3]`` or ``[Score:3, explanation: ...]``; None if there is no valid
    one."""
    match = _SCORE_PATTERN.search(answer)
    if match is None or not match.group(1).isdigit():
        return None
    score = int(match.group(1))
    return score if LOWEST_SCORE <= score <= HIGHEST_SCORE else None


@dataclass(frozen=True)
class ScoreResult:
    score: int
    source: ScoreSource
    attempts: int  # LLM answers requested for this caption (0 when the LLM was not asked)
    last_answer: str  # the LLM's last raw answer ("" when it was not asked)


def lexical_scores(captions: Iterable[str]) -> list[ScoreResult]:
    return [ScoreResult(lexical_score(caption), "lexical", 0, "") for caption in captions]


def _llm_score(caption: str, generate: Generate, attempts: int) -> ScoreResult:
    question = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": user_prompt(caption)},
    ]
    messages = question
    answer = ""
    for attempt in range(1, attempts + 1):
        answer = generate(messages)
        score = parse_score(answer)
        if score is not None:
            return ScoreResult(score, "llm", attempt, answer)
        # Greedy decoding repeats itself on an identical prompt, so a re-ask shows the bad answer and asks again.
        messages = question + [
            {"role": "assistant", "content": answer},
            {"role": "user", "content": REASK_PROMPT},
        ]
    return ScoreResult(lexical_score(caption), "lexical-fallback", attempts, answer)


def llm_scores(captions: Iterable[str], generate: Generate, attempts: int = 5) -> list[ScoreResult]:
    """Score each caption with the chat model behind ``generate``, asking up to ``attempts`` times in all."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")
    results = []
    with progress(captions, desc="LLM caption complexity", unit="caption") as bar:
        for caption in bar:
            if not caption.strip():
                # An empty caption states no constraint, so its score is certainly 1; asking a model would only
                # invite an invented score.
                results.append(ScoreResult(LOWEST_SCORE, "lexical", 0, ""))
            else:
                results.append(_llm_score(caption, generate, attempts))
    return results


def guidance_for(score: int, guidance_for_score: Mapping[str | int, float]) -> float:
    """Guidance scale for a complexity score from the config map (``analysis.guidance_for_score``, string keys)."""
    for key in (str(score), score):
        if key in guidance_for_score:
            return float(guidance_for_score[key])
    raise ConfigError(f"analysis.guidance_for_score has no guidance for complexity score {score}")
