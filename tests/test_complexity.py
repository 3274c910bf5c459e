"""Tests for caption complexity (genview.analysis.complexity) and the chat-model loader (genview.models.chat_llm)."""

from __future__ import annotations

import pytest

from genview.analysis.complexity import (
    ABSTRACT_WORDS,
    BROAD_NOUNS,
    REASK_PROMPT,
    SYSTEM_PROMPT,
    ScoreResult,
    count_constraints,
    guidance_for,
    lexical_score,
    lexical_scores,
    llm_scores,
    parse_score,
    score_for_count,
    visual_constraints,
)
from genview.data import shapes
from genview.errors import ConfigError, GenviewError

OFFICIAL_GUIDANCE = {"1": 8, "2": 6, "3": 4, "4": 2}

# Caption -> the constraints a careful reader counts (the comment lists them).
HAND_COUNTED = {
    "a dog": 1,  # dog
    "a dog running on the beach": 3,  # dog, running, beach
    "actor attends the premiere": 3,  # actor, attends, premiere
    "two dogs run across a field": 5,  # two, dogs, run, across, field
    "a beautiful and lovely scene": 0,
    "a picture of an object": 0,
    "": 0,
    "vintage black and white photo of a car": 3,  # vintage, black and white, car
    "a happy woman holding a light blue umbrella in the rain": 5,  # woman, holding, light blue, umbrella, rain
    # three, cats, sleeping, wooden, table, next to, window
    "three cats sleeping on a wooden table next to a window": 7,
    "two men in black suits standing in front of a red brick building at sunset": 10,
    # two, men, black, suits, standing, in front of, red, brick, building, sunset
    "a circle": 1,  # circle
    "a calm shape": 0,
    "a circle with an outline": 2,  # circle, outline (a bare outline is a constraint)
    "a red circle with a blue outline": 3,  # red, circle, outline colour
    "a large green square on the left": 4,  # large, green, square, left
    "a small red striped circle in the top left on a dotted blue background": 7,
    # small, red, striped, circle, top left, background texture, background colour
}


def test_score_for_count_bin_edges():
    edges = {0: 1, 1: 2, 3: 2, 4: 3, 6: 3, 7: 4, 100: 4}
    assert {n: score_for_count(n) for n in edges} == edges
    with pytest.raises(ValueError):
        score_for_count(-1)


@pytest.mark.parametrize("score, guidance", [(1, 8.0), (2, 6.0), (3, 4.0), (4, 2.0)])
def test_guidance_for_each_score_with_str_and_int_keys(score, guidance):
    assert guidance_for(score, OFFICIAL_GUIDANCE) == guidance
    assert guidance_for(score, {int(k): v for k, v in OFFICIAL_GUIDANCE.items()}) == guidance
    assert isinstance(guidance_for(score, OFFICIAL_GUIDANCE), float)


def test_guidance_for_missing_score_is_a_config_error():
    with pytest.raises(ConfigError, match="score 5"):
        guidance_for(5, OFFICIAL_GUIDANCE)


@pytest.mark.parametrize("caption, count", HAND_COUNTED.items())
def test_lexical_count_on_hand_counted_captions(caption, count):
    found = [(c.phrase, c.word_class) for c in visual_constraints(caption)]
    assert count_constraints(caption) == count, found
    assert lexical_score(caption) == score_for_count(count)


def test_lexical_phrases_count_once():
    assert [c.phrase for c in visual_constraints("a cat in front of a dog next to a car")] == [
        "cat", "in front of", "dog", "next to", "car"
    ]  # fmt: skip
    assert [c.word_class for c in visual_constraints("a light blue star in the top right")] == [
        "color", "object", "spatial"
    ]  # fmt: skip


def test_broad_and_abstract_words_never_count():
    for word in BROAD_NOUNS + ABSTRACT_WORDS + shapes.ABSTRACT_WORDS + shapes.GENERIC_NOUNS:
        assert count_constraints(word) == 0, word
        assert count_constraints(f"{word}s") == 0, word


