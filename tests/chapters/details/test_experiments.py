"""Chapter 5's model, tasks and experiments on tiny sizes: the invariants their tables rest on."""

import numpy as np
import pytest
import torch

from xattn_edu.chapters.details import leakage, positions, tying
from xattn_edu.chapters.details.model import PLACEMENTS, DetailsConfig, DetailsModel, wait_k_mask
from xattn_edu.chapters.details.tasks import FIRST, PAD, MarkovSource, NamesTask, copy_pairs, repeated
from xattn_edu.chapters.details.training import Schedule, difference, single_thread, spread, text_table

TINY = Schedule(steps=3, batch=8, record_every=1)


# ----------------------------------------------------------------------------- tasks

def test_copy_pairs_pad_after_the_length_and_copy_the_source():
    batch = copy_pairs(np.random.default_rng(0), 50, 4, (2, 6))
    lengths = (batch.src != PAD).sum(1)
    assert batch.src.shape == (50, 6) and lengths.min() >= 2 and lengths.max() <= 6
    assert torch.equal(batch.tgt_out, batch.src)
    assert torch.equal(batch.tgt_in[:, 1:][batch.tgt_out[:, 1:] != PAD], batch.src[:, :-1][batch.tgt_out[:, 1:] != PAD])
    assert (batch.tgt_in[:, 0] == 1).all()


def test_repeated_marks_tokens_that_occur_twice_in_their_row():
    src = torch.tensor([[2, 3, 2, 4, 0, 0], [5, 5, 5, 6, 7, 0]])
    assert repeated(src).tolist() == [[True, False, True, False, False, False],
                                      [True, True, True, False, False, False]]


def test_the_markov_chain_follows_its_favourites_as_often_as_it_says():
    chain = MarkovSource.random(6, 0.7, seed=0)
    x = chain.sample(np.random.default_rng(1), 4000, 6) - FIRST
    followed = np.array(chain.favourite)[x[:, :-1]] == x[:, 1:]
    assert followed.mean() == pytest.approx(0.7, abs=0.01)
    assert chain.best_next_accuracy() == pytest.approx(0.7)
    assert all(f != s for s, f in enumerate(chain.favourite))  # never "repeat the token"


def test_shifted_and_reversed_targets():
    chain = MarkovSource.random(5, 0.6, seed=0)
    shifted = chain.shifted(np.random.default_rng(2), 3, 7)
    assert torch.equal(shifted.tgt_out, shifted.src[:, 1:])
    reversed_ = chain.reversed(np.random.default_rng(2), 3, 7)
    assert torch.equal(reversed_.tgt_out, reversed_.src.flip(1))


def test_names_task_translates_common_words_and_copies_rare_ones():
    task = NamesTask(common=5, rare=30)
    sources, targets = task.sentences(np.random.default_rng(3), 200)
    table = task.translation()
    for source, target in zip(sources, targets, strict=True):
        assert target == [int(table[w]) for w in source]
        assert 1 <= sum(w >= FIRST + task.common for w in source) <= 2
    assert sorted(table[FIRST:FIRST + 5]) == list(range(FIRST, FIRST + 5))
    assert (table[FIRST + 5:] == np.arange(FIRST + 5, task.vocab)).all()


# ----------------------------------------------------------------------------- the model

def test_wait_k_mask_lets_step_t_read_t_plus_k_positions():
    mask = wait_k_mask(4, 6, 2)[0, 0]
    assert mask.sum(1).tolist() == [2, 3, 4, 5]
    assert wait_k_mask(3, 4, None).all()


@pytest.mark.parametrize("placement", [*PLACEMENTS, "embeddings"])
def test_every_placement_builds_and_gives_logits(placement):
    model = DetailsModel(DetailsConfig(8, 9, d_model=8, positions=placement))
    batch = copy_pairs(np.random.default_rng(0), 3, 6, (2, 5))
    assert model(batch.src, batch.tgt_in).shape == (3, batch.tgt_in.shape[1], 9)


def test_a_causal_encoder_keeps_the_past_blind_to_the_future():
    torch.manual_seed(0)
    model = DetailsModel(DetailsConfig(8, 8, d_model=8, causal_encoder=True)).eval()
    src = torch.randint(2, 8, (2, 6))
    changed = src.clone()
    changed[:, 4:] = (changed[:, 4:] - 1).clamp(min=2) + 1
    mask = torch.ones(2, 1, 1, 6, dtype=torch.bool)
    before, after = (model.encode(model.embed_source(s), mask) for s in (src, changed))
    assert torch.equal(before[:, :4], after[:, :4]) and not torch.equal(before[:, 4:], after[:, 4:])


@pytest.mark.parametrize("placement, blind", [("none", True), ("queries", True), ("keys", False), ("both", False),
                                              ("relative", False), ("rotary", False)])
def test_copies_get_identical_weights_exactly_when_the_keys_carry_no_position(placement, blind):
    setup = positions.PositionsSetup(d_model=8)
    model = setup.build(placement)
    if placement == "relative":
        # the bias starts at zero: give it something to say
        torch.nn.init.normal_(model.decoder_layers[0].cross_attn.relative.bias.weight)
    gap = positions.copy_gap(model, positions.symbol_batch("ABCADBA"))
    assert (gap.largest == 0.0) is blind


# ----------------------------------------------------------------------------- the experiments, tiny

