"""Parallel data for the translation chapters.

* :mod:`~xattn_edu.translate.data.synthetic` — the offline default: a grammar-generated English→German
  corpus with gold word alignments (word tables in :mod:`~xattn_edu.translate.data.lexicon`).
* :mod:`~xattn_edu.translate.data.multi30k` — the Multi30k German→English benchmark, downloaded and verified
  (resumable download in :mod:`~xattn_edu.translate.data.download`).
* :mod:`~xattn_edu.translate.data.parallel_text` — your own parallel files (two aligned files or a TSV);
  Multi30k is read with the same functions.
"""
