"""Parallel data for the translation chapters.

* :mod:`~xattn_edu.data.synthetic` — the offline default: a grammar-generated English→German
  corpus with gold word alignments (word tables in :mod:`~xattn_edu.data.lexicon`).
* :mod:`~xattn_edu.data.multi30k` — the Multi30k German→English benchmark, downloaded and verified
  (resumable download in :mod:`~xattn_edu.data.download`).
* :mod:`~xattn_edu.data.parallel_text` — your own parallel files (two aligned files or a TSV);
  Multi30k is read with the same functions.
"""
