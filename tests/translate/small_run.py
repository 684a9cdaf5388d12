"""A small untrained run saved exactly as training saves one, for tests of evaluate, translate and the CLI."""

from __future__ import annotations

from pathlib import Path

import torch

from xattn_edu.nn.model import Seq2Seq
from xattn_edu.translate import checkpoint
from xattn_edu.translate.config import DataConfig, RunConfig, TokenizerConfig, model_config
from xattn_edu.translate.corpus import fit_tokenizers, load_splits

TRAIN_CFG = RunConfig(
    preset="test", data=DataConfig(source="synthetic", n_train=300, n_val=20, n_test=25),
    tokenizer=TokenizerConfig(kind="word"),
    model=model_config(d_model=32, n_heads=4, n_encoder_layers=2, n_decoder_layers=2, d_ff=64, dropout=0.0,
                       max_len=40),
)  # fmt: skip


def save_untrained_run(directory: Path, cfg: RunConfig = TRAIN_CFG, pairs: list[tuple[str, str]] | None = None) -> Path:
    """Fit tokenizers on ``pairs`` (default: the config's training split) and save an untrained model (seed 0)."""
    directory.mkdir(parents=True, exist_ok=True)
    src_tok, tgt_tok = fit_tokenizers(cfg.tokenizer, pairs if pairs is not None else load_splits(cfg.data).train)
    torch.manual_seed(0)
    cfg = cfg.with_vocabularies(src_tok.vocab_size, tgt_tok.vocab_size, tgt_tok.pad_id)
    checkpoint.save(directory, checkpoint.Checkpoint(cfg, Seq2Seq(cfg.model).state_dict(), src_tok, tgt_tok, step=0))
    return directory
