"""Encoder-decoder: layers equal torch's with copied weights; cached decoding equals a full pass."""

import pytest
import torch
from torch import nn
from torch.testing import assert_close

from tests.helpers.torch_reference import copy_attention_weights
from xattn_edu.nn.masks import causal_mask, padding_mask
from xattn_edu.nn.model import DecoderLayer, EncoderLayer, Seq2Seq, Seq2SeqConfig

CFG = Seq2SeqConfig(src_vocab=30, tgt_vocab=25, d_model=16, n_heads=4, d_ff=32, n_encoder_layers=2,
                    n_decoder_layers=2, dropout=0.0, max_len=20)


def _copy_ff_and_norms(dst, src, blocks) -> None:
    dst.linear1.load_state_dict(src.ff[0].state_dict())
    dst.linear2.load_state_dict(src.ff[3].state_dict())
    for i, block in enumerate(blocks, start=1):
        getattr(dst, f"norm{i}").load_state_dict(block.norm.state_dict())


@pytest.mark.parametrize("pre_norm", [True, False])
@torch.no_grad()
def test_encoder_layer_matches_torch(pre_norm):
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(**{**CFG.to_dict(), "pre_norm": pre_norm})
    ours = EncoderLayer(cfg).eval()
    ref = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=pre_norm).eval()
    copy_attention_weights(ref.self_attn, ours.self_attn)
    _copy_ff_and_norms(ref, ours, [ours.attn_block, ours.ff_block])
    x = torch.randn(2, 6, 16)
    ids = torch.tensor([[1, 2, 3, 4, 5, 6], [1, 2, 3, 0, 0, 0]])
    mask = padding_mask(ids=ids, pad_id=0)  # (B, 1, 1, Ts)
    expected = ref(x, src_key_padding_mask=~mask[:, 0, 0])
    assert_close(ours(x, mask)[0], expected[0])
    assert_close(ours(x, mask)[1, :3], expected[1, :3])


@torch.no_grad()
def test_decoder_layer_matches_torch():
    torch.manual_seed(0)
    ours = DecoderLayer(CFG).eval()
    ref = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=True).eval()
    copy_attention_weights(ref.self_attn, ours.self_attn)
    copy_attention_weights(ref.multihead_attn, ours.cross_attn)
    _copy_ff_and_norms(ref, ours, [ours.self_block, ours.cross_block, ours.ff_block])
    x, memory = torch.randn(2, 4, 16), torch.randn(2, 5, 16)
    src_mask = padding_mask(ids=torch.tensor([[1, 2, 3, 4, 5], [1, 2, 0, 0, 0]]), pad_id=0)  # (B, 1, 1, Ts)
    expected = ref(x, memory, tgt_mask=~causal_mask(4)[0, 0], memory_key_padding_mask=~src_mask[:, 0, 0])
    out, _ = ours(x, memory, causal_mask(4), src_mask)
    assert_close(out, expected)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return Seq2Seq(CFG).eval()


def _batch():
    src = torch.tensor([[3, 4, 5, 6, 7, 8], [9, 10, 11, 0, 0, 0]])
    tgt = torch.tensor([[1, 5, 6, 7, 8], [1, 9, 4, 3, 2]])
    return src, tgt


@pytest.mark.parametrize("fused", [True, False])
@torch.no_grad()
def test_cached_incremental_decoding_equals_full_forward(model, fused):
    for module in model.modules():
        if hasattr(module, "fused"):
            module.fused = fused
    src, tgt = _batch()
    full = model(src, tgt)
    memory, memory_mask = model.encode(src)
    cache = model.new_cache()
    steps = []
    for t in range(tgt.shape[1]):
        hidden = model.decode(tgt[:, t:t + 1], memory if t == 0 else None, memory_mask, cache=cache)
        steps.append(model.logits(hidden))
    assert cache.length == tgt.shape[1]
    assert_close(torch.cat(steps, dim=1), full)


@pytest.mark.parametrize(("self_attn", "cross_attn"), [(False, False), (False, True), (True, False), (True, True)])
@torch.no_grad()
def test_every_partial_cache_gives_the_logits_of_the_full_pass(model, self_attn, cross_attn):
    src, tgt = _batch()
    full = model(src, tgt)  # (B, T, V)
    memory, memory_mask = model.encode(src)
    cache = model.new_cache(self_attn=self_attn, cross_attn=cross_attn)
    steps = [model.next_token_logits(tgt[:, : t + 1], memory, memory_mask, cache) for t in range(tgt.shape[1])]
    assert_close(torch.stack(steps, dim=1), full)
    assert cache.length == (tgt.shape[1] if self_attn else 0)
    layer = cache.layers[0]
    assert (layer.self_attn is not None, layer.cross_attn is not None) == (self_attn, cross_attn)


