"""The synthetic English→German corpus: grammar, alignments, splits.

The agreement checks use declension tables written here, independently of the lexicon's,
and find each noun phrase's case from the English sentence alone (subject before the
verb, object after it, the case a preposition governs).
"""

from __future__ import annotations

import random

import pytest

from xattn_edu.translate.data import lexicon as lx
from xattn_edu.translate.data.synthetic import (
    Clause,
    NounPhrase,
    Sentence,
    SentencePair,
    generate,
    make_splits,
    render,
    sample_pair,
    show_pair,
)

N_SAMPLES = 2000

# --- independent German grammar tables ---------------------------------------------------
ARTICLE = {
    ("the", "nom"): {"m": "der", "f": "die", "n": "das", "pl": "die"},
    ("the", "acc"): {"m": "den", "f": "die", "n": "das", "pl": "die"},
    ("the", "dat"): {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
    ("a", "nom"): {"m": "ein", "f": "eine", "n": "ein"},
    ("a", "acc"): {"m": "einen", "f": "eine", "n": "ein"},
    ("a", "dat"): {"m": "einem", "f": "einer", "n": "einem"},
}
ADJ_ENDING = {
    ("the", "nom"): {"m": "e", "f": "e", "n": "e", "pl": "en"},
    ("the", "acc"): {"m": "en", "f": "e", "n": "e", "pl": "en"},
    ("the", "dat"): {"m": "en", "f": "en", "n": "en", "pl": "en"},
    ("a", "nom"): {"m": "er", "f": "e", "n": "es"},
    ("a", "acc"): {"m": "en", "f": "e", "n": "es"},
    ("a", "dat"): {"m": "en", "f": "en", "n": "en"},
}
PREP_CASE = {"with": "dat", "behind": "dat", "for": "acc", "without": "acc"}
FRONT_ADVERBS = {"today": "heute", "here": "hier", "there": "dort", "now": "jetzt", "sometimes": "manchmal",
                 "often": "oft", "tomorrow": "morgen", "yesterday": "gestern"}  # fmt: skip
SUBORDINATORS = {"weil", "obwohl", "dass"}

EN_NOUNS = {n.en_sg: (n, False) for n in lx.NOUNS} | {n.en_pl: (n, True) for n in lx.NOUNS}
EN_ADJECTIVES = {a.en: a for a in lx.ADJECTIVES}
ALL_VERBS = lx.VERBS + lx.CLAUSE_VERBS
EN_FINITE = {f for v in ALL_VERBS for f in (v.en_3sg, v.en_base, v.en_past)} | {"has", "have"}
EN_VERB_WORDS = EN_FINITE | {v.en_participle for v in ALL_VERBS}
DE_FINITE_SG = {v.de_3sg for v in ALL_VERBS} | {v.de_particle + v.de_3sg for v in ALL_VERBS} | {"hat"}
DE_FINITE_PL = {v.de_3pl for v in ALL_VERBS} | {v.de_particle + v.de_3pl for v in ALL_VERBS} | {"haben"}
DE_FINITE = DE_FINITE_SG | DE_FINITE_PL


def adjective_form(stem: str, ending: str) -> str:
    word = stem + ending
    return word.replace("ee", "e")  # müde + en → müden


@pytest.fixture(scope="module")
def pairs() -> list[SentencePair]:
    rng = random.Random(1234)
    return [sample_pair(rng) for _ in range(N_SAMPLES)]


def de(pair: SentencePair) -> tuple[str, ...]:
    """The German tokens with the sentence's capital first letter undone (nouns keep theirs)."""
    first = pair.tgt[0]
    return (first[:1].lower() + first[1:], *pair.tgt[1:])


def links_of(pair: SentencePair) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """src index → tgt indices, tgt index → src indices."""
    s2t: dict[int, list[int]] = {}
    t2s: dict[int, list[int]] = {}
    for s, t in pair.alignment:
        s2t.setdefault(s, []).append(t)
        t2s.setdefault(t, []).append(s)
    return s2t, t2s


def english_case(src: tuple[str, ...], start: int, noun_index: int) -> str:
    """Case of the noun phrase src[start:noun_index+1], judged from the English words around it."""
    before = src[start - 1] if start > 0 else None
    is_particle = before == "for" and src[start - 2] in {"looks", "look", "looked"}
    if before in PREP_CASE and not is_particle:
        return PREP_CASE[before]
    after = src[noun_index + 1]
    return "nom" if after in EN_FINITE else "acc"


# --- lexicon sanity ------------------------------------------------------------------------


def test_lexicon_size_and_unambiguous_english_words():
    assert len(lx.NOUNS) >= 60 and len(lx.ADJECTIVES) >= 20 and len(lx.VERBS) >= 25
    assert len({n.en_sg for n in lx.NOUNS}) == len(lx.NOUNS)
    assert len({a.en for a in lx.ADJECTIVES}) == len(lx.ADJECTIVES)
    assert not set(EN_NOUNS) & (EN_VERB_WORDS | set(EN_ADJECTIVES) | set(PREP_CASE))
    assert not DE_FINITE_SG & DE_FINITE_PL
    assert {n.gender for n in lx.NOUNS} == {"m", "f", "n"}


def test_vocabulary_is_a_few_hundred_words_per_side(pairs):
    src_words = {w for p in pairs for w in p.src}
    tgt_words = {w for p in pairs for w in p.tgt}
    assert len(src_words) >= 250 and len(tgt_words) >= 300


# --- alignment structure ---------------------------------------------------------------------


def test_alignment_indices_in_range_sorted_and_total(pairs):
    for pair in pairs:
        assert list(pair.alignment) == sorted(set(pair.alignment))
        assert all(0 <= s < len(pair.src) and 0 <= t < len(pair.tgt) for s, t in pair.alignment)
        assert {t for _, t in pair.alignment} == set(range(len(pair.tgt))), show_pair(pair)
        assert {s for s, _ in pair.alignment} == set(range(len(pair.src))), show_pair(pair)


GERMAN_NOUNS = {form for n in lx.NOUNS for form in (n.de_sg, n.de_pl, n.de_pl + "n")}


def test_tokens_are_words_and_punctuation_english_lowercase_german_as_written(pairs):
    """English (the input) is lower case; German capitalises its nouns and the sentence's first word."""
    for pair in pairs:
        for word in pair.src + pair.tgt:
            assert word.strip() == word and word and (word in {",", "."} or word.isalpha())
        assert all(word == word.lower() for word in pair.src)
        assert pair.tgt[0][0].isupper(), pair.tgt_text
        for word in de(pair):
            assert word[0].isupper() == (word in GERMAN_NOUNS), pair.tgt_text
        assert pair.src[-1] == "." and pair.tgt[-1] == "."
        assert pair.src_text.split() == list(pair.src) and pair.tgt_text.split() == list(pair.tgt)


def test_german_nouns_are_capitalised_in_the_lexicon():
    for noun in lx.NOUNS:
        assert noun.de_sg[0].isupper() and noun.de_pl[0].isupper() and noun.de_sg[1:].islower(), noun


def test_punctuation_and_articles_link_to_their_counterparts(pairs):
    for pair in pairs:
        s2t, _ = links_of(pair)
        for s, word in enumerate(pair.src):
            targets = [de(pair)[t] for t in s2t[s]]
            if word in {",", "."}:
                assert targets == [word]
            if word in {"the", "a", "an"}:
                assert len(targets) == 1 and targets[0] in {a for table in ARTICLE.values() for a in table.values()}


def test_reordering_really_happens(pairs):
    def crosses(pair):
        links = pair.alignment
        return any(s1 < s2 and t1 > t2 for s1, t1 in links for s2, t2 in links)

    share = sum(map(crosses, pairs)) / len(pairs)
    assert 0.5 < share < 1.0  # most pairs reorder, some stay monotone


# --- agreement ---------------------------------------------------------------------------------


def test_noun_phrases_agree_in_gender_number_and_case(pairs):
    checked = {"nom": 0, "acc": 0, "dat": 0}
    for pair in pairs:
        s2t, _ = links_of(pair)
        for i, word in enumerate(pair.src):
            if word not in EN_NOUNS:
                continue
            noun, plural = EN_NOUNS[word]
            adjective = EN_ADJECTIVES.get(pair.src[i - 1])
            start = i - 2 if adjective else i - 1
            article = pair.src[start]
            assert article in {"the", "a", "an"}, show_pair(pair)
            definiteness = "the" if article == "the" else "a"
            case = english_case(pair.src, start, i)
            key = "pl" if plural else noun.gender
            (j,) = s2t[i]
            expected_noun = noun.de_pl if plural else noun.de_sg
            if plural and case == "dat" and not expected_noun.endswith(("n", "s")):
                expected_noun += "n"
            assert de(pair)[j] == expected_noun, show_pair(pair)
            if adjective:
                ending = ADJ_ENDING[definiteness, case][key]
                assert de(pair)[j - 1] == adjective_form(adjective.de_stem, ending), show_pair(pair)
                assert s2t[i - 1] == [j - 1]
            german_article_at = j - 2 if adjective else j - 1
            assert de(pair)[german_article_at] == ARTICLE[definiteness, case][key], show_pair(pair)
            assert s2t[start] == [german_article_at]
            checked[case] += 1
    assert min(checked.values()) > 200, checked


def test_english_a_or_an(pairs):
    for pair in pairs:
        for word, following in zip(pair.src, pair.src[1:], strict=False):
            if word in {"a", "an"}:
                assert (word == "an") == (following[0] in "aeiou"), pair.src_text


def test_subject_verb_agreement_in_both_languages(pairs):
    for pair in pairs:
        s2t, _ = links_of(pair)
        for i, word in enumerate(pair.src[:-1]):
            verb = pair.src[i + 1]
            if word not in EN_NOUNS or verb not in EN_FINITE:
                continue
            _, plural = EN_NOUNS[word]
            if verb == "has":
                assert not plural
            elif verb == "have":
                assert plural
            elif any(verb == v.en_3sg for v in ALL_VERBS):
                assert not plural, pair.src_text
            finite = [de(pair)[t] for t in s2t[i + 1] if de(pair)[t] in DE_FINITE]
            if {"hat", "haben"} & set(finite):  # past → perfect: "verkauft" there is the participle
                finite = [w for w in finite if w in {"hat", "haben"}]
            assert len(finite) == 1, show_pair(pair)
            assert finite[0] in (DE_FINITE_PL if plural else DE_FINITE_SG), show_pair(pair)


# --- word order ----------------------------------------------------------------------------------


def test_fronted_adverb_puts_the_verb_second(pairs):
    fronted = [p for p in pairs if p.src[0] in FRONT_ADVERBS]
    assert len(fronted) > 200
    for pair in fronted:
        assert de(pair)[0] == FRONT_ADVERBS[pair.src[0]]
        assert de(pair)[1] in DE_FINITE, show_pair(pair)


def test_fronted_clause_puts_the_verb_right_after_the_comma(pairs):
    fronted = [p for p in pairs if p.src[0] in {"because", "although"}]
    assert len(fronted) > 50
    for pair in fronted:
        assert de(pair)[de(pair).index(",") + 1] in DE_FINITE, show_pair(pair)


def test_subordinate_clauses_are_verb_final(pairs):
    count = 0
    for pair in pairs:
        for k, word in enumerate(de(pair)):
            if word in SUBORDINATORS:
                end = next(i for i in range(k, len(de(pair))) if de(pair)[i] in {",", "."})
                assert de(pair)[end - 1] in DE_FINITE, show_pair(pair)
                assert k == 0 or de(pair)[k - 1] == ",", show_pair(pair)
                count += 1
    assert count > 500


def test_participles_and_separable_prefixes_close_the_clause(pairs):
    """German words linked to a non-finite English verb part stand at the clause end."""
    seen_prefix = seen_participle = 0
    for pair in pairs:
        _, t2s = links_of(pair)
        for t, word in enumerate(de(pair)):
            sources = [pair.src[s] for s in t2s[t]]
            if word in DE_FINITE or not set(sources) & EN_VERB_WORDS:
                continue
            assert de(pair)[t + 1] in {",", "."} | DE_FINITE, show_pair(pair)
            seen_prefix += word in {v.de_particle for v in lx.VERBS}
            seen_participle += word in {v.de_participle for v in ALL_VERBS}
    assert seen_prefix > 30 and seen_participle > 300


# --- determinism, splits, uniqueness -----------------------------------------------------------


def test_each_english_sentence_has_one_translation(pairs):
    translation: dict[tuple[str, ...], tuple[str, ...]] = {}
    for pair in pairs:
        assert translation.setdefault(pair.src, pair.tgt) == pair.tgt


def test_generation_is_deterministic_by_seed():
    assert generate(300, seed=7) == generate(300, seed=7)
    assert generate(300, seed=7) != generate(300, seed=8)
    assert len({p.src for p in generate(300, seed=7)}) == 300


def test_make_splits_sizes_and_disjointness():
    splits = make_splits(800, 100, 100, seed=3)
    assert (len(splits.train), len(splits.val), len(splits.test)) == (800, 100, 100)
    sources = [{p.src for p in split} for split in (splits.train, splits.val, splits.test)]
    assert sum(map(len, sources)) == 1000  # distinct inside each split and across splits
    assert make_splits(800, 100, 100, seed=3) == splits


def test_bad_plans_are_rejected():
    with pytest.raises(ValueError, match="definite"):
        render(Sentence(Clause(NounPhrase("dog", plural=True, definite=False), "see", obj=NounPhrase("cat"))))
    with pytest.raises(ValueError, match="tense"):
        render(Sentence(Clause(NounPhrase("dog"), "see", "future", NounPhrase("cat"))))
    clause = Clause(NounPhrase("dog"), "see", obj=NounPhrase("cat"))
    with pytest.raises(ValueError, match="subordinate clause exactly when"):
        render(Sentence(clause, link="because"))
    with pytest.raises(ValueError, match="can come first"):
        render(Sentence(Clause(NounPhrase("man"), "think"), link="that", sub=clause, sub_first=True))
    with pytest.raises(ValueError, match="no fronted adverb"):
        render(Sentence(clause, adverb="today", link="because", sub=clause, sub_first=True))
    with pytest.raises(ValueError, match="unknown verb"):
        render(Sentence(Clause(NounPhrase("man"), "think", obj=NounPhrase("cat"))))
    with pytest.raises(ValueError):
        generate(-1)


def test_show_pair_lists_each_german_word_with_its_sources():
    pair = render(Sentence(Clause(NounPhrase("man"), "see", lx.PRESENT, NounPhrase("dog")), adverb="today"))
    text = show_pair(pair)
    assert "EN: 0:today 1:the 2:man 3:sees 4:the 5:dog 6:." in text
    assert "DE: 0:Heute 1:sieht 2:der 3:Mann 4:den 5:Hund 6:." in text
    assert any(line.split() == ["1", "sieht", "<-", "3:sees"] for line in text.splitlines())


def test_cli_shows_pairs(capsys):
    from xattn_edu.cli import main

    assert main(["data", "synthetic", "-n", "2", "--seed", "5"]) == 0
    shown = capsys.readouterr().out
    assert shown == "\n\n".join(show_pair(p) for p in generate(2, seed=5)) + "\n"


# --- golden examples, checked by hand ------------------------------------------------------------

NP = NounPhrase
GOLDEN = [
    (
        Sentence(Clause(NP("man"), "see", lx.PRESENT, NP("dog")), adverb="today"),
        "today the man sees the dog .",
        "Heute sieht der Mann den Hund .",
        [(0, 0), (1, 2), (2, 3), (3, 1), (4, 4), (5, 5), (6, 6)],
    ),
    (
        Sentence(Clause(NP("man"), "sell", lx.PRESENT, NP("car")), link="because",
                 sub=Clause(NP("woman"), "read", lx.PRESENT, NP("book"))),
        "the man sells the car , because the woman reads the book .",
        "Der Mann verkauft das Auto , weil die Frau das Buch liest .",
        [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (9, 11), (10, 9),
         (11, 10), (12, 12)],
    ),
    (
        Sentence(Clause(NP("child", plural=True), "see", lx.PERFECT, NP("bird", definite=False, adjective="old"))),
        "the children have seen an old bird .",
        "Die Kinder haben einen alten Vogel gesehen .",
        [(0, 0), (1, 1), (2, 2), (3, 6), (4, 3), (5, 4), (6, 5), (7, 7)],
    ),
    (
        Sentence(Clause(NP("woman"), "call", lx.PRESENT, NP("doctor"))),
        "the woman calls the doctor .",
        "Die Frau ruft den Arzt an .",
        [(0, 0), (1, 1), (2, 2), (2, 5), (3, 3), (4, 4), (5, 6)],
    ),
    (
        Sentence(Clause(NP("girl"), "think"), link="that",
                 sub=Clause(NP("man"), "call", lx.PRESENT, NP("mother"))),
        "the girl thinks that the man calls the mother .",
        "Das Mädchen denkt , dass der Mann die Mutter anruft .",
        [(0, 0), (1, 1), (2, 2), (3, 3), (3, 4), (4, 5), (5, 6), (6, 9), (7, 7), (8, 8), (9, 10)],
    ),
    (
        Sentence(Clause(NP("teacher"), "paint", lx.PAST, NP("house", adjective="small"), "with",
                        NP("dog", plural=True))),
        "the teacher painted the small house with the dogs .",
        "Der Lehrer hat das kleine Haus mit den Hunden gemalt .",
        [(0, 0), (1, 1), (2, 2), (2, 9), (3, 3), (4, 4), (5, 5), (6, 6), (7, 7), (8, 8), (9, 10)],
    ),
    (
        Sentence(Clause(NP("cat", definite=False), "eat", lx.PRESENT, NP("egg", definite=False)),
                 link="although", sub=Clause(NP("cook", plural=True), "switch", lx.PERFECT, NP("lamp")),
                 sub_first=True),
        "although the cooks have switched off the lamp , a cat eats an egg .",
        "Obwohl die Köche die Lampe ausgeschaltet haben , isst eine Katze ein Ei .",
        [(0, 0), (1, 1), (2, 2), (3, 6), (4, 5), (5, 5), (6, 3), (7, 4), (8, 7), (9, 9), (10, 10),
         (11, 8), (12, 11), (13, 12), (14, 13)],
    ),
    (
        Sentence(Clause(NP("girl", definite=False, adjective="tired"), "look", lx.PRESENT,
                        NP("bag", definite=False, adjective="green"), "behind", NP("car"))),
        "a tired girl looks for a green bag behind the car .",
        "Ein müdes Mädchen sucht eine grüne Tasche hinter dem Auto .",
        [(0, 0), (1, 1), (2, 2), (3, 3), (4, 3), (5, 4), (6, 5), (7, 6), (8, 7), (9, 8), (10, 9),
         (11, 10)],
    ),
    (
        Sentence(Clause(NP("friend", plural=True), "pick", lx.PRESENT, NP("key")), adverb="now"),
        "now the friends pick up the key .",
        "Jetzt heben die Freunde den Schlüssel auf .",
        [(0, 0), (1, 2), (2, 3), (3, 1), (4, 6), (5, 4), (6, 5), (7, 7)],
    ),
]  # fmt: skip


@pytest.mark.parametrize("plan, english, german, alignment", GOLDEN)
def test_golden_examples(plan, english, german, alignment):
    pair = render(plan)
    assert pair.src_text == english
    assert pair.tgt_text == german, show_pair(pair)
    assert list(pair.alignment) == sorted(alignment), show_pair(pair)
