"""Chapter 6 references against the package and torch: layers, the whole model, loss, decoding, AER."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xattn_edu.chapters.translation import assembly, checks, reference, tiny
from xattn_edu.nn.masks import causal_mask, decoder_self_mask, padding_mask
from xattn_edu.translate.decode import greedy_search
from xattn_edu.translate.metrics import alignment_error_rate, attention_links


@pytest.mark.parametrize("seed", range(4))
def test_the_layers_equal_the_package_layers(seed):
    g = torch.Generator().manual_seed(seed)
    encoder, decoder = checks.tiny_layer("encoder", seed), checks.tiny_layer("decoder", seed + 100)
    x, memory = torch.randn(3, 5, 8, generator=g, dtype=torch.float64), torch.randn(3, 6, 8, generator=g,
                                                                                     dtype=torch.float64)
    mask = padding_mask(lengths=torch.tensor([6, 2, 4]), max_len=6)
    source_mask = padding_mask(lengths=torch.tensor([5, 3, 1]), max_len=5)
    with torch.no_grad():
        torch.testing.assert_close(reference.encoder_layer(encoder, x, source_mask, assembly.package_attention),
                                   encoder(x, source_mask))
        ours = reference.decoder_layer(decoder, x, memory, causal_mask(5), mask, assembly.package_attention)
        torch.testing.assert_close(ours, decoder(x, memory, causal_mask(5), mask)[0])


def test_the_assembled_model_equals_the_package_model_and_refuses_what_it_cannot_assemble():
    model = tiny.tiny_translator(3, layers=2)
    src = torch.tensor([[5, 6, 7, 2], [8, 2, 0, 0]])
    tgt_in = torch.tensor([[1, 4, 5, 6, 7], [1, 9, 0, 0, 0]])
    with torch.no_grad():
        assembled = assembly.assembled_logits(model, src, tgt_in, encoder_layer=reference.encoder_layer,
                                              decoder_layer=reference.decoder_layer)
        torch.testing.assert_close(assembled, model(src, tgt_in))
        wrong = assembly.assembled_logits(model, src, tgt_in, encoder_layer=reference.encoder_layer,
                                          decoder_layer=lambda layer, x, *rest: x)
    assert not torch.allclose(wrong, assembled)
    with pytest.raises(ValueError, match="eval"):
        assembly.assembled_logits(model.train(), src, tgt_in, encoder_layer=reference.encoder_layer,
                                  decoder_layer=reference.decoder_layer)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_the_loss_is_torch_cross_entropy_over_the_real_tokens(smoothing):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(3, 6, 9, generator=g, dtype=torch.float64, requires_grad=True)
    targets = torch.randint(1, 9, (3, 6), generator=g)
    targets[1, 3:] = targets[2, 1:] = 0
    ours = reference.translation_loss(logits, targets, 0, smoothing)
    theirs = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=0, label_smoothing=smoothing)
    torch.testing.assert_close(ours, theirs)
    grad_ours, = torch.autograd.grad(ours, logits)
    grad_theirs, = torch.autograd.grad(theirs, logits)
    torch.testing.assert_close(grad_ours, grad_theirs)


@pytest.mark.parametrize("seed", range(6))
def test_cached_greedy_decoding_equals_uncached_and_the_package_greedy_search(seed):
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(4, 11, (5, 7), generator=g)
    src[1, 4:] = src[3, 2:] = 0
    model = checks.varied_translator(seed, src, 9, layers=1 + seed % 3)
    cached = reference.greedy_decode(model, src, 1, 2, 9)
    assert cached == reference.greedy_decode_uncached(model, src, 1, 2, 9)
    assert any(len(row) < 9 for row in cached) and any(len(row) == 9 for row in cached)
    assert all(len(row) <= 9 for row in cached)
    # The package's loop allows source length + 10 tokens and forces EOS at its limit; the sentences that
    # end before either limit must agree token for token.
    package = [t.tokens for t in greedy_search(model, src, bos_id=1, eos_id=2)]
    short = [(a, b) for a, b in zip(cached, package, strict=True) if len(a) < 9 and len(b) < 9]
    assert short and all(a == b for a, b in short)


def test_aer_equals_the_package_metric_and_the_worked_example():
    rng = np.random.default_rng(0)
    attentions = [rng.random((t, s)) for t, s in ((3, 4), (5, 2), (1, 1))]
    gold = [[(0, 0), (1, 1), (3, 2)], [(1, 0), (0, 4), (1, 4)], [(0, 0)]]
    package = alignment_error_rate([attention_links(torch.tensor(a)) for a in attentions], gold)
    assert reference.alignment_error_rate(attentions, gold) == pytest.approx(package)
    # By hand: argmax links (0,0), (2,1), (1,2), (0,3); gold (0,0), (1,0), (0,1), (1,2), (0,3): 3 hits, 4 + 5 links.
    assert reference.alignment_error_rate([checks.EXAMPLE_ATTENTION], [checks.EXAMPLE_GOLD]) == pytest.approx(1 - 6 / 9)
    assert reference.alignment_error_rate([np.eye(3)], [[(0, 0), (1, 1), (2, 2)]]) == 0.0
    assert reference.alignment_error_rate([np.eye(3)], [[(1, 0), (2, 1), (0, 2)]]) == 1.0


def test_decoder_self_mask_cases_hide_the_future_and_the_padding():
    case = checks.DECODER_MASKS.visible()[0]
    self_mask = case.args[3]
    assert self_mask.shape == (3, 1, 5, 5)
    assert not self_mask[0, 0, 0, 1] and self_mask[0, 0, 4, 0]  # causal
    assert not self_mask[1, 0, 4, 3] and self_mask[1, 0, 4, 2]  # target length 3: position 3 is padding
    assert torch.equal(self_mask, decoder_self_mask(torch.tensor([[5] * 5, [5] * 3 + [0] * 2, [5] * 4 + [0]]), 0))
