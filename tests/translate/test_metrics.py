"""Metrics on hand-made examples whose answers are worked out by hand."""

import math

import pytest
import sacrebleu
import torch

from xattn_edu.common.errors import UserError
from xattn_edu.translate import metrics
from xattn_edu.translate.metrics import (
    BLEU_TOKENIZERS,
    BleuTokenizer,
    alignment_error_rate,
    attention_aer,
    attention_links,
    choose_bleu_tokenizer,
    chrf,
    exact_match,
    looks_unspaced,
    sacre_bleu,
    tokenized_bleu,
)


def test_bleu_of_identical_text_is_100_with_signatures():
    text = ["The cat sat on the mat.", "A dog runs in the park."]
    sacre, tok = sacre_bleu(text, text), tokenized_bleu(text, text)
    assert sacre.score == pytest.approx(100.0) and tok.score == pytest.approx(100.0)
    assert "case:mixed" in sacre.signature and "tok:13a" in sacre.signature
    assert "case:lc" in tok.signature and "tok:13a" in tok.signature


def test_bleu_by_hand():
    # 10 tokens, the last one wrong: n-gram precisions 9/10, 8/9, 7/8, 6/7; no brevity penalty.
    reference = "a b c d e f g h i j"
    hypothesis = "a b c d e f g h i x"
    expected = 100 * (9 / 10 * 8 / 9 * 7 / 8 * 6 / 7) ** 0.25
    assert tokenized_bleu([hypothesis], [reference]).score == pytest.approx(expected)
    # One token short: precisions 9/9, 8/8, 7/7, 6/6 and brevity penalty exp(1 - 10/9).
    assert tokenized_bleu([reference[:-2]], [reference]).score == pytest.approx(100 * math.exp(1 - 10 / 9))


def test_tokenized_bleu_ignores_case_and_splits_punctuation():
    hypothesis, reference = ["A man rides a horse."], ["a man rides a horse ."]
    assert tokenized_bleu(hypothesis, reference).score == pytest.approx(100.0)
    assert sacre_bleu(hypothesis, reference).score < 100.0  # case counts for sacreBLEU


def test_bleu_rejects_mismatched_lists():
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        sacre_bleu(["a", "b"], ["a"])
    with pytest.raises(ValueError, match="at least one"):
        tokenized_bleu([], [])


def test_exact_match():
    hypotheses = ["der hund  schläft .", "die katze", "Das Haus", "x"]
    references = ["der hund schläft .", "die katze .", "das haus", "x"]
    assert exact_match(hypotheses, references) == pytest.approx(50.0)


def test_attention_links_take_the_argmax_source_per_target():
    weights = torch.tensor([[0.1, 0.7, 0.2], [0.6, 0.3, 0.1]])  # (Tt=2, Ts=3)
    assert attention_links(weights) == {(1, 0), (0, 1)}
    with pytest.raises(ValueError, match="Tt, Ts"):
        attention_links(torch.ones(2, 2, 2))


def test_aer_by_hand():
    sure = [{(0, 0), (1, 1), (2, 2), (1, 2)}]
    predicted = [{(0, 0), (1, 1), (0, 2)}]
    assert alignment_error_rate(predicted, sure) == pytest.approx(1 - 2 * 2 / (3 + 4))
    # (0, 2) is a possible link: it now counts in |A ∩ P| but not in |A ∩ S|.
    assert alignment_error_rate(predicted, sure, [{(0, 2)}]) == pytest.approx(1 - (2 + 3) / (3 + 4))
    assert alignment_error_rate([{(0, 0)}], [{(0, 0)}]) == 0.0
    assert alignment_error_rate([{(1, 0)}], [{(0, 0)}]) == 1.0
    with pytest.raises(ValueError, match="undefined"):
        alignment_error_rate([set()], [set()])


def test_attention_aer_per_head_layer_and_average():
    n = 4
    diagonal, anti = torch.eye(n), torch.eye(n).flip(1)
    # Layer 0: head 0 attends along the diagonal, head 1 along the anti-diagonal.
    # Layer 1: both heads diagonal but soft (0.4 on the diagonal, 0.2 elsewhere).
    soft = torch.full((n, n), 0.2) + 0.2 * torch.eye(n)
    attention = torch.stack([torch.stack([diagonal, anti]), torch.stack([soft, soft])])  # (L=2, h=2, 4, 4)
    gold = [(i, i) for i in range(n)]
    result = attention_aer([attention, attention], [gold, gold])
    assert result.per_head == [[0.0, 1.0], [0.0, 0.0]]
    # Layer 0 averaged: the diagonal and anti-diagonal tie at 0.5 in every row; argmax takes the lower index.
    # Rows 0, 1 pick sources 0, 1 (right); rows 2, 3 pick sources 1, 0 (wrong): AER = 1 - 2*2/(4+4).
    assert result.per_layer == pytest.approx([0.5, 0.0])
    assert result.average == pytest.approx(0.0)  # layer 1's diagonal breaks the tie everywhere
    assert result.best_head() == (0, 0, 0.0)


