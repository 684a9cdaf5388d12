"""Correct answers to Chapter 7's exercises, written independently of the reference (as a student might)."""

import math

import torch
import torch.nn.functional as F


def patchify(images, patch):
    batch, height, width = images.shape
    if height % patch or width % patch:
        raise ValueError("the image does not split into whole patches")
    columns = F.unfold(images[:, None], kernel_size=patch, stride=patch)  # (B, p*p, N)
    rows, cols = height // patch, width // patch
    positions = torch.tensor([[r, c] for r in range(rows) for c in range(cols)])
    return columns.transpose(1, 2), positions


def _attend(queries, context, w_q, w_k, w_v, mask=None):
    scores = torch.einsum("bqd,bkd->bqk", queries @ w_q, context @ w_k) / math.sqrt(w_k.shape[1])
    if mask is not None:
        scores = torch.where(mask[:, None, :], scores, torch.tensor(-math.inf, dtype=scores.dtype))
    weights = F.softmax(scores, dim=-1)
    return weights @ (context @ w_v), weights


def latent_cross_attention(latents, inputs, w_q, w_k, w_v, mask=None):
    return _attend(latents.expand(inputs.shape[0], -1, -1), inputs, w_q, w_k, w_v, mask)


def prompt_mask_logits(prompt, patches, to_image, to_prompt):
    read, weights = _attend(prompt, patches, *to_image)
    tokens = prompt + read
    image = patches + _attend(patches, tokens, *to_prompt)[0]
    logits = torch.einsum("bnd,bd->bn", image, tokens[:, 0]) / math.sqrt(prompt.shape[-1])
    return logits, weights


def peak_to_digit(weights, grid_width, patch, slot_width):
    index = torch.argmax(weights, dim=-1)
    centre = (index % grid_width).double() * patch + patch / 2
    return index, torch.floor(centre / slot_width).long()
