"""Chapter 7 references against torch's own operations and the package's attention module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from xattn_edu.chapters.applications import reference as ref
from xattn_edu.chapters.applications.promptable import unpatchify
from xattn_edu.nn.heads import MultiHeadAttention


def one_head(w_q, w_k, w_v) -> MultiHeadAttention:
    """A one-head module without biases whose projections are the given (Din, Dout) matrices, output = identity."""
    module = MultiHeadAttention(w_q.shape[1], 1, bias=False, fused=False).double()
    with torch.no_grad():
        for projection, weight in [(module.q_proj, w_q), (module.k_proj, w_k), (module.v_proj, w_v),
                                   (module.out_proj, torch.eye(w_q.shape[1], dtype=torch.float64))]:
            projection.weight.copy_(weight.T)
    return module


@pytest.mark.parametrize("shape, patch", [((2, 4, 6), 2), ((3, 12, 36), 4), ((1, 5, 5), 5), ((2, 3, 7), 1)])
def test_patchify_matches_unfold_and_reading_order(shape, patch):
    images = torch.randn(shape)
    patches, positions = ref.patchify(images, patch)
    expected = F.unfold(images[:, None], kernel_size=patch, stride=patch).transpose(1, 2)  # (B, N, p*p)
    torch.testing.assert_close(patches, expected)
    cols = shape[2] // patch
    n = torch.arange(len(positions))
    assert positions.dtype == torch.int64
    assert torch.equal(positions, torch.stack([n // cols, n % cols], dim=1))


def test_patch_n_is_the_square_at_its_position():
    images = torch.arange(2 * 8 * 12, dtype=torch.float32).reshape(2, 8, 12)
    patches, positions = ref.patchify(images, 4)
    for n, (row, col) in enumerate(positions.tolist()):
        square = images[:, 4 * row:4 * row + 4, 4 * col:4 * col + 4].reshape(2, 16)
        assert torch.equal(patches[:, n], square)


def test_unpatchify_inverts_patchify_channel_by_channel():
    images = torch.randn(3, 12, 8)
    patches, _ = ref.patchify(images, 4)
    assert torch.equal(unpatchify(patches, 4, rows=3)[..., 0], images)


@pytest.mark.parametrize("shape, patch", [((1, 5, 4), 2), ((1, 4, 6), 4), ((4, 4), 2), ((1, 4, 4), 0)])
def test_patchify_rejects_what_does_not_split(shape, patch):
    with pytest.raises(ValueError):
        ref.patchify(torch.zeros(shape), patch)


def test_latent_cross_attention_is_one_head_cross_attention_of_the_package():
    gen = torch.Generator().manual_seed(0)
    latents, inputs = torch.randn(4, 6, generator=gen, dtype=torch.float64), torch.randn(3, 9, 6, generator=gen,
                                                                                          dtype=torch.float64)
    w_q, w_k, w_v = (torch.randn(6, 6, generator=gen, dtype=torch.float64) for _ in range(3))
    mask = torch.arange(9)[None, :] < torch.tensor([9, 5, 1])[:, None]  # (B, N), True = real input
    out, weights = ref.latent_cross_attention(latents, inputs, w_q, w_k, w_v, mask)
    expected, expected_weights = one_head(w_q, w_k, w_v)(latents.expand(3, -1, -1), context=inputs,
                                                          mask=mask[:, None, None, :], return_weights=True)
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(weights, expected_weights[:, 0])
    assert weights.shape == (3, 4, 9)
    assert (weights[~mask[:, None, :].expand_as(weights)] == 0).all()
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4, dtype=torch.float64))


def test_an_example_with_no_real_input_reads_zeros_with_zero_gradients_like_the_package():
    gen = torch.Generator().manual_seed(3)
    latents = torch.randn(2, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    inputs = torch.randn(2, 5, 4, generator=gen, dtype=torch.float64, requires_grad=True)
    w_q, w_k, w_v = (torch.randn(4, 4, generator=gen, dtype=torch.float64) for _ in range(3))
    mask = torch.tensor([[True] * 5, [False] * 5])  # the second example is all padding
    out, weights = ref.latent_cross_attention(latents, inputs, w_q, w_k, w_v, mask)
    assert (weights[1] == 0).all() and (out[1] == 0).all()
    expected = one_head(w_q, w_k, w_v)(latents.expand(2, -1, -1), context=inputs, mask=mask[:, None, None, :])
    torch.testing.assert_close(out, expected)
    out.sum().backward()
    assert torch.isfinite(latents.grad).all() and torch.isfinite(inputs.grad).all()
    assert (inputs.grad[1] == 0).all()


def test_latent_cross_attention_matches_sdpa_with_different_widths():
    gen = torch.Generator().manual_seed(1)
    latents, inputs = torch.randn(3, 5, generator=gen), torch.randn(2, 7, 4, generator=gen)
    w_q, w_k, w_v = torch.randn(5, 8, generator=gen), torch.randn(4, 8, generator=gen), torch.randn(4, 3, generator=gen)
    out, _ = ref.latent_cross_attention(latents, inputs, w_q, w_k, w_v)
    expected = F.scaled_dot_product_attention((latents @ w_q).expand(2, -1, -1), inputs @ w_k, inputs @ w_v)
    torch.testing.assert_close(out, expected)


def test_prompt_mask_logits_is_two_package_cross_attentions_with_residuals():
    gen = torch.Generator().manual_seed(2)
    prompt, patches = (torch.randn(2, 3, 8, generator=gen, dtype=torch.float64),
                       torch.randn(2, 10, 8, generator=gen, dtype=torch.float64))
    to_image, to_prompt = ([torch.randn(8, 8, generator=gen, dtype=torch.float64) / 3 for _ in range(3)]
                           for _ in range(2))
    logits, weights = ref.prompt_mask_logits(prompt, patches, to_image, to_prompt)
    read, expected_weights = one_head(*to_image)(prompt, context=patches, return_weights=True)
    tokens = prompt + read
    image = patches + one_head(*to_prompt)(patches, context=tokens)
    torch.testing.assert_close(weights, expected_weights[:, 0])
    torch.testing.assert_close(logits, torch.einsum("bnd,bd->bn", image, tokens[:, 0]) / 8 ** 0.5)


def test_prompt_mask_logits_carries_gradients_to_prompt_and_patches():
    prompt = torch.randn(1, 2, 4, dtype=torch.float64, requires_grad=True)
    patches = torch.randn(1, 5, 4, dtype=torch.float64, requires_grad=True)
    mats = [tuple(torch.randn(4, 4, dtype=torch.float64) for _ in range(3)) for _ in range(2)]
    assert torch.autograd.gradcheck(lambda p, x: ref.prompt_mask_logits(p, x, *mats)[0], (prompt, patches))


def test_peak_to_digit_uses_the_centre_of_the_peak_patch():
    weights = torch.zeros(4, 27)
    weights[[0, 1, 2, 3], [0, 11, 17, 26]] = 1.0  # columns 0, 2, 8, 8 of a 9-wide grid
    index, digit = ref.peak_to_digit(weights, 9, 4, 12)
    assert index.tolist() == [0, 11, 17, 26]
    assert digit.tolist() == [0, 0, 2, 2]
    # slots of 10 pixels: the patch covering pixels 8..11 has its centre (10) in slot 1, its left edge in slot 0
    _, digit = ref.peak_to_digit(torch.eye(9)[[2]], 9, 4, 10)
    assert digit.tolist() == [1]
