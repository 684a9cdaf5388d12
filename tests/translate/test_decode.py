"""Greedy and beam search: cached == uncached, batch == one by one, k=1 == greedy, beam == exhaustive search."""

import itertools

import pytest
import torch

from xattn_edu.nn.model import Seq2Seq, Seq2SeqConfig
from xattn_edu.translate.batching import pad_batch
from xattn_edu.translate.decode import (
    beam_search,
    cross_attention,
    generate,
    greedy_search,
    length_limits,
    length_penalty,
    translate_ids,
)

PAD, BOS, EOS = 0, 1, 2
CFG = Seq2SeqConfig(src_vocab=30, tgt_vocab=30, d_model=32, n_heads=4, d_ff=64, n_encoder_layers=2,
                    n_decoder_layers=2, dropout=0.0, max_len=24)  # fmt: skip
TRAIN_CFG = Seq2SeqConfig(**{**CFG.to_dict(), "src_vocab": 12, "tgt_vocab": 12})


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    return Seq2Seq(CFG).eval()


def _copy_batch(generator: torch.Generator, n: int) -> tuple[list[list[int]], list[list[int]]]:
    """Sources (tokens + EOS) and targets (the tokens reversed) of a toy translation task."""
    sources, targets = [], []
    for _ in range(n):
        length = int(torch.randint(2, 8, (1,), generator=generator))
        tokens = torch.randint(4, TRAIN_CFG.src_vocab, (length,), generator=generator).tolist()
        sources.append([*tokens, EOS])
        targets.append(tokens[::-1])
    return sources, targets


@pytest.fixture(scope="module")
def trained_model():
    """A model trained for a few seconds to reverse its input: it stops by emitting EOS itself."""
    torch.manual_seed(1)
    model = Seq2Seq(TRAIN_CFG)
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(60):
        sources, targets = _copy_batch(generator, 64)
        tgt = pad_batch([[BOS, *t, EOS] for t in targets], PAD)
        logits = model(pad_batch(sources, PAD), tgt[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tgt[:, 1:].flatten(), ignore_index=PAD)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _sources() -> torch.Tensor:
    """A padded batch of sources of different lengths (ending in EOS)."""
    sources, _ = _copy_batch(torch.Generator().manual_seed(5), 7)
    return pad_batch(sources, PAD)


def _tokens(results) -> list[list[int]]:
    return [r.tokens for r in results]


@pytest.mark.parametrize("beam_size", [1, 3])
@pytest.mark.parametrize("which", ["random_model", "trained_model"])
def test_cached_equals_uncached(request, which, beam_size):
    model = request.getfixturevalue(which)
    src = _sources()
    cached = generate(model, src, bos_id=BOS, eos_id=EOS, beam_size=beam_size)
    uncached = generate(model, src, bos_id=BOS, eos_id=EOS, beam_size=beam_size, use_cache=False)
    assert _tokens(cached) == _tokens(uncached)
    for a, b in zip(cached, uncached, strict=True):
        assert a.log_prob == pytest.approx(b.log_prob, abs=1e-4)


@pytest.mark.parametrize("which", ["random_model", "trained_model"])
def test_beam_of_one_is_greedy(request, which):
    model = request.getfixturevalue(which)
    src = _sources()
    greedy = generate(model, src, bos_id=BOS, eos_id=EOS)
    beam = generate(model, src, bos_id=BOS, eos_id=EOS, beam_size=1)
    beam_direct = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=1)
    assert _tokens(greedy) == _tokens(beam) == _tokens(beam_direct)
    assert [r.log_prob for r in beam_direct] == pytest.approx([r.log_prob for r in greedy], abs=1e-5)


@pytest.mark.parametrize("beam_size", [1, 4])
@pytest.mark.parametrize("which", ["random_model", "trained_model"])
def test_batch_equals_one_by_one(request, which, beam_size):
    model = request.getfixturevalue(which)
    src = _sources()
    batched = generate(model, src, bos_id=BOS, eos_id=EOS, beam_size=beam_size)
    for row, result in zip(src, batched, strict=True):
        alone = generate(model, row[row != PAD][None], bos_id=BOS, eos_id=EOS, beam_size=beam_size)[0]
        assert alone.tokens == result.tokens
    # Extra padding columns must not change anything either.
    wider = torch.cat([src, torch.full((src.shape[0], 3), PAD)], dim=1)
    assert _tokens(generate(model, wider, bos_id=BOS, eos_id=EOS, beam_size=beam_size)) == _tokens(batched)


def test_trained_model_translates_and_stops_by_itself(trained_model):
    sources, targets = _copy_batch(torch.Generator().manual_seed(9), 40)
    margin = 10
    for beam_size in (1, 4):
        results = translate_ids(trained_model, sources, bos_id=BOS, eos_id=EOS, batch_size=16, beam_size=beam_size,
                                margin=margin)  # fmt: skip
        # Every output ended with a predicted EOS, long before the length limit forced one.
        assert all(len(r.tokens) < len(s) + margin - 1 for r, s in zip(results, sources, strict=True))
        correct = sum(r.tokens == t for r, t in zip(results, targets, strict=True))
        assert correct >= 6  # seconds of training: a fair share is reversed exactly (by chance: almost none)