def test_positions_experiment_reports_one_row_per_placement():
    setup = positions.PositionsSetup(d_model=8, schedule=TINY, seeds=(0, 1), validation=20)
    results = positions.measure_placements(setup, ("queries", "keys"))
    assert [r.placement for r in results] == ["queries", "keys"]
    assert results[0].largest_gap == 0.0 and results[1].largest_gap > 0.0
    assert all(len(r.accuracy.values) == 2 and 0 <= r.accuracy.mean <= 1 for r in results)
    table = positions.placement_table(results)
    assert "queries" in table and "copy gap" in table
    assert "two copies of a token got exactly equal weights" in positions.placement_findings(results)[0]


def test_streaming_predictions_match_training_for_the_sealed_wiring_only():
    setup = leakage.LeakageSetup(d_model=8, length=6, schedule=TINY)
    batch = setup.chain.shifted(np.random.default_rng(0), 16, setup.length)
    sealed, leaky = (setup.build(variant) for variant in (leakage.VARIANTS[3], leakage.VARIANTS[2]))
    for model in (sealed, leaky):
        for parameter in model.parameters():
            torch.nn.init.normal_(parameter, std=0.5)
    with torch.no_grad():
        assert torch.equal(leakage.honest_predictions(sealed, batch, 1), sealed(batch.src, batch.tgt_in).argmax(-1))
        logits = leaky(batch.src, batch.tgt_in)
        honest = [leaky(batch.src[:, : t + 1], batch.tgt_in)[:, t] for t in range(batch.tgt_in.shape[1])]
    assert not torch.allclose(torch.stack(honest, 1), logits)


def test_the_leak_measures_are_exactly_zero_for_the_sealed_wiring_and_not_for_the_others():
    setup = leakage.LeakageSetup(d_model=8, length=6, schedule=TINY)
    batch = setup.chain.shifted(np.random.default_rng(0), 6, setup.length)
    for variant in leakage.VARIANTS:
        torch.manual_seed(0)
        model = setup.build(variant)
        profile = leakage.leak_profile(model, batch, 1)
        change = leakage.resample_change(model, batch, 1, setup.states)
        sealed = variant is leakage.VARIANTS[3]
        assert bool(profile.future_share.max() == 0.0) is sealed and (change == 0.0) is sealed
        np.testing.assert_allclose(profile.influence.sum(1), 1.0, rtol=1e-5)


def test_leakage_experiment_and_contrast_report_every_wiring():
    setup = leakage.LeakageSetup(d_model=8, length=5, schedule=TINY, seeds=(0,), validation=10, probed=4)
    results = leakage.measure_leakage(setup)
    assert [r.variant for r in results] == list(leakage.VARIANTS)
    assert results[3].gap.values == (0.0,) and results[3].future_share.values == (0.0,)
    assert results[3].profile.influence.shape == (4, 5)
    assert "causal encoder, wait-k" in leakage.leakage_table(results)
    assert "no path from the future" in leakage.leakage_findings(results, setup)[-1]
    contrast = leakage.measure_contrast(setup)
    assert [r.variant for r in contrast] == [leakage.VARIANTS[0], leakage.VARIANTS[3]]
    assert contrast[1].future_share.values == (0.0,)
    assert "decoded accuracy" in leakage.contrast_table(contrast)


def test_greedy_decoding_writes_what_teacher_forcing_predicts_when_it_is_right():
    torch.manual_seed(0)
    model = DetailsModel(DetailsConfig(6, 6, d_model=8)).eval()
    src = torch.randint(2, 6, (3, 4))
    decoded = leakage.greedy(model, src, 4)
    forced_input = torch.cat([torch.ones(3, 1, dtype=torch.long), decoded[:, :-1]], 1)
    assert torch.equal(model(src, forced_input).argmax(-1), decoded)


def test_tying_experiment_shares_embeddings_and_counts_its_savings():
    setup = tying.TyingSetup(task=NamesTask(rare=20), train_size=40, validation=20, d_model=8,
                             schedule=TINY, seeds=(0, 1))
    model = setup.build()
    assert model.src_embed.weight is model.tgt_embed.weight is model.generator.weight
    results = tying.measure_tying(setup)
    untied, cross, every = results
    assert untied.saved == 0 and cross.saved == 2 * (8 * 8 + 8) and every.saved == 5 * 2 * (8 * 8 + 8)  # 6 modules
    assert untied.parameters - every.parameters == every.saved
    assert untied.curves.shape == (2, 3)
    assert "tied across all attention" in tying.tying_table(results, setup.rare_at_most)
    assert len(tying.tying_findings(results)) == 2


def test_names_data_marks_rare_tokens_by_their_training_count():
    setup = tying.TyingSetup(task=NamesTask(rare=50), train_size=100, validation=50)
    data = tying.names_data(setup)
    assert not (data.rare & data.frequent).any()
    assert (setup.task.is_rare(data.validation.tgt_out)[data.rare]).all()


def test_spreads_tables_and_differences_read_well():
    a, b = spread([0.9, 0.92, 0.94]), spread([0.5, 0.5, 0.5])
    assert a.show() == "0.920 ± 0.020" and a.show(percent=True) == "92.0 ± 2.0 %"
    assert difference(b, a) == "-0.420 (beyond the spread of ±0.020)"
    assert difference(a, a) == "+0.000 (within the spread of ±0.040)"
    assert text_table(("x", "value"), [("a", "1"), ("bb", "22")]).splitlines() == ["x   value", "--  -----",
                                                                                    "a       1", "bb     22"]


def test_single_thread_runs_one_thread_and_gives_the_old_count_back():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with single_thread():
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
