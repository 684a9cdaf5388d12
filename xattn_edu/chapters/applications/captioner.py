"""Captioning over patches: a text decoder cross-attends to image patches and writes the number in words.

A small convolution (one 3x3 layer) turns the image into a few feature maps, which are cut into
patches (:func:`~xattn_edu.chapters.applications.reference.patchify`); each patch becomes a vector by a
linear patch embedding plus a learned position vector (as in ViT). There is no image encoder: the
decoder's cross-attention reads the patch vectors directly, so every attention weight refers to one
patch of the picture. The decoder is the translator's decoder layer
(:class:`xattn_edu.nn.model.DecoderLayer`: causal self-attention, cross-attention, feed-forward).

:func:`evaluate` measures two things on test images drawn with unseen digit images: the exact-match
rate of greedy captions, and how often each word's cross-attention peaks on the digit it names
(teacher-forced on the true caption, weights averaged over the heads of each layer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xattn_edu.chapters.applications import digits
from xattn_edu.chapters.applications.reference import patchify, peak_to_digit
from xattn_edu.chapters.applications.training import FitConfig, FitResult, fit
from xattn_edu.nn.masks import causal_mask
from xattn_edu.nn.model import DecoderLayer, Seq2SeqConfig
from xattn_edu.nn.positional import LearnedPositionalEmbedding


@dataclass(frozen=True)
class CaptionerConfig:
    """Shape of a :class:`PatchCaptioner`."""

    layout: digits.Layout = field(default_factory=digits.Layout)  # image size, digit slots, patch size
    d_model: int = 64  # D, width of patch and word vectors
    n_heads: int = 4  # h, heads of every attention module
    n_layers: int = 2  # decoder layers (each has one cross-attention to the patches)
    channels: int = 8  # feature maps of the 3x3 convolution in front of the patch embedding
    d_ff: int = 128  # hidden width of the feed-forward blocks


class PatchCaptioner(nn.Module):
    """Patch embedding + positions, then a Transformer decoder that cross-attends to the patches."""

    def __init__(self, config: CaptionerConfig = CaptionerConfig()):
        super().__init__()
        self.config = config
        rows, cols = config.layout.grid
        self.n_patches = rows * cols
        self.stem = nn.Sequential(nn.Conv2d(1, config.channels, 3, padding=1), nn.GELU())
        self.patch_embed = nn.Linear(config.channels * config.layout.patch ** 2, config.d_model)
        self.patch_pos = LearnedPositionalEmbedding(config.d_model, self.n_patches)
        self.memory_norm = nn.LayerNorm(config.d_model)
        self.word_embed = nn.Embedding(len(digits.VOCAB), config.d_model)
        self.word_pos = LearnedPositionalEmbedding(config.d_model, digits.MAX_WORDS + 1)
        layer_config = Seq2SeqConfig(src_vocab=1, tgt_vocab=len(digits.VOCAB), d_model=config.d_model,
                                     n_heads=config.n_heads, d_ff=config.d_ff, dropout=0.0)
        self.layers = nn.ModuleList(DecoderLayer(layer_config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.generator = nn.Linear(config.d_model, len(digits.VOCAB))

    def memory(self, images: Tensor) -> Tensor:
        """images (B, H, W) → patch vectors (B, N, D).

        A 3x3 convolution makes C feature maps (so a patch's vector also sees the pixels just across its
        border); ``patchify`` cuts each map into patches; a linear map embeds the C*P numbers of each patch
        and a learned vector marks its position.
        """
        maps = self.stem(images[:, None])  # (B, C, H, W)
        patches, _ = patchify(maps.flatten(0, 1), self.config.layout.patch)  # (B C, N, P)
        patches = patches.unflatten(0, maps.shape[:2]).transpose(1, 2).flatten(2)  # (B, N, C P)
        positions = torch.arange(self.n_patches, device=images.device)
        return self.memory_norm(self.patch_embed(patches) + self.patch_pos(positions))

    def forward(self, images: Tensor, words_in: Tensor, return_weights: bool = False):
        """images (B, H, W), words_in (B, T) ids starting with <bos> → logits (B, T, V).

        With ``return_weights``, also the cross-attention weights of every layer, a list of (B, h, T, N).
        """
        memory = self.memory(images)
        steps = words_in.shape[1]
        x = self.word_embed(words_in) + self.word_pos(torch.arange(steps, device=words_in.device))
        mask = causal_mask(steps, device=words_in.device)  # (1, 1, T, T)
        weights = []
        for layer in self.layers:
            x, w = layer(x, memory, mask, None, return_weights=return_weights)
            weights.append(w)
        logits = self.generator(self.norm(x))
        return (logits, weights) if return_weights else logits


def shift_right(targets: Tensor) -> Tensor:
    """Decoder inputs for teacher forcing: <bos> then the targets without their last token, (B, T)."""
    bos = torch.full_like(targets[:, :1], digits.BOS)
    return torch.cat([bos, targets[:, :-1]], dim=1)


@torch.no_grad()
def greedy_caption(model: PatchCaptioner, images: Tensor) -> Tensor:
    """Greedy decoding: (B, H, W) → ids (B, MAX_WORDS + 1), each the most likely word given the ones before."""
    words = torch.full((images.shape[0], 1), digits.BOS, dtype=torch.int64)
    for _ in range(digits.MAX_WORDS + 1):
        next_word = model(images, words)[:, -1].argmax(-1, keepdim=True)
        words = torch.cat([words, next_word], dim=1)
    return words[:, 1:]


@torch.no_grad()
def word_attention(model: PatchCaptioner, images: Tensor, words: Tensor, layer: int = -1) -> Tensor:
    """Cross-attention of each written word over the patches: (B, T, N), averaged over the heads.

    ``words`` (B, T) are the ids the decoder wrote (or a true caption); row t is the attention of the
    step that wrote word t.
    """
    _, weights = model(images, shift_right(words), return_weights=True)
    return weights[layer].mean(dim=1)


def train_captioner(config: CaptionerConfig, fit_config: FitConfig, batch_size: int = 64,
                    data_seed: int = 0) -> tuple[PatchCaptioner, FitResult]:
    """A captioner trained on fresh random numbers every step (training digit images only)."""
    torch.manual_seed(fit_config.seed)
    model = PatchCaptioner(config)

    def step_loss(step: int) -> Tensor:
        batch = digits.make_numbers(batch_size, split="train", seed=data_seed * 1_000_003 + step,
                                    layout=config.layout)
        logits = model(batch.images, shift_right(batch.targets))
        return F.cross_entropy(logits.flatten(0, 1), batch.targets.flatten(), ignore_index=digits.PAD)

    return model, fit(model, step_loss, fit_config)


@dataclass(frozen=True)
class CaptionScores:
    """What :func:`evaluate` measured on a test set."""

    images: int  # test images
    exact_match: float  # fraction of greedy captions equal to the true caption
    word_accuracy: float  # fraction of true-caption words predicted right under teacher forcing
    peak_on_digit: tuple[float, ...]  # per layer: fraction of words whose attention peak is in a gold slot
    peak_by_kind: dict[str, tuple[float, ...]]  # the same by kind of word (hundreds digit, "hundred", ...), per layer
    examples: list[tuple[str, str]]  # a few (true caption, greedy caption) pairs


def word_kinds(number: int) -> list[str]:
    """The kind of each word of ``number``'s caption: hundreds digit, "hundred", tens, teen or units."""
    kinds = []
    for word, slots in zip(digits.number_words(number), digits.gold_slots(number), strict=True):
        if word == "hundred":
            kinds.append('"hundred"')
        elif len(slots) == 2:
            kinds.append("teen")
        else:
            kinds.append({0: "hundreds digit", 1: "tens", 2: "units"}[slots[0]])
    return kinds