def test_translate_ids_keeps_input_order(random_model):
    sources, _ = _copy_batch(torch.Generator().manual_seed(3), 11)
    batched = translate_ids(random_model, sources, bos_id=BOS, eos_id=EOS, batch_size=4)
    one_by_one = [generate(random_model, torch.tensor([s]), bos_id=BOS, eos_id=EOS)[0] for s in sources]
    assert _tokens(batched) == _tokens(one_by_one)


def test_length_limit_per_sentence_and_model_cap(random_model):
    src = _sources()
    lengths = (src != PAD).sum(1)
    assert length_limits(src, PAD, 2, 100).tolist() == (lengths + 2).tolist()
    assert length_limits(src, PAD, 50, 9).tolist() == [9] * src.shape[0]
    # An untrained model rarely says EOS: outputs run to the limit (limit - 1 tokens, then the forced EOS).
    for beam_size in (1, 3):
        results = generate(random_model, src, bos_id=BOS, eos_id=EOS, beam_size=beam_size, margin=2)
        assert all(len(r.tokens) <= n + 1 for r, n in zip(results, lengths.tolist(), strict=True))
        assert any(len(r.tokens) == n + 1 for r, n in zip(results, lengths.tolist(), strict=True))
    capped = generate(random_model, src, bos_id=BOS, eos_id=EOS, margin=1000)
    assert max(len(r.tokens) for r in capped) <= CFG.max_len - 1


def test_beam_search_finds_the_best_sequence_exhaustively():
    """With k large enough to hold every prefix, beam search must return the best GNMT-scored output."""
    torch.manual_seed(2)
    cfg = Seq2SeqConfig(src_vocab=10, tgt_vocab=6, d_model=16, n_heads=2, d_ff=32, n_encoder_layers=1,
                        n_decoder_layers=1, dropout=0.0, max_len=8)  # fmt: skip
    model = Seq2Seq(cfg).eval()
    src = torch.tensor([[5, 6, EOS]])  # limit = 3 + margin 0 = 3 generated tokens
    alpha = 0.8
    with torch.inference_mode():
        found = beam_search(model, src, bos_id=BOS, eos_id=EOS, beam_size=40, alpha=alpha, margin=0)[0]
        memory, mask = model.encode(src)
        best = None
        non_eos = [t for t in range(cfg.tgt_vocab) if t != EOS]
        for n in range(3):  # outputs of n tokens, then EOS
            for body in itertools.product(non_eos, repeat=n):
                tgt = torch.tensor([[BOS, *body, EOS]])
                log_probs = torch.log_softmax(model.logits(model.decode(tgt[:, :-1], memory, mask)), -1)
                log_prob = float(log_probs[0].gather(1, tgt[0, 1:, None]).sum())
                score = log_prob / length_penalty(n + 1, alpha)
                if best is None or score > best[0]:
                    best = (score, list(body), log_prob)
    assert found.tokens == best[1]
    assert found.log_prob == pytest.approx(best[2], abs=1e-4)


def test_cross_attention_rows_are_the_steps_that_wrote_each_token(trained_model):
    src = _sources()
    results = generate(trained_model, src, bos_id=BOS, eos_id=EOS, return_attention=True)
    with torch.inference_mode():
        memory, mask = trained_model.encode(src[:1])
        cache = trained_model.new_cache()
        prefix = [BOS]
        stepwise = []
        for token in results[0].tokens:
            _, weights = trained_model.decode(torch.tensor([[prefix[-1]]]), memory, mask, cache=cache,
                                              return_weights=True)  # fmt: skip
            stepwise.append(torch.stack(weights, 0)[:, 0])  # (L, h, 1, Ts)
            prefix.append(token)
    expected = torch.cat(stepwise, dim=2)  # (L, h, m, Ts)
    attention = results[0].attention
    n_src = int((src[0] != PAD).sum())
    assert attention.shape == (TRAIN_CFG.n_decoder_layers, TRAIN_CFG.n_heads, len(results[0].tokens), n_src)
    torch.testing.assert_close(attention, expected[..., : attention.shape[-1]])
    for result in results:
        torch.testing.assert_close(result.attention.sum(-1), torch.ones(result.attention.shape[:-1]))


def test_cross_attention_checks_and_restores_training_mode(random_model):
    with pytest.raises(ValueError, match="targets"):
        cross_attention(random_model, _sources(), [[4]], bos_id=BOS)
    random_model.train()
    try:
        generate(random_model, _sources(), bos_id=BOS, eos_id=EOS)
        assert random_model.training
    finally:
        random_model.eval()


def test_bad_arguments(random_model):
    src = _sources()
    with pytest.raises(ValueError, match="beam_size"):
        generate(random_model, src, bos_id=BOS, eos_id=EOS, beam_size=0)
    with pytest.raises(ValueError, match="margin"):
        generate(random_model, src, bos_id=BOS, eos_id=EOS, margin=-1)
    with pytest.raises(ValueError, match="src"):
        generate(random_model, src[0], bos_id=BOS, eos_id=EOS)
    assert len(greedy_search(random_model, src, bos_id=BOS, eos_id=EOS)) == src.shape[0]
