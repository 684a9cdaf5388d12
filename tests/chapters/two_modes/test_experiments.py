"""Chapter 3 experiments on tiny sizes: the translator wrapper, cross-attention maps, cache memory, the figure."""

import math

import matplotlib
import pytest
import torch

from xattn_edu.chapters.two_modes import cache_memory, translator
from xattn_edu.chapters.two_modes.figures import draw_encoder_decoder
from xattn_edu.nn.attention import scaled_dot_product_attention
from xattn_edu.nn.model import Seq2Seq, Seq2SeqConfig

matplotlib.use("Agg")

TINY = translator.TranslatorBudget(steps=4, snapshots=(0, 2, 4), n_train=300, n_val=10, d_model=16, n_heads=2,
                                   n_layers=1, max_tokens=400)


@pytest.fixture(scope="module")
def trained():
    return translator.train_tiny_translator(TINY, progress=False)


def test_the_tiny_translator_trains_keeps_snapshots_and_is_scored(trained):
    assert [step for step, _ in trained.snapshots] == [0, 2, 4]
    assert [step for step, _ in trained.history] == [2, 4]
    assert all(math.isfinite(loss) for _, loss in trained.history)
    assert 0.0 <= trained.exact_match <= 100.0 and 0.0 <= trained.aer <= 1.0
    layer, head, aer = trained.best_head
    assert layer == 0 and head in (0, 1) and aer >= 0.0
    assert isinstance(trained.translate(translator.EXAMPLE_SOURCE), str)


def test_snapshots_are_copies_taken_at_their_step(trained):
    untrained, final = trained.snapshots[0][1], trained.snapshots[-1][1]
    assert untrained is not final
    assert not torch.equal(untrained.encoder_layers[0].ff[0].weight, final.encoder_layers[0].ff[0].weight)
    assert torch.equal(final.encoder_layers[0].ff[0].weight, trained.model.encoder_layers[0].ff[0].weight)


def test_cross_attention_maps_are_rows_of_weights_over_the_source(trained):
    source = trained.encode_source(translator.EXAMPLE_SOURCE)
    target = trained.encode_target(translator.EXAMPLE_TARGET)
    assert len(source) == len(translator.EXAMPLE_SOURCE.split()) + 1  # the tokens, then <eos>
    assert len(target) == len(translator.EXAMPLE_TARGET.split())
    maps = translator.cross_attention_maps(trained.model, source, target, trained.bos_id)
    assert maps.shape == (1, 2, len(target), len(source))
    torch.testing.assert_close(maps.sum(-1), torch.ones(1, 2, len(target)))
    row = maps[0, 1, 3]
    assert translator.strongest_source(maps, 0, 1, 3) == int(row.argmax())


def test_the_maps_are_the_weights_the_decoder_computes_when_it_writes_each_word():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(src_vocab=9, tgt_vocab=9, d_model=8, n_heads=2, n_encoder_layers=1,
                                  n_decoder_layers=2, d_ff=16, dropout=0.0)).eval()
    source, target = [3, 4, 5, 2], [6, 7, 8]
    maps = translator.cross_attention_maps(model, source, target, bos_id=1)
    memory, memory_mask = model.encode(torch.tensor([source]))
    cache = model.new_cache()
    for step, token in enumerate([1, 6, 7]):  # <bos>, then the targets before the last
        _, weights = model.decode(torch.tensor([[token]]), memory, memory_mask, cache=cache, return_weights=True)
        for layer in range(2):
            torch.testing.assert_close(maps[layer, :, step], weights[layer][0, :, 0])


def test_the_example_links_are_the_synthetic_grammars_own():
    from xattn_edu.translate.data import lexicon, synthetic

    pair = synthetic.render(synthetic.Sentence(
        synthetic.Clause(synthetic.NounPhrase("cat"), "see", lexicon.PAST, synthetic.NounPhrase("mouse")),
        adverb="yesterday"))
    assert pair.src_text == translator.EXAMPLE_SOURCE and pair.tgt_text == translator.EXAMPLE_TARGET
    assert pair.alignment == translator.EXAMPLE_LINKS


