"""The written form of a corpus side: inferred from the training text, applied to what users type."""

import unicodedata

import pytest

from xattn_edu.translate.data.synthetic import generate
from xattn_edu.translate.textform import TextForm

PAIRS = generate(300, seed=3)
ENGLISH = [p.src_text for p in PAIRS]
GERMAN = [p.tgt_text for p in PAIRS]


def test_the_synthetic_sides_are_inferred_as_written():
    assert TextForm.infer(ENGLISH) == TextForm(nfc=True, lowercase=True, split_punctuation=True)
    assert TextForm.infer(GERMAN) == TextForm(nfc=True, lowercase=False, split_punctuation=True)


@pytest.mark.parametrize("side", [ENGLISH, GERMAN])
def test_normalising_the_training_text_changes_nothing(side):
    form = TextForm.infer(side)
    assert [form.normalize(s) for s in side] == side


@pytest.mark.parametrize(
    "typed",
    ["the dog sees the man.", "THE DOG SEES THE MAN .", "  The dog  sees the man .", "The dog sees the man ."],
)
def test_what_users_type_is_brought_into_the_training_form(typed):
    form = TextForm.infer(ENGLISH)
    assert form.normalize(typed) == "the dog sees the man ."


def test_punctuation_runs_are_split_off_whole_and_commas_too():
    form = TextForm(split_punctuation=True)
    assert form.normalize("because the man sees it,the dog runs...") == "because the man sees it , the dog runs ..."
    assert form.normalize("(a) «b»") == "( a ) « b »"


def test_nfc_composes_typed_umlauts_when_the_data_is_composed():
    decomposed = unicodedata.normalize("NFD", "Die Tür .")
    assert decomposed != "Die Tür ."
    assert TextForm.infer(GERMAN).normalize(decomposed) == "Die Tür ."


def test_a_fact_false_for_one_sentence_is_false():
    assert not TextForm.infer(["the dog .", "The cat ."]).lowercase
    assert not TextForm.infer(["the dog .", "the cat."]).split_punctuation
    assert not TextForm.infer(["don't"]).split_punctuation  # an apostrophe inside a word
    assert not TextForm.infer(["no punctuation at all"]).split_punctuation  # nothing to go by
    assert TextForm.infer(["ok ."]).split_punctuation


def test_the_identity_form_changes_nothing():
    text = "The Dog sees  the man."
    assert TextForm().normalize(text) == text and TextForm().detokenize(text) == text


def test_detokenize_writes_the_german_as_people_write_it():
    form = TextForm.infer(GERMAN)
    assert form.detokenize("Heute sieht der Mann den Hund .") == "Heute sieht der Mann den Hund."
    assert form.detokenize("Der Mann sieht , dass die Frau liest .") == "Der Mann sieht, dass die Frau liest."
    assert form.detokenize("er sagt ( leise ) ja ?") == "er sagt (leise) ja?"
    # and normalising the written text gives the training form back
    assert all(form.normalize(form.detokenize(s)) == s for s in GERMAN)


def test_round_trip_through_a_dict():
    form = TextForm(nfc=True, lowercase=False, split_punctuation=True)
    assert TextForm.from_dict(form.to_dict()) == form
