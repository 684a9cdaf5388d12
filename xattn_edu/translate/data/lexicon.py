"""The word tables behind the synthetic English→German corpus.

Only data lives here: nouns with gender and plural, adjectives, verbs with the forms each
tense needs, adverbs, prepositions with the case they govern, and the German article and
adjective-ending tables. :mod:`xattn_edu.translate.data.synthetic` turns these into sentence pairs.

Words are written as each language writes them inside a sentence: German nouns capitalised
("Mann", "Männer"), every other word in lower case; the sentence's first word is capitalised
when a German sentence is rendered. Words were
chosen so that one regular rule covers them: no weak masculine nouns (``der junge`` →
``den jungen``), no adjectives that drop a letter (``dunkel`` → ``dunkle``), no English
word with two German translations in the same construction, so every English sentence has
exactly one German translation.

Semantic tags keep sentences sensible ("the woman reads the newspaper", not "the cup reads
the bridge"): a verb lists the tags its subject and object may carry.
"""

from __future__ import annotations

from dataclasses import dataclass

# ---------------------------------------------------------------------------------------
# Semantic tags
# ---------------------------------------------------------------------------------------
PERSON, ANIMAL, FOOD, TEXT, DEVICE, BUILDING, PLACE, PLANT = (
    "person", "animal", "food", "text", "device", "building", "place", "plant",
)  # fmt: skip
PORTABLE, FURNITURE, VEHICLE, OPENABLE = "portable", "furniture", "vehicle", "openable"
ANIMATE = frozenset({PERSON, ANIMAL})
ANYTHING = frozenset(
    {PERSON, ANIMAL, FOOD, TEXT, DEVICE, BUILDING, PLACE, PLANT, PORTABLE, FURNITURE, VEHICLE}
)
HANDHELD = frozenset({PORTABLE, FOOD, TEXT})


@dataclass(frozen=True)
class Noun:
    """A countable noun in both languages."""

    en_sg: str  # English singular ("man")
    en_pl: str  # English plural ("men")
    de_sg: str  # German singular, capitalised as German nouns are ("Mann")
    de_pl: str  # German plural ("Männer"); the dative plural adds -n (see synthetic.py)
    gender: str  # German grammatical gender: "m", "f" or "n"
    tags: frozenset[str]  # semantic tags, matched against a verb's subject/object tags


@dataclass(frozen=True)
class Adjective:
    """An attributive adjective; German takes a regular ending after the stem."""

    en: str  # English form ("big")
    de_stem: str  # German stem before the ending ("groß")
    tags: frozenset[str]  # nouns it may describe


@dataclass(frozen=True)
class Verb:
    """A verb with every form the three tenses need (third person only)."""

    en_3sg: str  # English present, singular subject ("sees")
    en_base: str  # English present, plural subject ("see")
    en_past: str  # English simple past ("saw"); German renders it with the perfect
    en_participle: str  # English past participle ("seen")
    en_particle: str  # English particle of a phrasal verb ("up" in "picks up"), or ""
    de_3sg: str  # German present, singular subject ("sieht"); stem part of a separable verb
    de_3pl: str  # German present, plural subject ("sehen")
    de_participle: str  # German past participle, particle included ("gesehen", "angerufen")
    de_particle: str  # separable prefix that goes to the clause end ("an" in "ruft … an"), or ""
    subject: frozenset[str]  # tags a subject must carry one of
    objects: frozenset[str]  # tags a direct object must carry one of (empty: takes a clause)


@dataclass(frozen=True)
class Adverb:
    """A sentence adverb that can be fronted (it triggers German verb-second order)."""

    en: str  # English ("today")
    de: str  # German ("heute")
    tenses: frozenset[str]  # tenses it fits ("yesterday" only with the past)


@dataclass(frozen=True)
class Preposition:
    """A preposition and the German case it governs."""

    en: str  # English ("with")
    de: str  # German ("mit")
    case: str  # "acc" or "dat"
    tags: frozenset[str]  # nouns it may take
    verbs: frozenset[str] = frozenset()  # English base forms of the verbs it fits (empty: any verb)


