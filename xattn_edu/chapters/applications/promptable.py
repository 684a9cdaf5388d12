"""A promptable segmenter in the shape of SAM's mask decoder, small enough to train on a CPU in minutes.

Kirillov et al. 2023 ("Segment Anything", section 3) split the work in three: a heavy image encoder
run once per image, a prompt encoder, and a light two-way transformer decoder. This toy keeps the
structure, with every attention module the package's :class:`~xattn_edu.nn.heads.MultiHeadAttention`:

* **image encoder**: the 24 x 24 scene is cut into 4 x 4 patches (``patchify``), each embedded by a
  linear map plus the Fourier encoding of its centre, then two self-attention layers;
* **prompt encoder**: each prompt token is the Fourier encoding of its (x, y) plus a learned vector for
  its kind (point, box corner, not-a-point). Prompt and patches share one positional encoding, so a
  token can find "the patches near my point" by comparing positions;
* **two-way decoder**: tokens (the learned mask tokens, then the prompt) attend to themselves, then
  to the patches (cross-attention, queries = tokens); the patches then attend back to the tokens
  (cross-attention, queries = patches). A last token → patch attention follows;
* **mask head**: each patch vector is unfolded into p x p pixel vectors, and every pixel's logit is the
  dot product of its vector with a small MLP of a mask token.

With ``n_masks`` > 1 the decoder writes several masks for one prompt and training scores only the best
of them (SAM's answer to ambiguous prompts: its model writes three masks and is trained on the best).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xattn_edu.chapters.applications import shapes
from xattn_edu.chapters.applications.reference import patchify
from xattn_edu.chapters.applications.training import FitConfig, FitResult, fit
from xattn_edu.nn.heads import MultiHeadAttention
from xattn_edu.nn.model import EncoderLayer, FeedForward, Seq2SeqConfig


@dataclass(frozen=True)
class SegmenterConfig:
    """Shape of a :class:`PromptableSegmenter`."""

    scene: shapes.SceneConfig = field(default_factory=shapes.SceneConfig)  # image and patch size
    d_model: int = 64  # D, width of patch and token vectors
    n_heads: int = 4  # h
    encoder_layers: int = 2  # self-attention layers over the patches
    decoder_layers: int = 2  # two-way layers
    d_ff: int = 128  # feed-forward hidden width
    pixel_dim: int = 16  # width of the per-pixel vectors of the mask head
    n_masks: int = 1  # masks written per prompt (SAM writes 3)
    fourier_scale: float = 3.0  # spread of the random frequencies of the positional encoding


class FourierPositions(nn.Module):
    """Random Fourier features of (x, y) in [0, 1]^2 (SAM's ``PositionEmbeddingRandom``): (..., 2) → (..., D)."""

    def __init__(self, d_model: int, scale: float, seed: int = 0):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.register_buffer("frequencies", scale * torch.randn(2, d_model // 2, generator=generator))

    def forward(self, xy: Tensor) -> Tensor:
        angles = 2 * math.pi * (xy @ self.frequencies)  # (..., D/2)
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class TwoWayLayer(nn.Module):
    """Tokens: self-attention, token → patch cross-attention, MLP; then patch → token cross-attention.

    Positional vectors are added to queries and keys (never to values) at every attention, as in SAM.
    """

    def __init__(self, config: SegmenterConfig):
        super().__init__()
        d, h = config.d_model, config.n_heads
        self.self_attn, self.to_image, self.to_tokens = (MultiHeadAttention(d, h) for _ in range(3))
        self.mlp = FeedForward(d, config.d_ff, 0.0, "relu")
        self.norms = nn.ModuleList(nn.LayerNorm(d) for _ in range(4))

    def forward(self, tokens: Tensor, image: Tensor, token_pe: Tensor, image_pe: Tensor
                ) -> tuple[Tensor, Tensor, Tensor]:
        """tokens (B, T, D), image (B, N, D) → (tokens, image, token → patch weights (B, h, T, N))."""
        tokens = self.norms[0](tokens + self.self_attn(tokens, query_pos=token_pe, key_pos=token_pe))
        read, weights = self.to_image(tokens, context=image, query_pos=token_pe, key_pos=image_pe,
                                      return_weights=True)
        tokens = self.norms[1](tokens + read)
        tokens = self.norms[2](tokens + self.mlp(tokens))
        image = self.norms[3](image + self.to_tokens(image, context=tokens, query_pos=image_pe, key_pos=token_pe))
        return tokens, image, weights


def unpatchify(vectors: Tensor, patch: int, rows: int) -> Tensor:
    """(B, N, p*p*C) patch vectors → (B, H, W, C) pixel vectors; the inverse of ``patchify``'s layout."""
    batch, n, width = vectors.shape
    cols, channels = n // rows, width // (patch * patch)
    grid = vectors.reshape(batch, rows, cols, patch, patch, channels)  # (B, rows, cols, p, p, C)
    return grid.permute(0, 1, 3, 2, 4, 5).reshape(batch, rows * patch, cols * patch, channels)


@dataclass(frozen=True)
class Segmentation:
    """What the segmenter returns for a batch of prompts."""

    logits: Tensor  # (B, K, H, W) mask logits, K = n_masks
    attention: Tensor  # (B, h, T, N) last token → patch weights; token 0.. K-1 are mask tokens, then the prompt


class PromptableSegmenter(nn.Module):
    """Image encoder, prompt encoder and two-way decoder (see the module docstring)."""

    def __init__(self, config: SegmenterConfig = SegmenterConfig()):
        super().__init__()
        self.config = config
        scene, d = config.scene, config.d_model
        self.rows = scene.size // scene.patch
        centres = (torch.stack(torch.meshgrid(torch.arange(self.rows), torch.arange(self.rows), indexing="ij"), -1)
                   .flip(-1).reshape(-1, 2) + 0.5) / self.rows  # (N, 2) patch centres (x, y) in [0, 1]
        self.register_buffer("centres", centres)
        self.positions = FourierPositions(d, config.fourier_scale)
        self.patch_embed = nn.Linear(scene.patch ** 2, d)
        layer = Seq2SeqConfig(src_vocab=1, tgt_vocab=1, d_model=d, n_heads=config.n_heads, d_ff=config.d_ff,
                              dropout=0.0)
        self.encoder = nn.ModuleList(EncoderLayer(layer) for _ in range(config.encoder_layers))
        self.kind_embed = nn.Embedding(shapes.PROMPT_KINDS, d)
        self.mask_tokens = nn.Parameter(0.1 * torch.randn(config.n_masks, d))
        self.decoder = nn.ModuleList(TwoWayLayer(config) for _ in range(config.decoder_layers))
        self.final_attn = MultiHeadAttention(d, config.n_heads)
        self.final_norm = nn.LayerNorm(d)
        self.upscale = nn.Linear(d, scene.patch ** 2 * config.pixel_dim)
        self.hyper = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, config.pixel_dim))

    def encode_image(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images (B, H, W) → (patch vectors (B, N, D), their positional vectors (1, N, D))."""
        patches, _ = patchify(images, self.config.scene.patch)  # (B, N, P)
        image_pe = self.positions(self.centres).unsqueeze(0)  # batch first, shared by every image
        x = self.patch_embed(patches) + image_pe
        for layer in self.encoder:
            x = layer(x, None)
        return x, image_pe

    def encode_prompt(self, xy: Tensor, kind: Tensor) -> Tensor:
        """xy (B, Tp, 2) pixels, kind (B, Tp) → prompt vectors (B, Tp, D); not-a-point tokens carry no position."""
        position = self.positions(xy / self.config.scene.size) * (kind != shapes.NOT_A_POINT)[..., None]
        return position + self.kind_embed(kind)

    def forward(self, images: Tensor, xy: Tensor, kind: Tensor) -> Segmentation:
        """images (B, H, W), prompt xy (B, Tp, 2) and kind (B, Tp) → :class:`Segmentation`."""
        image, image_pe = self.encode_image(images)
        prompt = self.encode_prompt(xy, kind)
        token_pe = torch.cat([self.mask_tokens.expand(len(images), -1, -1), prompt], dim=1)  # (B, K + Tp, D)
        tokens = token_pe
        for layer in self.decoder:
            tokens, image, _ = layer(tokens, image, token_pe, image_pe)
        read, weights = self.final_attn(tokens, context=image, query_pos=token_pe, key_pos=image_pe,
                                        return_weights=True)
        tokens = self.final_norm(tokens + read)
        scene = self.config.scene
        pixels = unpatchify(self.upscale(image), scene.patch, self.rows)  # (B, H, W, C)
        hyper = self.hyper(tokens[:, : self.config.n_masks])  # (B, K, C)
        return Segmentation(torch.einsum("bhwc,bkc->bkhw", pixels, hyper), weights)


def mask_loss(logits: Tensor, target: Tensor) -> Tensor:
    """Per-pixel binary cross-entropy, keeping for each example only its best mask: logits (B, K, H, W)."""
    per_mask = F.binary_cross_entropy_with_logits(logits, target[:, None].float().expand_as(logits),
                                                  reduction="none").mean(dim=(-1, -2))  # (B, K)
    return per_mask.min(dim=1).values.mean()


def train_segmenter(config: SegmenterConfig, fit_config: FitConfig, batch_size: int = 48,
                    data_seed: int = 0) -> tuple[PromptableSegmenter, FitResult]:
    """A segmenter trained on fresh random scenes and prompts at every step."""
    torch.manual_seed(fit_config.seed)
    model = PromptableSegmenter(config)

    def step_loss(step: int) -> Tensor:
        batch = shapes.make_scenes(batch_size, seed=data_seed * 1_000_003 + step, config=config.scene)
        return mask_loss(model(batch.images, batch.prompt_xy, batch.prompt_kind).logits, batch.masks)

    return model, fit(model, step_loss, fit_config)


def iou(predicted: Tensor, target: Tensor) -> Tensor:
    """Intersection over union of boolean masks (..., H, W) → (...); 1 when both are empty."""
    inter = (predicted & target).sum(dim=(-1, -2)).float()
    union = (predicted | target).sum(dim=(-1, -2)).float()
    return torch.where(union > 0, inter / union.clamp(min=1), torch.ones_like(union))
