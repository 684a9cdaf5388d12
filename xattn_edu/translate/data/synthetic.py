"""A synthetic English→German corpus with gold word alignments.

A small synchronous grammar writes each sentence in both languages at once, so it knows
which English word every German word translates. The German side gets what a translator
must learn, on real words from :mod:`xattn_edu.translate.data.lexicon`:

* agreement: articles and adjective endings by gender, number and case (nominative
  subject, accusative object, accusative after *für/ohne*, dative after *mit/hinter*,
  dative plural nouns in -n), *a/an* and *has/have* on the English side;
* verb second: a fronted adverb or clause pushes the verb before the subject
  ("today the man sees the dog" → "Heute sieht der Mann den Hund");
* verb-final subordinate clauses after *weil/obwohl/dass*
  ("…, because the woman reads the book" → "…, weil die Frau das Buch liest");
* a clause-final right bracket: perfect participles ("has seen" → "hat … gesehen"), the
  English simple past rendered as German perfect ("saw" → "hat … gesehen") and separable
  verbs ("calls" → "ruft … an", joined again in a subordinate clause: "anruft").

Tokenization is deliberately trivial: words, with the comma and the full stop as tokens of
their own, joined by single spaces (``pair.src_text``, ``pair.tgt_text``). Splitting on
whitespace gives the tokens back. The English side, the model's input, is all lower case (so
input is normalised by lower-casing it; see :mod:`xattn_edu.translate.textform`); the German
side is written as German is: nouns capitalised and the first word of the sentence too
("Heute sieht der Mann den Hund ."). Scores compare German as written: exact match and BLEU
run on the detokenized, cased text ("Heute sieht der Mann den Hund."), lower-cased BLEU besides.

Alignments are ``(src_index, tgt_index)`` links. Every token on both sides is linked:
article to article, a verb to each German part it becomes (finite verb, participle,
separable prefix), an English particle to the German word that carries its meaning,
punctuation to punctuation (the comma German requires before *dass* links to "that").

A sentence is first *planned* (:class:`Sentence`: which words, tense, construction),
then *rendered* (:func:`render`); sampling only makes plans, so tests can render
hand-written plans and compare them to hand-checked translations.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Sequence
from dataclasses import dataclass

from xattn_edu.translate.data import lexicon as lx

# ---------------------------------------------------------------------------------------
# Data types
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentencePair:
    """One English sentence, its German translation, and the word links between them."""

    src: tuple[str, ...]  # English tokens
    tgt: tuple[str, ...]  # German tokens
    alignment: tuple[tuple[int, int], ...]  # sorted (src_index, tgt_index) links

    @property
    def src_text(self) -> str:
        """The English side as one space-separated string."""
        return " ".join(self.src)

    @property
    def tgt_text(self) -> str:
        """The German side as one space-separated string."""
        return " ".join(self.tgt)


@dataclass(frozen=True)
class NounPhrase:
    """Plan of a noun phrase: article, optional adjective, noun."""

    noun: str  # English singular, a key of the lexicon ("dog")
    plural: bool = False  # plural nouns always take the definite article
    definite: bool = True  # "the" (der/die/das) or "a/an" (ein/eine)
    adjective: str | None = None  # English adjective ("big"), or None


@dataclass(frozen=True)
class Clause:
    """Plan of a clause: subject, verb, object, optional prepositional phrase."""

    subject: NounPhrase  # the nominative noun phrase
    verb: str  # English base form, a key of the lexicon ("see", "call", "think")
    tense: str = lx.PRESENT  # lexicon.PRESENT, PERFECT or PAST
    obj: NounPhrase | None = None  # the accusative object; None for a verb taking a "that" clause
    prep: str | None = None  # English preposition ("with"), or None
    prep_object: NounPhrase | None = None  # its noun phrase (case from the lexicon)


@dataclass(frozen=True)
class Sentence:
    """Plan of a whole sentence."""

    main: Clause  # the main clause
    adverb: str | None = None  # fronted English adverb ("today"), or None
    link: str | None = None  # "because"/"although" (adverbial clause), "that" (object clause), or None
    sub: Clause | None = None  # the subordinate clause when link is set
    sub_first: bool = False  # adverbial clause before the main clause ("because …, the man …")


@dataclass(frozen=True)
class Splits:
    """Disjoint train/validation/test lists: no English sentence occurs in two of them."""

    train: list[SentencePair]  # training pairs
    val: list[SentencePair]  # validation pairs
    test: list[SentencePair]  # test pairs


# A German token and the English indices it is linked to.
_DeToken = tuple[str, tuple[int, ...]]

_NOUN = {n.en_sg: n for n in lx.NOUNS}
_ADJECTIVE = {a.en: a for a in lx.ADJECTIVES}
_VERB = {v.en_base: v for v in lx.VERBS}
_CLAUSE_VERB = {v.en_base: v for v in lx.CLAUSE_VERBS}
_ADVERB = {a.en: a for a in lx.ADVERBS}
_PREPOSITION = {p.en: p for p in lx.PREPOSITIONS}


class _English:
    """The English side under construction: appending a word returns its index."""

    def __init__(self) -> None:
        self.tokens: list[str] = []

    def add(self, word: str) -> int:
        self.tokens.append(word)
        return len(self.tokens) - 1


# ---------------------------------------------------------------------------------------
# Words
# ---------------------------------------------------------------------------------------


def english_indefinite(next_word: str) -> str:
    """"an" before a vowel letter, else "a" (true for every word in the lexicon)."""
    return "an" if next_word[0] in "aeiou" else "a"


def german_adjective(stem: str, ending: str) -> str:
    """Stem plus ending; a stem already ending in -e does not double it (müde → müden)."""
    return stem + ending[1:] if stem.endswith("e") and ending else stem + ending


def german_noun(noun: lx.Noun, plural: bool, case: str) -> str:
    """The German noun form: the dative plural adds -n unless it ends in -n or -s."""
    if not plural:
        return noun.de_sg
    if case == "dat" and not noun.de_pl.endswith(("n", "s")):
        return noun.de_pl + "n"
    return noun.de_pl


def _noun_phrase(en: _English, np: NounPhrase, case: str) -> list[_DeToken]:
    """Write the English phrase; return the German one, declined for ``case``."""
    noun = _NOUN[np.noun]
    if np.plural and not np.definite:
        raise ValueError(f"plural noun phrases are definite in this grammar: {np}")
    adjective = _ADJECTIVE[np.adjective] if np.adjective else None
    en_noun = noun.en_pl if np.plural else noun.en_sg
    first_word = adjective.en if adjective else en_noun
    article = en.add("the" if np.definite else english_indefinite(first_word))
    key = "pl" if np.plural else noun.gender
    table = lx.DEFINITE if np.definite else lx.INDEFINITE
    german: list[_DeToken] = [(table[case][key], (article,))]
    if adjective:
        endings = lx.WEAK_ENDING if np.definite else lx.MIXED_ENDING
        german.append((german_adjective(adjective.de_stem, endings[case][key]), (en.add(adjective.en),)))
    german.append((german_noun(noun, np.plural, case), (en.add(en_noun),)))
    return german


# ---------------------------------------------------------------------------------------
# Verbs
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _VerbGroup:
    """The German verb split into the finite verb (second or last) and the clause-final rest."""

    finite: _DeToken  # "sieht", "hat", "ruft"
    tail: tuple[_DeToken, ...]  # () or (participle,) or (separable prefix,)
    separable_present: bool  # prefix and verb are written as one word in a verb-final clause


def _verb_group(en: _English, verb: lx.Verb, tense: str, plural: bool) -> _VerbGroup:
    """Write the English verb (with its particle); return the German parts and their links."""
    number = 1 if plural else 0
    if tense == lx.PRESENT:
        head = en.add(verb.en_base if plural else verb.en_3sg)
        finite_links = (head,)
    elif tense == lx.PERFECT:
        finite_links = (en.add(lx.EN_HAVE[number]),)
        head = en.add(verb.en_participle)
    elif tense == lx.PAST:
        head = en.add(verb.en_past)
        finite_links = (head,)
    else:
        raise ValueError(f"unknown tense {tense!r}; expected one of {lx.TENSES}")
    particle = (en.add(verb.en_particle),) if verb.en_particle else ()

    if tense == lx.PRESENT:
        finite_word = verb.de_3pl if plural else verb.de_3sg
        if verb.de_particle:  # "switches off" → schaltet … aus; "calls" → ruft … an
            prefix = (verb.de_particle, particle or (head,))
            return _VerbGroup((finite_word, (head,)), (prefix,), True)
        return _VerbGroup((finite_word, (head, *particle)), (), False)
    participle = (verb.de_participle, (head, *particle))
    return _VerbGroup((lx.DE_HAVE[number], finite_links), (participle,), False)


def _verb_final(group: _VerbGroup) -> list[_DeToken]:
    """The verb at the end of a subordinate clause: "liest", "gelesen hat", "anruft"."""
    if group.separable_present:
        prefix, prefix_links = group.tail[0]
        word, links = group.finite
        return [(prefix + word, tuple(sorted({*links, *prefix_links})))]
    return [*group.tail, group.finite]


# ---------------------------------------------------------------------------------------
# Clauses and sentences
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clause:
    """A rendered clause, in pieces, so main and subordinate word order can be assembled."""

    subject: list[_DeToken]  # nominative noun phrase
    verb: _VerbGroup  # finite verb and clause-final parts
    middle: list[_DeToken]  # object and prepositional phrase, in German order


def _clause(en: _English, clause: Clause, verbs: dict[str, lx.Verb]) -> _Clause:
    """Write the English clause (subject, verb, object, PP); return the German pieces."""
    if clause.verb not in verbs:
        raise ValueError(f"unknown verb {clause.verb!r} for this construction")
    subject = _noun_phrase(en, clause.subject, "nom")
    group = _verb_group(en, verbs[clause.verb], clause.tense, clause.subject.plural)
    middle = _noun_phrase(en, clause.obj, "acc") if clause.obj else []
    if clause.prep:
        if clause.prep_object is None:
            raise ValueError(f"preposition {clause.prep!r} needs a prep_object")
        prep = _PREPOSITION[clause.prep]
        middle.append((prep.de, (en.add(prep.en),)))
        middle += _noun_phrase(en, clause.prep_object, prep.case)
    return _Clause(subject, group, middle)


def _verb_second(clause: _Clause, front: list[_DeToken]) -> list[_DeToken]:
    """Main-clause order: one constituent, the finite verb, the rest, the clause-final parts."""
    if front:
        return [*front, clause.verb.finite, *clause.subject, *clause.middle, *clause.verb.tail]
    return [*clause.subject, clause.verb.finite, *clause.middle, *clause.verb.tail]


def _subordinate(conjunction: _DeToken, clause: _Clause) -> list[_DeToken]:
    """Subordinate-clause order: conjunction, subject, rest, then the whole verb."""
    return [conjunction, *clause.subject, *clause.middle, *_verb_final(clause.verb)]


def _clause_first(en: _English, sentence: Sentence) -> list[_DeToken]:
    """"because …, the man …": the subordinate clause takes the first place, the verb follows."""
    if sentence.link not in lx.SUBORDINATORS:
        raise ValueError(f"only {sorted(lx.SUBORDINATORS)} clauses can come first, not {sentence.link!r}")
    if sentence.adverb:
        raise ValueError("a sentence with a fronted clause takes no fronted adverb")
    conjunction = (lx.SUBORDINATORS[sentence.link], (en.add(sentence.link),))
    sub = _subordinate(conjunction, _clause(en, sentence.sub, _VERB))
    comma = (",", (en.add(","),))
    return _verb_second(_clause(en, sentence.main, _VERB), [*sub, comma])


def _main_first(en: _English, sentence: Sentence) -> list[_DeToken]:
    """[adverb] main clause [, conjunction subordinate clause]."""
    front = [(_ADVERB[sentence.adverb].de, (en.add(sentence.adverb),))] if sentence.adverb else []
    en_that, de_that = lx.COMPLEMENTIZER
    takes_clause = sentence.link == en_that
    german = _verb_second(_clause(en, sentence.main, _CLAUSE_VERB if takes_clause else _VERB), front)
    if sentence.link is None:
        return german
    if takes_clause:  # German needs a comma before dass; it has no English word, so it links to "that"
        that = en.add(en_that)
        comma, conjunction = (",", (that,)), (de_that, (that,))
    elif sentence.link in lx.SUBORDINATORS:
        comma = (",", (en.add(","),))
        conjunction = (lx.SUBORDINATORS[sentence.link], (en.add(sentence.link),))
    else:
        raise ValueError(f"unknown link {sentence.link!r}")
    return [*german, comma, *_subordinate(conjunction, _clause(en, sentence.sub, _VERB))]


def sentence_case(word: str) -> str:
    """``word`` with its first letter upper-case, the rest as it is ("heute" → "Heute", "Mann" stays)."""
    return word[:1].upper() + word[1:]


def render(sentence: Sentence) -> SentencePair:
    """Render a planned sentence into an aligned English/German pair (German in sentence case)."""
    if (sentence.link is None) != (sentence.sub is None):
        raise ValueError("a sentence has a subordinate clause exactly when it has a link word")
    en = _English()
    if sentence.sub_first:
        german = _clause_first(en, sentence)
    else:
        german = _main_first(en, sentence)
    german.append((".", (en.add("."),)))
    german[0] = (sentence_case(german[0][0]), german[0][1])
    links = sorted((s, t) for t, (_, sources) in enumerate(german) for s in sources)
    return SentencePair(tuple(en.tokens), tuple(word for word, _ in german), tuple(links))


# ---------------------------------------------------------------------------------------
# Sampling plans
# ---------------------------------------------------------------------------------------

# Construction weights: simple clause, "…, because …", "… thinks that …", "because …, …".
_CONSTRUCTIONS = (("simple", 4), ("adverbial", 3), ("that", 2), ("adverbial_first", 1))
_P_PLURAL, _P_INDEFINITE, _P_ADJECTIVE, _P_PREPOSITION, _P_ADVERB = 0.3, 0.35, 0.3, 0.3, 0.35


@functools.cache
def _nouns_with(tags: frozenset[str]) -> tuple[lx.Noun, ...]:
    """Nouns carrying at least one of ``tags`` (cached: sampling asks for the same sets often)."""
    return tuple(noun for noun in lx.NOUNS if noun.tags & tags)


@functools.cache
def _adjectives_for(tags: frozenset[str]) -> tuple[lx.Adjective, ...]:
    """Adjectives that may describe a noun with ``tags``."""
    return tuple(adjective for adjective in lx.ADJECTIVES if adjective.tags & tags)


def _sample_noun_phrase(rng: random.Random, tags: frozenset[str]) -> NounPhrase:
    noun = rng.choice(_nouns_with(tags))
    plural = rng.random() < _P_PLURAL
    definite = plural or rng.random() >= _P_INDEFINITE
    adjective = rng.choice(_adjectives_for(noun.tags)).en if rng.random() < _P_ADJECTIVE else None
    return NounPhrase(noun.en_sg, plural, definite, adjective)


def _verbs_for(verbs: Sequence[lx.Verb], tense: str) -> list[lx.Verb]:
    """Verbs usable in ``tense``: a simple past spelled like the present ("read") is left out,
    so every English sentence keeps exactly one translation."""
    return [v for v in verbs if not (tense == lx.PAST and v.en_past == v.en_base)]


def _sample_clause(rng: random.Random, tense: str, verbs: Sequence[lx.Verb] = lx.VERBS) -> Clause:
    verb = rng.choice(_verbs_for(verbs, tense))
    subject = _sample_noun_phrase(rng, verb.subject)
    obj = _sample_noun_phrase(rng, verb.objects) if verb.objects else None
    if verb.objects and rng.random() < _P_PREPOSITION:
        prep = rng.choice([p for p in lx.PREPOSITIONS if not p.verbs or verb.en_base in p.verbs])
        return Clause(subject, verb.en_base, tense, obj, prep.en, _sample_noun_phrase(rng, prep.tags))
    return Clause(subject, verb.en_base, tense, obj)


def sample_sentence(rng: random.Random) -> Sentence:
    """A random sentence plan (construction, words, tenses) drawn with ``rng``."""
    names, weights = zip(*_CONSTRUCTIONS, strict=True)
    construction = rng.choices(names, weights)[0]
    tense = rng.choice(lx.TENSES)
    adverbs = [a.en for a in lx.ADVERBS if tense in a.tenses]
    adverb = rng.choice(adverbs) if rng.random() < _P_ADVERB else None
    if construction == "simple":
        return Sentence(_sample_clause(rng, tense), adverb)
    if construction == "that":
        main = _sample_clause(rng, tense, lx.CLAUSE_VERBS)
        return Sentence(main, adverb, "that", _sample_clause(rng, rng.choice(lx.TENSES)))
    link = rng.choice(sorted(lx.SUBORDINATORS))
    sub = _sample_clause(rng, rng.choice(lx.TENSES))
    if construction == "adverbial_first":
        return Sentence(_sample_clause(rng, tense), None, link, sub, sub_first=True)
    return Sentence(_sample_clause(rng, tense), adverb, link, sub)


def sample_pair(rng: random.Random) -> SentencePair:
    """A random aligned sentence pair drawn with ``rng``."""
    return render(sample_sentence(rng))


def generate(n: int, seed: int = 0) -> list[SentencePair]:
    """``n`` pairs with distinct English sentences, the same list for the same seed."""
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    seen: set[tuple[str, ...]] = set()
    pairs: list[SentencePair] = []
    attempts = 20 * n + 100  # the grammar has far more sentences than anyone asks for
    while len(pairs) < n:
        attempts -= 1
        if attempts < 0:
            raise ValueError(f"could not draw {n} distinct sentences; ask for fewer")
        pair = sample_pair(rng)
        if pair.src not in seen:
            seen.add(pair.src)
            pairs.append(pair)
    return pairs


def make_splits(n_train: int, n_val: int, n_test: int, seed: int = 0) -> Splits:
    """Disjoint splits drawn from one stream of distinct sentences (deterministic by seed).

    Every split has distinct English sentences, and no English sentence is in two splits.
    """
    pairs = generate(n_train + n_val + n_test, seed)
    return Splits(pairs[:n_train], pairs[n_train : n_train + n_val], pairs[n_train + n_val :])


def show_pair(pair: SentencePair) -> str:
    """A readable rendering: both sentences with numbered tokens, then each German word's sources.

    Example line: ``  1 sieht      <- 3:sees``.
    """
    sources: dict[int, list[int]] = {}
    for s, t in pair.alignment:
        sources.setdefault(t, []).append(s)
    width = max(len(word) for word in pair.tgt)
    lines = [
        "EN: " + " ".join(f"{i}:{w}" for i, w in enumerate(pair.src)),
        "DE: " + " ".join(f"{i}:{w}" for i, w in enumerate(pair.tgt)),
    ]
    for t, word in enumerate(pair.tgt):
        linked = " ".join(f"{s}:{pair.src[s]}" for s in sources.get(t, []))
        lines.append(f"{t:3d} {word:<{width}} <- {linked}")
    return "\n".join(lines)