def _n(en_sg: str, en_pl: str, de_sg: str, de_pl: str, gender: str, *tags: str) -> Noun:
    return Noun(en_sg, en_pl, de_sg, de_pl, gender, frozenset(tags))


NOUNS: tuple[Noun, ...] = (
    # masculine
    _n("man", "men", "Mann", "Männer", "m", PERSON),
    _n("father", "fathers", "Vater", "Väter", "m", PERSON),
    _n("brother", "brothers", "Bruder", "Brüder", "m", PERSON),
    _n("son", "sons", "Sohn", "Söhne", "m", PERSON),
    _n("uncle", "uncles", "Onkel", "Onkel", "m", PERSON),
    _n("teacher", "teachers", "Lehrer", "Lehrer", "m", PERSON),
    _n("cook", "cooks", "Koch", "Köche", "m", PERSON),
    _n("doctor", "doctors", "Arzt", "Ärzte", "m", PERSON),
    _n("king", "kings", "König", "Könige", "m", PERSON),
    _n("friend", "friends", "Freund", "Freunde", "m", PERSON),
    _n("dog", "dogs", "Hund", "Hunde", "m", ANIMAL),
    _n("bird", "birds", "Vogel", "Vögel", "m", ANIMAL),
    _n("apple", "apples", "Apfel", "Äpfel", "m", FOOD),
    _n("cake", "cakes", "Kuchen", "Kuchen", "m", FOOD),
    _n("letter", "letters", "Brief", "Briefe", "m", TEXT, OPENABLE),
    _n("ball", "balls", "Ball", "Bälle", "m", PORTABLE),
    _n("key", "keys", "Schlüssel", "Schlüssel", "m", PORTABLE),
    _n("hat", "hats", "Hut", "Hüte", "m", PORTABLE),
    _n("shoe", "shoes", "Schuh", "Schuhe", "m", PORTABLE),
    _n("coat", "coats", "Mantel", "Mäntel", "m", PORTABLE),
    _n("plate", "plates", "Teller", "Teller", "m", PORTABLE),
    _n("spoon", "spoons", "Löffel", "Löffel", "m", PORTABLE),
    _n("table", "tables", "Tisch", "Tische", "m", FURNITURE),
    _n("chair", "chairs", "Stuhl", "Stühle", "m", FURNITURE),
    _n("tree", "trees", "Baum", "Bäume", "m", PLANT),
    _n("garden", "gardens", "Garten", "Gärten", "m", PLACE),
    _n("train", "trains", "Zug", "Züge", "m", VEHICLE),
    _n("computer", "computers", "Computer", "Computer", "m", DEVICE),
    # feminine
    _n("woman", "women", "Frau", "Frauen", "f", PERSON),
    _n("mother", "mothers", "Mutter", "Mütter", "f", PERSON),
    _n("sister", "sisters", "Schwester", "Schwestern", "f", PERSON),
    _n("daughter", "daughters", "Tochter", "Töchter", "f", PERSON),
    _n("cat", "cats", "Katze", "Katzen", "f", ANIMAL),
    _n("cow", "cows", "Kuh", "Kühe", "f", ANIMAL),
    _n("mouse", "mice", "Maus", "Mäuse", "f", ANIMAL),
    _n("duck", "ducks", "Ente", "Enten", "f", ANIMAL),
    _n("newspaper", "newspapers", "Zeitung", "Zeitungen", "f", TEXT),
    _n("door", "doors", "Tür", "Türen", "f", FURNITURE, OPENABLE),
    _n("lamp", "lamps", "Lampe", "Lampen", "f", DEVICE),
    _n("clock", "clocks", "Uhr", "Uhren", "f", DEVICE),
    _n("bag", "bags", "Tasche", "Taschen", "f", PORTABLE, OPENABLE),
    _n("flower", "flowers", "Blume", "Blumen", "f", PORTABLE, PLANT),
    _n("bottle", "bottles", "Flasche", "Flaschen", "f", PORTABLE, OPENABLE),
    _n("cup", "cups", "Tasse", "Tassen", "f", PORTABLE),
    _n("jacket", "jackets", "Jacke", "Jacken", "f", PORTABLE),
    _n("city", "cities", "Stadt", "Städte", "f", PLACE),
    _n("bridge", "bridges", "Brücke", "Brücken", "f", BUILDING),
    _n("church", "churches", "Kirche", "Kirchen", "f", BUILDING),
    _n("banana", "bananas", "Banane", "Bananen", "f", FOOD),
    # neuter
    _n("child", "children", "Kind", "Kinder", "n", PERSON),
    _n("girl", "girls", "Mädchen", "Mädchen", "n", PERSON),
    _n("horse", "horses", "Pferd", "Pferde", "n", ANIMAL),
    _n("pig", "pigs", "Schwein", "Schweine", "n", ANIMAL),
    _n("book", "books", "Buch", "Bücher", "n", TEXT, OPENABLE),
    _n("house", "houses", "Haus", "Häuser", "n", BUILDING),
    _n("room", "rooms", "Zimmer", "Zimmer", "n", BUILDING),
    _n("car", "cars", "Auto", "Autos", "n", VEHICLE),
    _n("ship", "ships", "Schiff", "Schiffe", "n", VEHICLE),
    _n("bicycle", "bicycles", "Fahrrad", "Fahrräder", "n", VEHICLE),
    _n("window", "windows", "Fenster", "Fenster", "n", FURNITURE, OPENABLE),
    _n("bed", "beds", "Bett", "Betten", "n", FURNITURE),
    _n("picture", "pictures", "Bild", "Bilder", "n", PORTABLE),
    _n("knife", "knives", "Messer", "Messer", "n", PORTABLE),
    _n("glass", "glasses", "Glas", "Gläser", "n", PORTABLE),
    _n("gift", "gifts", "Geschenk", "Geschenke", "n", PORTABLE, OPENABLE),
    _n("egg", "eggs", "Ei", "Eier", "n", FOOD),
    _n("radio", "radios", "Radio", "Radios", "n", DEVICE),
    _n("phone", "phones", "Telefon", "Telefone", "n", DEVICE),
)