@pytest.mark.parametrize("self_attn", [True, False])
@torch.no_grad()
def test_reordering_a_partial_cache_follows_the_batch(model, self_attn):
    src, tgt = _batch()
    memory, memory_mask = model.encode(src)
    cache = model.new_cache(self_attn=self_attn, cross_attn=True)
    model.next_token_logits(tgt[:, :2], memory, memory_mask, cache)
    swap = torch.tensor([1, 0])
    cache.reorder(swap)
    after = model.next_token_logits(tgt[swap, :3], memory[swap], memory_mask[swap], cache)
    assert_close(after, model(src[swap], tgt[swap, :3])[:, -1])


@torch.no_grad()
def test_padding_the_source_changes_nothing(model):
    src, tgt = _batch()
    padded = torch.cat([src, torch.zeros(2, 4, dtype=torch.long)], dim=1)
    assert_close(model(padded, tgt), model(src, tgt))


@torch.no_grad()
def test_changing_a_future_target_token_changes_nothing_before_it(model):
    src, tgt = _batch()
    changed = tgt.clone()
    changed[:, 3] = 12
    assert_close(model(src, changed)[:, :3], model(src, tgt)[:, :3])


@torch.no_grad()
def test_cross_attention_weights_per_layer(model):
    src, tgt = _batch()
    memory, mask = model.encode(src)
    hidden, weights = model.decode(tgt, memory, mask, return_weights=True)
    assert len(weights) == 2 and weights[0].shape == (2, 4, 5, 6)
    assert_close(weights[1].sum(-1), torch.ones(2, 4, 5))
    assert torch.all(weights[0][1, :, :, 3:] == 0)  # padded source positions


@pytest.mark.parametrize("fused", [True, False])
def test_cpu_autocast_training_step_and_cached_decoding(fused):
    """Issue 12: every attention path accepts what autocast produces, in training and in cached decoding."""
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(**{**CFG.to_dict(), "fused": fused})).eval()
    src, tgt = _batch()
    src = torch.cat([src, torch.zeros(1, 6, dtype=torch.long)])  # a source that is all padding:
    tgt = torch.cat([tgt, tgt[:1]])  # its cross-attention rows have no finite score
    expected = model(src, tgt)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(src, tgt)
        memory, memory_mask = model.encode(src)
        cache = model.new_cache()
        steps = [model.logits(model.decode(tgt[:, t:t + 1], memory, memory_mask, cache=cache))
                 for t in range(tgt.shape[1])]
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    assert_close(logits.float(), expected, rtol=0.1, atol=0.1)
    assert_close(torch.cat(steps, 1).float(), expected, rtol=0.1, atol=0.1)
    logits.float().logsumexp(-1).mean().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_gradients_reach_every_parameter_and_the_encoder_bottom():
    torch.manual_seed(0)
    model = Seq2Seq(CFG).train()
    src, tgt = _batch()
    model(src, tgt).logsumexp(-1).mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
    assert model.src_embed.weight.grad.abs().sum() > 0


def test_tied_kv_and_output_weights():
    model = Seq2Seq(Seq2SeqConfig(**{**CFG.to_dict(), "tie_kv": True}))
    first = model.encoder_layers[0].self_attn
    assert model.decoder_layers[1].cross_attn.k_proj.weight is first.k_proj.weight
    assert model.generator.weight is model.tgt_embed.weight
    untied = Seq2Seq(CFG)
    n_tied = sum(p.numel() for p in model.parameters())
    assert n_tied < sum(p.numel() for p in untied.parameters())


def test_bad_inputs_and_configs_raise_clear_errors(model):
    with pytest.raises(ValueError, match="longer than the model's maximum"):
        model(torch.ones(1, 21, dtype=torch.long), torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="integer tensor"):
        model(torch.ones(1, 4), torch.ones(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="divide"):
        Seq2SeqConfig(src_vocab=5, tgt_vocab=5, d_model=10, n_heads=3)
    with pytest.raises(ValueError, match="positional"):
        Seq2SeqConfig(src_vocab=5, tgt_vocab=5, positional="alibi")
