"""Reference implementations of Chapter 7's graded exercises, written once, readably.

* :func:`patchify` — cut images into a (B, N, P) sequence of patches with their grid positions;
* :func:`latent_cross_attention` — M learned latents read N inputs (Perceiver's first step);
* :func:`prompt_mask_logits` — prompt tokens read the image patches, the patches read the prompt back,
  and the mask token scores every patch (one two-way step of SAM's mask decoder);
* :func:`peak_to_digit` — the patch an attention row peaks on, and the digit slot that patch lies in.

Shapes: B batch, H x W image pixels, p patch side, N = (H / p)(W / p) patches, P = p * p pixels per
patch, M latents, D width, Tp prompt tokens. Masks are boolean, True = may attend.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from xattn_edu.nn.attention import masked_softmax


def patchify(images: Tensor, patch: int) -> tuple[Tensor, Tensor]:
    """Cut each image into non-overlapping ``patch`` x ``patch`` squares, in reading order.

    Patch ``n`` is the square at grid row ``n // (W / patch)`` and column ``n % (W / patch)``; its
    P = patch * patch pixels are listed row by row (the layout of ViT, "An Image is Worth 16x16 Words").

    Args:
        images: (B, H, W) float tensor; H and W must be multiples of ``patch``.
        patch: p, the side of a patch in pixels (a positive int).

    Returns:
        ``(patches, positions)``: patches (B, N, P) with N = (H/p)(W/p) and P = p*p;
        positions (N, 2) int64, the (row, column) of each patch in the grid.

    Raises:
        ValueError: images not 3-D, ``patch`` not positive, or H or W not a multiple of ``patch``.
    """
    if images.dim() != 3:
        raise ValueError(f"images must be (B, H, W), got shape {tuple(images.shape)}")
    if patch < 1:
        raise ValueError(f"patch must be a positive number of pixels, got {patch}")
    batch, height, width = images.shape
    if height % patch or width % patch:
        raise ValueError(f"an image of {height} x {width} pixels does not split into {patch} x {patch} patches")
    rows, cols = height // patch, width // patch
    grid = images.reshape(batch, rows, patch, cols, patch)  # (B, rows, p, cols, p)
    patches = grid.permute(0, 1, 3, 2, 4).reshape(batch, rows * cols, patch * patch)  # (B, N, P)
    positions = torch.stack(torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij"), dim=-1)
    return patches, positions.reshape(rows * cols, 2)  # (N, 2)


def _attend(queries: Tensor, context: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor,
            mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Single-head cross-attention: queries (..., Tq, Dq) read context (B, Tk, Dc) → ((B, Tq, Dv), (B, Tq, Tk))."""
    q, k, v = queries @ w_q, context @ w_k, context @ w_v  # (.., Tq, Dk), (B, Tk, Dk), (B, Tk, Dv)
    scores = q @ k.transpose(-1, -2) / math.sqrt(k.shape[-1])  # (B, Tq, Tk)
    # the package's rule: a row with no visible input gets zero weights (and zero gradients), never NaN
    weights = torch.softmax(scores, dim=-1) if mask is None else masked_softmax(scores, mask[:, None, :])
    return weights @ v, weights


def latent_cross_attention(latents: Tensor, inputs: Tensor, w_q: Tensor, w_k: Tensor, w_v: Tensor,
                           mask: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """M latent queries, shared by every example, attend to N inputs: cost O(M N), not O(N^2).

    ``weights = softmax(latents W_q (inputs W_k)^T / sqrt(Dk))`` over the N inputs and
    ``output = weights (inputs W_v)`` (Jaegle et al. 2021, "Perceiver", section 2).

    Args:
        latents: (M, D) learned queries, the same for every example of the batch.
        inputs: (B, N, Din) the long input.
        w_q: (D, Dk); w_k: (Din, Dk); w_v: (Din, Dv) projections.
        mask: optional (B, N) boolean, True = a real input the latents may attend to.

    Returns:
        ``(output, weights)``: output (B, M, Dv), weights (B, M, N), each row summing to 1 over the inputs
        (all 0, and a zero output, for an example whose mask hides every input).
    """
    return _attend(latents, inputs, w_q, w_k, w_v, mask)


def prompt_mask_logits(prompt: Tensor, patches: Tensor, to_image: tuple[Tensor, Tensor, Tensor],
                       to_prompt: tuple[Tensor, Tensor, Tensor]) -> tuple[Tensor, Tensor]:
    """One two-way step: the prompt reads the image, the image reads the prompt, the mask token scores patches.

    1. ``tokens = prompt + attend(prompt -> patches)`` with ``to_image = (W_q, W_k, W_v)``;
    2. ``image = patches + attend(patches -> tokens)`` with ``to_prompt = (W_q, W_k, W_v)``;
    3. ``logits[b, n] = image[b, n] . tokens[b, 0] / sqrt(D)``: token 0 is the mask token.

    Each attend is single-head scaled dot-product attention (the structure of the two-way transformer
    in SAM's mask decoder, Kirillov et al. 2023, section 3, without its norms, MLPs and heads).

    Args:
        prompt: (B, Tp, D) tokens: the mask token first, then the prompt tokens (a point, box corners).
        patches: (B, N, D) image patch embeddings.
        to_image, to_prompt: three (D, D) matrices each.

    Returns:
        ``(logits, weights)``: mask logits (B, N), one per patch; weights (B, Tp, N) of step 1.
    """
    read, weights = _attend(prompt, patches, *to_image)
    tokens = prompt + read  # (B, Tp, D)
    image = patches + _attend(patches, tokens, *to_prompt)[0]  # (B, N, D)
    logits = (image @ tokens[:, 0, :, None]).squeeze(-1) / math.sqrt(prompt.shape[-1])  # (B, N)
    return logits, weights


def peak_to_digit(weights: Tensor, grid_width: int, patch: int, slot_width: int) -> tuple[Tensor, Tensor]:
    """Where an attention row looks: its peak patch, and the digit slot holding that patch's centre.

    Patches are numbered in reading order over a grid ``grid_width`` patches wide (as :func:`patchify`
    numbers them); digit slots are vertical bands ``slot_width`` pixels wide, slot 0 on the left.

    Args:
        weights: (..., N) attention over the N patches.
        grid_width: patches per grid row.
        patch: p, patch side in pixels.
        slot_width: width of a digit slot in pixels.

    Returns:
        ``(patch_index, digit)``: two int64 tensors of shape (...): the argmax over N, and
        ``floor((column + 1/2) * patch / slot_width)`` with ``column = patch_index % grid_width``.
    """
    index = weights.argmax(dim=-1)
    column = index % grid_width
    digit = torch.div((2 * column + 1) * patch, 2 * slot_width, rounding_mode="floor")
    return index, digit