def _a(en: str, de_stem: str, tags: frozenset[str] = ANYTHING) -> Adjective:
    return Adjective(en, de_stem, tags)


ADJECTIVES: tuple[Adjective, ...] = (
    _a("big", "groß"),
    _a("small", "klein"),
    _a("old", "alt"),
    _a("new", "neu", ANYTHING - ANIMATE),
    _a("beautiful", "schön"),
    _a("red", "rot", ANYTHING - {PERSON}),
    _a("blue", "blau", ANYTHING - ANIMATE),
    _a("green", "grün", ANYTHING - ANIMATE),
    _a("white", "weiß", ANYTHING - {PERSON}),
    _a("black", "schwarz", ANYTHING - {PERSON}),
    _a("brown", "braun", ANYTHING - {PERSON}),
    _a("yellow", "gelb", ANYTHING - ANIMATE),
    _a("clean", "sauber"),
    _a("dirty", "schmutzig"),
    _a("famous", "berühmt", ANIMATE | {BUILDING, PLACE}),
    _a("young", "jung", ANIMATE),
    _a("happy", "glücklich", ANIMATE),
    _a("tired", "müde", ANIMATE),
    _a("hungry", "hungrig", ANIMATE),
    _a("friendly", "freundlich", ANIMATE),
    _a("quiet", "leise", ANIMATE | {DEVICE}),
    _a("loud", "laut", ANIMATE | {DEVICE}),
    _a("heavy", "schwer", ANYTHING - ANIMATE),
    _a("cheap", "billig", ANYTHING - ANIMATE),
    _a("strong", "stark", ANIMATE),
    _a("fast", "schnell", frozenset({ANIMAL, VEHICLE})),
)