def test_attention_aer_checks_inputs():
    with pytest.raises(ValueError, match="L, h, Tt, Ts"):
        attention_aer([torch.ones(3, 3)], [[(0, 0)]])
    with pytest.raises(ValueError, match="gold"):
        attention_aer([torch.ones(1, 1, 2, 2)], [])


# --- BLEU on languages written without spaces (issue 12, fault 4) -----------------------------

JAPANESE = [
    "私は猫が好きです。", "今日は雨が降っています。", "駅はどこですか。", "彼は本を読んでいる。",
    "母は台所で料理をしている。", "明日は学校に行きます。", "この店のパンはおいしい。",
    "子供たちが公園で遊んでいる。", "電車が遅れています。", "窓を開けてください。",
]  # fmt: skip


def test_a_perfect_japanese_translation_scores_100_with_the_tokenizer_the_language_calls_for():
    """Regression: with the 13a tokenizer every unspaced sentence is one word, and 10 perfect sentences score 0."""
    assert sacre_bleu(JAPANESE, JAPANESE).score == 0.0  # what the old scorer gave
    chosen = choose_bleu_tokenizer(JAPANESE, language="ja")
    assert chosen.name in ("ja-mecab", "char")
    for score in (sacre_bleu(JAPANESE, JAPANESE, chosen.name), tokenized_bleu(JAPANESE, JAPANESE, chosen.name)):
        assert score.score == pytest.approx(100.0) and f"tok:{chosen.name}" in score.signature
    assert chrf(JAPANESE, JAPANESE).score == pytest.approx(100.0)
    wrong = [*JAPANESE[:-1], "窓を閉めてください。"]
    assert 0 < sacre_bleu(wrong, JAPANESE, chosen.name).score < 100 and 0 < chrf(wrong, JAPANESE).score < 100


def test_looks_unspaced():
    assert looks_unspaced(JAPANESE) and looks_unspaced(["我爱我的猫。"]) and looks_unspaced(["ฉันรักแมวของฉัน"])
    assert not looks_unspaced(["Der Hund sieht den Mann.", "안녕하세요 반갑습니다"])  # Korean writes spaces
    assert not looks_unspaced(["", "123 ..."])


@pytest.mark.parametrize(
    ("references", "language", "name", "warns"),
    [
        (["Der Hund sieht den Mann."], "de", "13a", False),
        (["Der Hund sieht den Mann."], None, "13a", False),
        (["我爱我的猫。"], "zh", "zh", False),
        (["我爱我的猫。"], "zh-Hans", "zh", False),
        (["我爱我的猫。"], None, "zh", True),  # picked from the script: say so
        (["ฉันรักแมวของฉัน"], "th", "char", False),
        (JAPANESE, "en", "char", True),  # the language says spaced, the text is not
    ],
)
def test_choose_bleu_tokenizer_rule(references, language, name, warns):
    chosen = choose_bleu_tokenizer(references, language=language)
    assert chosen.name == name and bool(chosen.warnings) == warns, chosen


def test_japanese_uses_mecab_when_installed_and_char_with_a_warning_when_not(monkeypatch):
    monkeypatch.setattr(metrics, "_installed", lambda name: True)
    assert choose_bleu_tokenizer(JAPANESE, language="ja") == BleuTokenizer("ja-mecab")
    monkeypatch.setattr(metrics, "_installed", lambda name: name not in ("ja-mecab", "ko-mecab"))
    chosen = choose_bleu_tokenizer(JAPANESE, language="ja")
    assert chosen.name == "char" and "sacrebleu[ja]" in chosen.warnings[0]
    with pytest.raises(UserError, match=r"sacrebleu\[ja\]"):
        choose_bleu_tokenizer(JAPANESE, override="ja-mecab")


def test_an_override_wins_and_a_space_based_one_on_unspaced_text_warns():
    assert choose_bleu_tokenizer(["Der Hund."], language="de", override="char") == BleuTokenizer("char")
    chosen = choose_bleu_tokenizer(JAPANESE, language="ja", override="13a")
    assert chosen.name == "13a" and "--bleu-tokenize char" in chosen.warnings[0]
    with pytest.raises(UserError, match="unknown BLEU tokenizer 'spm'"):
        choose_bleu_tokenizer(JAPANESE, override="spm")
    assert set(BLEU_TOKENIZERS) <= set(sacrebleu.metrics.bleu._TOKENIZERS)