def test_lexical_level_of_every_shapes_caption(tmp_path):
    frame = shapes.make_shapes(tmp_path, train_per_class=5, test_per_class=1)
    counts = [count_constraints(caption) for caption in frame["caption"]]
    wrong = [
        (caption, true_count, count)
        for caption, true_count, count in zip(frame["caption"], frame["n_constraints"], counts)
        if count != true_count
    ]
    assert wrong == []
    assert [lexical_score(caption) for caption in frame["caption"]] == frame["level"].tolist()
    assert set(frame["level"]) == {1, 2, 3, 4}  # every bin is exercised


def test_lexical_scores_records_the_source():
    assert lexical_scores(["a dog", ""]) == [
        ScoreResult(2, "lexical", 0, ""),
        ScoreResult(1, "lexical", 0, ""),
    ]


@pytest.mark.parametrize(
    "answer, score",
    [
        ("[score: 3]", 3),
        ("[score: 3, explanation: a colour and a position]", 3),
        ("score: 3", 3),
        ("[Score:3]", 3),
        ("SCORE: 4", 4),
        ("Sure! Here it is: [score: 2] because of the colour.", 2),
        ("[score: [1]]", 1),
        ("The score: 4.", 4),
        ("Format [score: ?]. Answer: [score: 2]", 2),
        ("", None),
        ("3", None),
        ("no idea", None),
        ("[score: ?]", None),
        ("[score: 0]", None),
        ("[score: 5]", None),
        ("[score: 12]", None),
        ("[score: -1]", None),
        ("[score: 3.5]", None),
        ("[score: three]", None),
    ],
)
def test_parse_score(answer, score):
    assert parse_score(answer) == score