_P = frozenset({PERSON})


def _v(forms: str, particle: str, de: str, subject: frozenset[str], objects: frozenset[str]) -> Verb:
    """Build a verb from two compact strings: ``"sees see saw seen"`` and ``"sieht sehen gesehen"``.

    ``particle`` is ``"en_particle/de_particle"`` (either side may be empty).
    """
    en_3sg, en_base, en_past, en_participle = forms.split()
    de_3sg, de_3pl, de_participle = de.split()
    en_particle, de_particle = particle.split("/")
    return Verb(en_3sg, en_base, en_past, en_participle, en_particle,
                de_3sg, de_3pl, de_participle, de_particle, subject, objects)  # fmt: skip


VERBS: tuple[Verb, ...] = (
    _v("sees see saw seen", "/", "sieht sehen gesehen", ANIMATE, ANYTHING),
    _v("finds find found found", "/", "findet finden gefunden", ANIMATE, ANYTHING),
    _v("likes like liked liked", "/", "mag mögen gemocht", ANIMATE, ANYTHING),
    _v("needs need needed needed", "/", "braucht brauchen gebraucht", ANIMATE, ANYTHING - ANIMATE - {PLACE}),
    _v("reads read read read", "/", "liest lesen gelesen", _P, frozenset({TEXT})),
    _v("buys buy bought bought", "/", "kauft kaufen gekauft", _P, ANYTHING - _P - {BUILDING, PLACE}),
    _v("sells sell sold sold", "/", "verkauft verkaufen verkauft", _P, ANYTHING - _P - {PLACE, PLANT}),
    _v("carries carry carried carried", "/", "trägt tragen getragen", ANIMATE, HANDHELD),
    _v("holds hold held held", "/", "hält halten gehalten", _P, HANDHELD | {ANIMAL}),
    _v("takes take took taken", "/", "nimmt nehmen genommen", ANIMATE, HANDHELD | {DEVICE}),
    _v("brings bring brought brought", "/", "bringt bringen gebracht", ANIMATE, HANDHELD),
    _v("eats eat ate eaten", "/", "isst essen gegessen", ANIMATE, frozenset({FOOD})),
    _v("washes wash washed washed", "/", "wäscht waschen gewaschen", _P,
       frozenset({ANIMAL, PORTABLE, VEHICLE, FURNITURE})),  # fmt: skip
    _v("paints paint painted painted", "/", "malt malen gemalt", _P, ANYTHING),
    _v("draws draw drew drawn", "/", "zeichnet zeichnen gezeichnet", _P, ANYTHING),
    _v("opens open opened opened", "/", "öffnet öffnen geöffnet", _P, frozenset({OPENABLE})),
    _v("visits visit visited visited", "/", "besucht besuchen besucht", _P, frozenset({PERSON, BUILDING, PLACE})),
    _v("loves love loved loved", "/", "liebt lieben geliebt", ANIMATE, frozenset({PERSON, ANIMAL, PLACE})),
    _v("knows know knew known", "/", "kennt kennen gekannt", ANIMATE, frozenset({PERSON, ANIMAL, PLACE})),
    _v("hears hear heard heard", "/", "hört hören gehört", ANIMATE, frozenset({PERSON, ANIMAL, DEVICE})),
    _v("builds build built built", "/", "baut bauen gebaut", _P, frozenset({BUILDING, FURNITURE, VEHICLE})),
    _v("catches catch caught caught", "/", "fängt fangen gefangen", ANIMATE, frozenset({ANIMAL})),
    # a phrasal English verb that is one German word
    _v("looks look looked looked", "for/", "sucht suchen gesucht", ANIMATE, ANYTHING),
    # German separable verbs: the prefix goes to the end of a main clause
    _v("calls call called called", "/an", "ruft rufen angerufen", _P, _P),
    _v("invites invite invited invited", "/ein", "lädt laden eingeladen", _P, _P),
    _v("picks pick picked picked", "up/auf", "hebt heben aufgehoben", ANIMATE, HANDHELD),
    _v("switches switch switched switched", "off/aus", "schaltet schalten ausgeschaltet", _P,
       frozenset({DEVICE})),  # fmt: skip
    _v("returns return returned returned", "/zurück", "bringt bringen zurückgebracht", _P, HANDHELD),
)

