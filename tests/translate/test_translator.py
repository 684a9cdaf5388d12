"""translate_lines: one result per input line, input read like the training data, output as written."""

import pytest

from tests.translate.small_run import save_untrained_run
from xattn_edu.common.errors import UserError
from xattn_edu.translate import translator
from xattn_edu.translate.checkpoint import load_model
from xattn_edu.translate.decode import Translation
from xattn_edu.translate.translator import encode_line, translate_lines

LONG = " ".join(["the dog sees the man"] * 49) + " ."  # 246 tokens: more than the model's 40 positions


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
    return load_model(save_untrained_run(tmp_path_factory.mktemp("run")))


def test_one_result_per_line_blank_lines_stay_and_a_bad_line_costs_only_itself(loaded):
    """Regression (faults 5 and 7): blank lines were dropped; one long sentence stopped every other one."""
    lines = ["the man sees the dog .", "", LONG, "   ", "today the woman reads a book ."]
    results = translate_lines(loaded, lines)
    assert len(results) == len(lines)
    assert [r.text for r in results][1:4] == ["", None, ""]
    assert results[2].error == "247 tokens (with <eos>), more than the model's maximum of 40"
    alone = [translate_lines(loaded, [line])[0].text for line in (lines[0], lines[4])]
    assert [results[0].text, results[4].text] == alone  # the bad line changed nothing for the others
    assert all(r.error is None for i, r in enumerate(results) if i != 2)


@pytest.mark.parametrize("typed", ["the dog sees the man.", "THE DOG SEES THE MAN .", "The dog sees the man."])
def test_typed_variants_reach_the_model_as_the_training_form(loaded, typed):
    """Regression (fault 6): these were encoded with unknown tokens and translated into garbage."""
    canonical = encode_line(loaded, "the dog sees the man .")
    assert encode_line(loaded, typed) == canonical and canonical.unknown == ()
    assert translate_lines(loaded, [typed])[0].text == translate_lines(loaded, ["the dog sees the man ."])[0].text


def test_unknown_words_are_named(loaded):
    (result,) = translate_lines(loaded, ["the zebra sees the xylophone ."])
    assert result.unknown == ("zebra", "xylophone") and result.text is not None


def test_the_output_is_detokenized(loaded, monkeypatch):
    german = loaded.tgt_tokenizer.encode("Der Hund sieht den Mann .")
    monkeypatch.setattr(translator, "translate_ids", lambda model, src, **_: [Translation(german, 0.0)] * len(src))
    assert [r.text for r in translate_lines(loaded, ["the dog sees the man.", ""])] == ["Der Hund sieht den Mann.", ""]


def test_beam_must_be_positive(loaded):
    with pytest.raises(UserError, match="--beam"):
        translate_lines(loaded, ["a dog ."], beam_size=0)