class ScriptedChat:
    """A ``generate`` callable that replays canned answers and records the messages it was sent."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.calls = []

    def __call__(self, messages):
        self.calls.append(messages)
        return self.answers.pop(0)


def test_llm_scores_parses_the_first_answer():
    chat = ScriptedChat(["[score: 3]"])
    assert llm_scores(["a red bus on a bridge"], chat) == [ScoreResult(3, "llm", 1, "[score: 3]")]
    (messages,) = chat.calls
    assert messages[0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert messages[1]["role"] == "user" and "a red bus on a bridge" in messages[1]["content"]


def test_llm_scores_reasks_until_an_answer_parses():
    chat = ScriptedChat(["I think it is simple", "score? maybe four", "[score: 2]"])
    assert llm_scores(["a dog"], chat) == [ScoreResult(2, "llm", 3, "[score: 2]")]
    assert len(chat.calls) == 3
    for messages in chat.calls:
        assert messages[0]["content"] == SYSTEM_PROMPT and "a dog" in messages[1]["content"]
    # A re-ask shows the model its bad answer, so a greedy model does not repeat it on an identical prompt.
    assert chat.calls[2][2:] == [
        {"role": "assistant", "content": "score? maybe four"},
        {"role": "user", "content": REASK_PROMPT},
    ]


@pytest.mark.parametrize("attempts", [1, 5])
def test_llm_scores_falls_back_to_lexical_after_the_last_attempt(attempts):
    caption = "three cats sleeping on a wooden table next to a window"
    chat = ScriptedChat([f"bad answer {i}" for i in range(attempts)])
    (result,) = llm_scores([caption], chat, attempts=attempts)
    assert result == ScoreResult(lexical_score(caption), "lexical-fallback", attempts, f"bad answer {attempts - 1}")
    assert len(chat.calls) == attempts


def test_llm_scores_does_not_ask_about_empty_captions():
    chat = ScriptedChat(["[score: 4]"])
    assert llm_scores(["", "  ", "a dog"], chat) == [
        ScoreResult(1, "lexical", 0, ""),
        ScoreResult(1, "lexical", 0, ""),
        ScoreResult(4, "llm", 1, "[score: 4]"),
    ]


def test_llm_scores_needs_one_attempt():
    with pytest.raises(ValueError):
        llm_scores(["a dog"], ScriptedChat([]), attempts=0)


# --- The real loader on a tiny random-weight model.


@pytest.fixture(scope="module")
def tiny_chat_dir(tmp_path_factory):
    from genview.models.chat_llm import build_tiny_chat_model

    return build_tiny_chat_model(tmp_path_factory.mktemp("tiny_chat"))


def test_tiny_chat_model_is_small_and_deterministic(tiny_chat_dir, tmp_path):
    from genview.models.chat_llm import build_tiny_chat_model

    files = {p.name: p.read_bytes() for p in tiny_chat_dir.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(files)
    assert sum(map(len, files.values())) < 5_000_000
    rebuilt = build_tiny_chat_model(tmp_path / "again")
    assert (rebuilt / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_tiny_chat_model_loads_generates_and_scores(tiny_chat_dir):
    from genview.models.chat_llm import load_chat_model

    chat = load_chat_model(str(tiny_chat_dir), max_new_tokens=8)
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": "a dog"}]
    assert isinstance(chat.generate(messages), str)

    captions = ["a dog", "a small red striped circle in the top left", "a calm shape"]
    # Two attempts keep this quick; the scripted tests above cover the full re-ask loop.
    results = llm_scores(captions, chat.generate, attempts=2)
    for caption, result in zip(captions, results):
        assert 1 <= result.score <= 4
        assert result.source in ("llm", "lexical-fallback")
        if result.source == "lexical-fallback":  # random weights: expected
            assert result.score == lexical_score(caption) and result.attempts == 2


def test_sampled_answers_are_seeded_by_seed_and_prompt(tiny_chat_dir):
    """Official decoding samples; a rerun must still give the same answers, whatever else was asked before."""
    from genview.models.chat_llm import DEFAULT_MAX_NEW_TOKENS, load_chat_model

    assert DEFAULT_MAX_NEW_TOKENS == 1000  # the official cap: a verbose answer is not cut before its score
    messages = [{"role": "user", "content": "a dog"}]
    chat = load_chat_model(str(tiny_chat_dir), max_new_tokens=12, do_sample=True, seed=3)
    first = chat.generate(messages)
    chat.generate([{"role": "user", "content": "something else first"}])
    assert chat.generate(messages) == first
    others = {
        load_chat_model(str(tiny_chat_dir), max_new_tokens=12, do_sample=True, seed=s).generate(messages)
        for s in range(4)
    }
    assert len(others) > 1  # the seed matters: sampling is on
    greedy = load_chat_model(str(tiny_chat_dir), max_new_tokens=12, do_sample=False, seed=0)
    assert greedy.generate(messages) == load_chat_model(
        str(tiny_chat_dir), max_new_tokens=12, do_sample=False, seed=5
    ).generate(messages)


def test_tokenizer_without_chat_template_gets_a_plain_prompt(tiny_chat_dir):
    from genview.models.chat_llm import load_chat_model

    chat = load_chat_model(str(tiny_chat_dir), max_new_tokens=4)
    chat.tokenizer.chat_template = None
    messages = [{"role": "system", "content": "rate it"}, {"role": "user", "content": "a dog"}]
    assert chat._prompt(messages) == ("rate it\n\na dog\n", True)
    assert isinstance(chat.generate(messages), str)


def test_missing_model_path_names_the_path_and_role(tmp_path):
    from genview.models.chat_llm import load_chat_model

    missing = tmp_path / "no_such_model"
    with pytest.raises(GenviewError, match="models.complexity_llm") as error:
        load_chat_model(str(missing))
    assert str(missing) in str(error.value)
    with pytest.raises(GenviewError, match="no/such/model"):
        load_chat_model("results/no/such/model")


def test_folder_without_model_files_is_a_genview_error(tmp_path):
    from genview.models.chat_llm import load_chat_model

    with pytest.raises(GenviewError, match=str(tmp_path)):
        load_chat_model(str(tmp_path))