# Verbs that take a "that" clause instead of an object.
CLAUSE_VERBS: tuple[Verb, ...] = (
    _v("thinks think thought thought", "/", "denkt denken gedacht", _P, frozenset()),
    _v("knows know knew known", "/", "weiß wissen gewusst", _P, frozenset()),
    _v("says say said said", "/", "sagt sagen gesagt", _P, frozenset()),
    _v("believes believe believed believed", "/", "glaubt glauben geglaubt", _P, frozenset()),
    _v("hopes hope hoped hoped", "/", "hofft hoffen gehofft", _P, frozenset()),
)

PRESENT, PERFECT, PAST = "present", "perfect", "past"
TENSES = (PRESENT, PERFECT, PAST)

# English "has/have" and German "hat/haben" by subject number (singular, plural).
EN_HAVE = ("has", "have")
DE_HAVE = ("hat", "haben")

ADVERBS: tuple[Adverb, ...] = (
    Adverb("today", "heute", frozenset(TENSES)),
    Adverb("here", "hier", frozenset(TENSES)),
    Adverb("there", "dort", frozenset(TENSES)),
    Adverb("now", "jetzt", frozenset({PRESENT, PERFECT})),
    Adverb("sometimes", "manchmal", frozenset({PRESENT, PAST})),
    Adverb("often", "oft", frozenset({PRESENT, PAST})),
    Adverb("tomorrow", "morgen", frozenset({PRESENT})),
    Adverb("yesterday", "gestern", frozenset({PAST})),
)

PREPOSITIONS: tuple[Preposition, ...] = (
    Preposition("with", "mit", "dat", ANIMATE | {PORTABLE, DEVICE}),
    Preposition("behind", "hinter", "dat", frozenset({BUILDING, FURNITURE, VEHICLE, PLANT})),
    Preposition("for", "für", "acc", ANIMATE,
                frozenset({"buy", "bring", "paint", "draw", "build", "open", "wash", "hold", "carry", "take"})),
    Preposition("without", "ohne", "acc", ANIMATE | {PORTABLE}),
)

# Subordinating conjunctions: the German clause they open is verb-final.
SUBORDINATORS = {"because": "weil", "although": "obwohl"}
COMPLEMENTIZER = ("that", "dass")

# German definite and indefinite articles by case, then gender ("pl" for the plural).
DEFINITE = {
    "nom": {"m": "der", "f": "die", "n": "das", "pl": "die"},
    "acc": {"m": "den", "f": "die", "n": "das", "pl": "die"},
    "dat": {"m": "dem", "f": "der", "n": "dem", "pl": "den"},
}
INDEFINITE = {
    "nom": {"m": "ein", "f": "eine", "n": "ein"},
    "acc": {"m": "einen", "f": "eine", "n": "ein"},
    "dat": {"m": "einem", "f": "einer", "n": "einem"},
}
# Adjective endings after a definite article ("weak") and after ein ("mixed").
WEAK_ENDING = {
    "nom": {"m": "e", "f": "e", "n": "e", "pl": "en"},
    "acc": {"m": "en", "f": "e", "n": "e", "pl": "en"},
    "dat": {"m": "en", "f": "en", "n": "en", "pl": "en"},
}
MIXED_ENDING = {
    "nom": {"m": "er", "f": "e", "n": "es"},
    "acc": {"m": "en", "f": "e", "n": "es"},
    "dat": {"m": "en", "f": "en", "n": "en"},
}
