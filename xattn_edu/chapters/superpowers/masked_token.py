"""A masked token predicted by cross-attention to a context sequence holding one correlated token.

Each example has a hidden Gaussian target Y and a context sequence of ``K`` tokens: at position 0 a
token made from X, correlated with Y by ``rho``; at the others, independent distractors. Every value is
turned into one of ``V`` tokens by the quantiles of N(0, 1) (so each token is equally likely). The
model has one query, a learned [MASK] vector on the target side; it cross-attends to the context
tokens (keys and values from the context sequence, :class:`~xattn_edu.nn.heads.MultiHeadAttention`
with ``context=``) and predicts Y's token from what it read.

:func:`measure_masked_token` trains one model per rho and reports, on fresh examples,

* the cross-entropy and its reduction below ``log V`` (what a model without context pays), against
  the information limit ``I(Y_token; X_token)`` and the Gaussian ``-0.5 * log(1 - rho**2)``;
* the share of the variance of Y's value removed by the model's predicted mean, against ``rho**2``;
* the attention weight the [MASK] query puts on the correlated token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from xattn_edu.nn.heads import MultiHeadAttention

_NORMAL = torch.distributions.Normal(0.0, 1.0)


def token_edges(vocab: int) -> Tensor:
    """The V - 1 inner bin edges that cut N(0, 1) into V equally likely tokens, (V - 1,) float64."""
    return _NORMAL.icdf(torch.arange(1, vocab, dtype=torch.float64) / vocab)


def token_values(vocab: int) -> Tensor:
    """E[Z | Z in bin v] for Z ~ N(0, 1) and each of the V bins, (V,) float64: the value a token stands for."""
    edges = torch.cat([torch.tensor([-math.inf]), token_edges(vocab), torch.tensor([math.inf])]).double()
    density = torch.exp(_NORMAL.log_prob(edges.clamp(-40, 40))).double()  # phi at each edge (0 at +-inf)
    return vocab * (density[:-1] - density[1:])


def tokenize(values: Tensor, vocab: int) -> Tensor:
    """Gaussian values (any shape) -> token ids 0..V-1 of the same shape."""
    return torch.bucketize(values.double(), token_edges(vocab))


def masked_batch(batch: int, rho: float, generator: torch.Generator, context: int = 4, vocab: int = 16):
    """A batch: context tokens (B, K), position 0 correlated with the target; target tokens (B,); target values (B,)."""
    target = torch.randn(batch, generator=generator, dtype=torch.float64)  # (B,)
    noise = torch.randn(batch, context, generator=generator, dtype=torch.float64)  # (B, K)
    related = rho * target + math.sqrt(1.0 - rho**2) * noise[:, 0]
    values = torch.cat([related[:, None], noise[:, 1:]], dim=1)  # (B, K): distractors are independent
    return tokenize(values, vocab), tokenize(target, vocab), target


def information_limit(rho: float, vocab: int = 16, samples: int = 1_000_000, seed: int = 0) -> float:
    """I(Y_token; X_token) in nats from the empirical joint of the tokens: the most a model can save."""
    generator = torch.Generator().manual_seed(seed)
    context, target, _ = masked_batch(samples, rho, generator, context=1, vocab=vocab)
    joint = torch.bincount(context[:, 0] * vocab + target, minlength=vocab * vocab).double().reshape(vocab, vocab)
    joint = joint / joint.sum()
    outer = joint.sum(1, keepdim=True) * joint.sum(0, keepdim=True)
    inside = joint > 0
    return float((joint[inside] * torch.log(joint[inside] / outer[inside])).sum())


class MaskedReader(nn.Module):
    """One [MASK] query cross-attends to the context tokens, then a small MLP predicts the target token.

    ``forward(context)``: (B, K) token ids -> (logits (B, V), attention weights (B, h, 1, K)).
    """

    def __init__(self, vocab: int = 16, context: int = 4, d_model: int = 32, n_heads: int = 2):
        super().__init__()
        self.tokens = nn.Embedding(vocab, d_model)
        self.positions = nn.Parameter(0.1 * torch.randn(context, d_model))  # learned: which slot holds the evidence
        self.mask_query = nn.Parameter(0.1 * torch.randn(1, 1, d_model))
        self.cross_attn = MultiHeadAttention(d_model, n_heads)
        self.head = nn.Sequential(nn.Linear(d_model, 2 * d_model), nn.ReLU(), nn.Linear(2 * d_model, vocab))

    def forward(self, context: Tensor) -> tuple[Tensor, Tensor]:
        memory = self.tokens(context) + self.positions  # (B, K, D)
        query = self.mask_query.expand(len(context), 1, -1)  # (B, 1, D)
        read, weights = self.cross_attn(query, context=memory, return_weights=True)  # (B, 1, D), (B, h, 1, K)
        return self.head(query[:, 0] + read[:, 0]), weights


@dataclass(frozen=True)
class MaskedRow:
    """One trained model at one rho, measured on fresh examples."""

    rho: float  # correlation of the context token's value with the target's
    cross_entropy: float  # nats per masked token (log V = no information)
    loss_reduction: float  # log V - cross_entropy
    information_limit: float  # I(Y_token; X_token): the largest possible reduction
    gaussian_information: float  # -0.5 log(1 - rho**2): the same for the unquantised values
    variance_removed: float  # 1 - mean((Y - predicted mean value)**2) / Var(Y)
    weight_on_evidence: float  # mean attention weight (over heads and examples) on the correlated token


def train_reader(rho: float, steps: int, *, vocab: int = 16, context: int = 4, batch: int = 256, lr: float = 3e-3,
                 seed: int = 0) -> MaskedReader:
    """Train a :class:`MaskedReader` on examples of correlation ``rho`` with Adam."""
    torch.manual_seed(seed)
    model = MaskedReader(vocab, context)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    generator = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        tokens, target, _ = masked_batch(batch, rho, generator, context, vocab)
        loss = F.cross_entropy(model(tokens)[0], target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return model


def measure_masked_token(rhos=(0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95), steps: int = 400, test: int = 20_000,
                         vocab: int = 16, context: int = 4, seed: int = 0) -> list[MaskedRow]:
    """Train one reader per rho and measure it on ``test`` fresh examples (see the module docstring)."""
    rows = []
    for rho in rhos:
        model = train_reader(rho, steps, vocab=vocab, context=context, seed=seed)
        tokens, target, value = masked_batch(test, rho, torch.Generator().manual_seed(seed + 2), context, vocab)
        with torch.no_grad():
            logits, weights = model(tokens)
        cross_entropy = float(F.cross_entropy(logits, target))
        predicted = torch.softmax(logits.double(), dim=-1) @ token_values(vocab)  # (B,) predicted mean value
        removed = 1.0 - float(((value - predicted) ** 2).mean() / value.var())
        rows.append(MaskedRow(rho, cross_entropy, math.log(vocab) - cross_entropy, information_limit(rho, vocab),
                              -0.5 * math.log(1.0 - rho**2), removed, float(weights[..., 0].mean())))
    return rows