def _rate(hits: list[tuple[str, bool]], kind: str | None = None) -> float:
    chosen = [hit for k, hit in hits if kind in (None, k)]
    return sum(chosen) / len(chosen)


@torch.no_grad()
def evaluate(model: PatchCaptioner, batch: digits.NumberBatch) -> CaptionScores:
    """Exact match of greedy captions and where each word's attention peaks, on ``batch``."""
    layout = model.config.layout
    generated = greedy_caption(model, batch.images)
    truth = [digits.number_words(int(n)) for n in batch.numbers]
    predicted = [digits.decode_caption(row) for row in generated]
    logits, weights = model(batch.images, shift_right(batch.targets), return_weights=True)
    real = batch.targets != digits.PAD
    word_accuracy = float((logits.argmax(-1) == batch.targets)[real].float().mean())
    layer_hits = []  # per layer: (kind of word, peak in a gold slot?) for every word of every true caption
    for layer_weights in weights:
        _, slot = peak_to_digit(layer_weights.mean(dim=1), layout.grid[1], layout.patch, layout.slot)  # (B, T)
        layer_hits.append([(kind, int(slot[b, t]) in gold) for b, number in enumerate(batch.numbers.tolist())
                           for t, (gold, kind) in enumerate(zip(digits.gold_slots(number), word_kinds(number),
                                                                strict=True))])
    return CaptionScores(
        images=len(truth),
        exact_match=sum(p == t for p, t in zip(predicted, truth, strict=True)) / len(truth),
        word_accuracy=word_accuracy,
        peak_on_digit=tuple(_rate(hits) for hits in layer_hits),
        peak_by_kind={kind: tuple(_rate(hits, kind) for hits in layer_hits)
                      for kind in sorted({kind for kind, _ in layer_hits[0]})},
        examples=[(digits.caption_text(t), digits.caption_text(p)) for t, p in zip(truth[:6], predicted[:6],
                                                                                   strict=True)],
    )