def test_the_full_budget_fits_the_notebook_and_fast_mode_is_a_handful_of_steps():
    assert translator.FULL_BUDGET.steps in translator.FULL_BUDGET.snapshots
    assert translator.FAST_BUDGET.steps <= 10 and translator.FAST_BUDGET.n_train <= 2_000


def test_cache_bytes_formula_matches_the_package_caches():
    torch.manual_seed(0)
    cfg = Seq2SeqConfig(src_vocab=11, tgt_vocab=11, d_model=16, n_heads=4, n_encoder_layers=1, n_decoder_layers=3,
                        d_ff=32, dropout=0.0)
    model, src = Seq2Seq(cfg).eval(), torch.randint(1, 11, (2, 5))
    assert cache_memory.measured_cache_bytes(model, src, 7) == cache_memory.cache_bytes(3, 16, 7, 5, 2, 4)
    assert cache_memory.measured_cache_bytes(model.double(), src, 7) == cache_memory.cache_bytes(3, 16, 7, 5, 2, 8)


def test_grouped_key_value_heads_shrink_the_cache_by_h_over_g():
    full = cache_memory.cache_bytes(32, 4096, 8192, 0, 1, 2, n_heads=32)
    assert full == 4 * 2**30
    assert cache_memory.cache_bytes(32, 4096, 8192, 0, 1, 2, n_heads=32, kv_heads=8) == full // 4
    assert cache_memory.cache_bytes(32, 4096, 8192, 0, 1, 2, n_heads=32, kv_heads=1) == full // 32


@pytest.mark.parametrize("groups", [1, 2, 4])
def test_grouped_query_attention_equals_repeated_key_value_heads(groups):
    generator = torch.Generator().manual_seed(groups)
    query = torch.randn(2, 4, 3, 8, generator=generator, dtype=torch.float64)
    key, value = (torch.randn(2, groups, 5, 8, generator=generator, dtype=torch.float64) for _ in range(2))
    expected = scaled_dot_product_attention(query, key.repeat_interleave(4 // groups, dim=1),
                                            value.repeat_interleave(4 // groups, dim=1))
    torch.testing.assert_close(cache_memory.grouped_query_attention(query, key, value), expected)


def test_grouped_query_attention_needs_groups_that_divide_the_heads():
    with pytest.raises(ValueError, match="shared evenly"):
        cache_memory.grouped_query_attention(torch.zeros(1, 4, 1, 2), torch.zeros(1, 3, 2, 2), torch.zeros(1, 3, 2, 2))


def test_time_cache_read_reports_the_bytes_it_read():
    read = cache_memory.time_cache_read(2, heads=4, head_dim=8, cache_len=64, repeats=2)
    assert read.kv_heads == 2 and read.cache_mib == 2 * 2 * 64 * 8 * 4 / 2**20 and read.ms_per_step > 0


def test_human_bytes():
    assert cache_memory.human_bytes(512) == "512 B" and cache_memory.human_bytes(1536) == "1.5 KiB"
    assert cache_memory.human_bytes(4 * 2**30) == "4 GiB"


def test_the_architecture_figure_has_one_memory_arrow_per_decoder_layer():
    from matplotlib.patches import FancyArrowPatch

    for layers in (1, 3):
        ax = draw_encoder_decoder(layers)
        texts = [t.get_text() for t in ax.texts]
        assert texts.count("K, V") == layers
        assert sum("cross-attention" in t for t in texts) == layers
        assert sum("encoder layer" in t for t in texts) == layers
        memory_arrows = [p for p in ax.patches if isinstance(p, FancyArrowPatch) and p.get_edgecolor()[0] > 0.7]
        assert len(memory_arrows) == layers
        matplotlib.pyplot.close(ax.figure)


def test_the_architecture_figure_refuses_a_bad_depth():
    with pytest.raises(ValueError, match="positive integer"):
        draw_encoder_decoder(0)
