"""Small, seeded models that Chapter 6's exercises, demos and tests share.

Exercise cases build their layers and translators here, and a demo cell can build the same untrained
translator without touching the grading module (which student cells may only call).
"""

from __future__ import annotations

import torch

from xattn_edu.nn.model import DecoderLayer, EncoderLayer, Seq2Seq, Seq2SeqConfig

PAD, BOS, EOS = 0, 1, 2
"""Special token ids of the tiny vocabularies."""


def tiny_config(*, d_model: int = 8, n_heads: int = 2, layers: int = 1, src_vocab: int = 11, tgt_vocab: int = 13,
                max_len: int = 24) -> Seq2SeqConfig:  # fmt: skip
    """A small pre-norm ``Seq2SeqConfig`` without dropout, for exercise cases and tests."""
    return Seq2SeqConfig(src_vocab, tgt_vocab, d_model=d_model, n_heads=n_heads, n_encoder_layers=layers,
                         n_decoder_layers=layers, d_ff=2 * d_model, dropout=0.0, max_len=max_len, tie_output=False)


def _random_norms(module: torch.nn.Module, generator: torch.Generator) -> None:
    """Give every LayerNorm a random gain and shift, so that using the wrong norm changes the numbers."""
    for norm in (m for m in module.modules() if isinstance(m, torch.nn.LayerNorm)):
        norm.weight.copy_(1.0 + 0.3 * torch.randn(norm.weight.shape, generator=generator))
        norm.bias.copy_(0.2 * torch.randn(norm.bias.shape, generator=generator))


@torch.no_grad()
def tiny_layer(kind: str, seed: int, d_model: int = 8, n_heads: int = 2) -> EncoderLayer | DecoderLayer:
    """A float64 ``EncoderLayer`` ("encoder") or ``DecoderLayer`` ("decoder") in eval mode, weights from ``seed``."""
    cfg = tiny_config(d_model=d_model, n_heads=n_heads)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = (EncoderLayer if kind == "encoder" else DecoderLayer)(cfg)
    _random_norms(layer, torch.Generator().manual_seed(seed))
    return layer.double().eval()


@torch.no_grad()
def tiny_translator(seed: int, *, layers: int = 2, eos_level: float = 0.7) -> Seq2Seq:
    """An untrained float64 ``Seq2Seq`` that writes sentences of varied lengths and never PAD or BOS.

    The output projection reads one coordinate of the final norm that is a constant 1: PAD and BOS get
    -50 there (never chosen), EOS gets ``eos_level`` (how soon sentences end).
    """
    cfg = tiny_config(d_model=16, layers=layers)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Seq2Seq(cfg)
    model.decoder_norm.weight[0], model.decoder_norm.bias[0] = 0.0, 1.0
    model.generator.weight[:, 0] = 0.0
    model.generator.weight[PAD, 0] = model.generator.weight[BOS, 0] = -50.0
    model.generator.weight[EOS, 0] = eos_level
    return model.double().eval()
