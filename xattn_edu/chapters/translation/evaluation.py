"""Honest evaluation: choose on the validation split, then score the test split once.

* :func:`score_pairs` decodes sentence pairs with the model in memory and scores them the way the
  package's ``xattn evaluate`` does (sacreBLEU with its signature, chrF, lowercased tokenized BLEU,
  exact match), for choices such as greedy against beam search, made on the validation split.
* :class:`TestSplit` scores the saved checkpoint on the test split with the package's
  :func:`~xattn_edu.translate.evaluate.evaluate`, and refuses a second look: a test score read twice
  is a test score tuned on.

Every call into :mod:`xattn_edu.translate` for scoring sits in this module.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from xattn_edu.chapters.translation.data import ChapterRun
from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate.checkpoint import LoadedModel
from xattn_edu.translate.config import RunConfig
from xattn_edu.translate.evaluate import EvaluationReport, evaluate
from xattn_edu.translate.metrics import choose_bleu_tokenizer, chrf, exact_match, sacre_bleu, tokenized_bleu
from xattn_edu.translate.translator import decode_lines, encode_line


@dataclass(frozen=True)
class Scores:
    """Translation quality of one decoding setting on one set of pairs."""

    beam_size: int  # 1 = greedy
    sentences: int  # pairs scored
    sacrebleu: float  # sacreBLEU on the written (detokenized, cased) text, 0-100
    sacrebleu_signature: str  # how it was computed
    chrf: float  # sacreBLEU's chrF2, 0-100
    bleu_tok: float  # lowercased tokenized BLEU (the figure tutorials report), 0-100
    exact_match: float  # percent of outputs equal to the reference
    seconds: float  # wall time of the decoding


def score_pairs(model: Seq2Seq, src_tok, tgt_tok, config: RunConfig, pairs: Sequence[tuple[str, str]], *,
                beam_size: int = 1) -> Scores:  # fmt: skip
    """Decode the sources of ``pairs`` (greedy or beam) and score them against the targets."""
    loaded = LoadedModel(model.eval(), src_tok, tgt_tok, config, step=0)
    encoded = [encode_line(loaded, source) for source, _ in pairs]
    start = time.perf_counter()
    outputs = ["" if text is None else text for text in decode_lines(loaded, encoded, beam_size=beam_size)]
    seconds = time.perf_counter() - start
    references = [tgt_tok.form.detokenize(target) for _, target in pairs]
    tokenizer = choose_bleu_tokenizer(references, language=config.data.target_language).name
    sacre = sacre_bleu(outputs, references, tokenizer)
    return Scores(beam_size, len(pairs), sacre.score, sacre.signature, chrf(outputs, references).score,
                  tokenized_bleu(outputs, references, tokenizer).score, exact_match(outputs, references), seconds)


class TestSplit:
    """The run's test split (synthetic: its own; Multi30k: the chosen published test set), scored once."""

    def __init__(self, run: ChapterRun, out_dir: str | Path) -> None:
        self.run, self.out_dir = run, Path(out_dir)
        self.used = False

    def score(self, beam_size: int) -> EvaluationReport:
        """Decode and score the test split with the checkpoint in ``out_dir``; the second call raises.

        Raises:
            RuntimeError: when the test split was scored already in this session.
        """
        if self.used:
            raise RuntimeError("the test split was scored once already; choose settings on the validation split")
        self.used = True
        split = "test" if self.run.source == "synthetic" else self.run.test_set
        report, _ = evaluate(self.out_dir, split=split, beam_size=beam_size)
        return report
