"""Numerical traps of low precision for attention, measured.

Training in bfloat16 (or float16) halves memory and speeds up matrix products on a GPU; attention has
three places where the narrow formats bite, each measured here on the device at hand:

* :func:`fill_table`: hiding keys by writing a large negative number into the scores
  (``scores.masked_fill(~mask, fill)``, then a float32 softmax). Which fills survive the cast to each
  dtype, whether hidden keys get weight 0, and what a query whose *every* key is hidden gets: NaN
  (``-inf``), uniform weights over keys it must not see (a finite fill), or an error (a fill the dtype
  cannot hold).
* :func:`fused_table`: the same fully hidden row through ``F.scaled_dot_product_attention``, one
  kernel (backend) at a time, with a boolean mask and with additive ``-inf`` / ``finfo.min`` masks:
  what each backend returns for that row and what gradient it sends back. Backends without a
  kernel for the device or dtype say so.
* :func:`score_resolution`: bfloat16 keeps 8 significant bits, so large scores are rounded before
  the softmax; the weight error grows with the scores' size (float16 overflows instead).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from xattn_edu.nn.attention import scaled_dot_product_attention

DTYPES = (torch.float32, torch.bfloat16, torch.float16)
BACKENDS = ("MATH", "FLASH_ATTENTION", "EFFICIENT_ATTENTION", "CUDNN_ATTENTION")
_SCORES = torch.tensor([[1.0, 2.0, 3.0, 0.5], [1.0, 2.0, 3.0, 0.5]])  # (2 queries, 4 keys)
_MASK = torch.tensor([[True, True, False, False], [False, False, False, False]])  # row 1: every key hidden


def dtype_name(dtype: torch.dtype) -> str:
    """"float32", "bfloat16", "float16"."""
    return str(dtype).removeprefix("torch.")


def fills(dtype: torch.dtype) -> dict[str, float]:
    """The fill values people write, by how they write them."""
    return {"-inf": float("-inf"), "-1e9": -1e9, "-1e4": -1e4, "finfo(dtype).min": torch.finfo(dtype).min,
            "finfo(float32).min": torch.finfo(torch.float32).min}  # fmt: skip


@dataclass(frozen=True)
class FillRow:
    """What one fill does in one dtype, on the readable path (masked_fill, then a float32 softmax)."""

    dtype: str  # the scores' dtype
    fill: str  # the fill as written
    stored: str  # the value the scores hold after masked_fill, or the error it raised
    hidden_weight: float  # largest weight on a hidden key of a partly hidden row (nan after an error)
    empty_row: str  # what a row with every key hidden gets: "NaN", "uniform over hidden keys", "zeros", "error"


def _empty_row(weights: Tensor) -> str:
    if torch.isnan(weights).any():
        return "NaN"
    if torch.allclose(weights, torch.zeros_like(weights)):
        return "zeros"
    if torch.allclose(weights, torch.full_like(weights, 1.0 / weights.numel()), atol=1e-3):
        return "uniform over hidden keys"
    return "other"


def fill_table(dtypes: tuple[torch.dtype, ...] = DTYPES) -> list[FillRow]:
    """Every fill of :func:`fills` in every dtype: stored value, hidden weight, the empty row, the gradient."""
    rows = []
    for dtype in dtypes:
        for name, value in fills(dtype).items():
            try:
                filled = _SCORES.to(dtype).masked_fill(~_MASK, value)
            except RuntimeError as error:
                message = str(error).split(" without")[0]  # "value cannot be converted to type c10::Half"
                rows.append(FillRow(dtype_name(dtype), name, f"error: {message}", math.nan, "error"))
                continue
            weights = torch.softmax(filled.float(), dim=-1)  # (2, 4), in float32 as autocast and the package do
            rows.append(FillRow(dtype_name(dtype), name, f"{float(filled[1, 0]):.6g}", float(weights[0, 2:].max()),
                                _empty_row(weights[1])))
    return rows


@dataclass(frozen=True)
class FusedRow:
    """What one kernel of ``F.scaled_dot_product_attention`` returns for a query with every key hidden."""

    backend: str  # SDPBackend name, or "xattn (readable)" / "xattn (fused)" for the package's own attention
    dtype: str  # the inputs' dtype
    mask: str  # "boolean", "additive -inf" or "additive finfo.min"
    output: str  # "zeros", "mean of the values" (uniform), "scores ignored the mask", "NaN", "other", or why none
    gradient: str  # the query's gradient for that row: "zero", "finite, nonzero", "NaN", or "" without a result


def _classify_output(row: Tensor, query: Tensor, key: Tensor, value: Tensor) -> str:
    row, tolerance = row.float(), 2e-2
    unmasked = torch.softmax(query.float() @ key.float().T / math.sqrt(query.shape[-1]), dim=-1) @ value.float()
    if torch.isnan(row).any():
        return "NaN"
    if row.abs().max() <= tolerance:
        return "zeros"
    if (row - value.float().mean(0)).abs().max() <= tolerance:
        return "mean of the values (uniform weights)"
    if (row - unmasked).abs().max() <= tolerance:
        return "as if nothing were masked"
    return "other"


def _classify_gradient(grad: Tensor) -> str:
    if torch.isnan(grad).any():
        return "NaN"
    return "zero" if grad.abs().max() == 0 else "finite, nonzero"


def _inputs(dtype: torch.dtype, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    shapes = ((1, 1, 2, 16), (1, 1, 4, 16), (1, 1, 4, 16))  # (B, h, T, Dh): 2 queries, 4 keys
    return tuple(torch.randn(s, generator=g).to(device, dtype).requires_grad_(True) for s in shapes)


def _attn_mask(kind: str, dtype: torch.dtype, device: torch.device) -> Tensor:
    mask = _MASK.to(device)[None, None]  # (1, 1, 2, 4)
    if kind == "boolean":
        return mask
    fill = float("-inf") if kind == "additive -inf" else torch.finfo(dtype).min
    return torch.zeros(mask.shape, dtype=dtype, device=device).masked_fill(~mask, fill)


def _run(attend, dtype: torch.dtype, kind: str, device: torch.device) -> tuple[str, str]:
    query, key, value = _inputs(dtype, device)
    try:
        output = attend(query, key, value, _attn_mask(kind, dtype, device))
    except RuntimeError as error:
        return f"no kernel ({str(error).splitlines()[0][:60]}...)", ""
    output[0, 0, 1].float().sum().backward()
    described = _classify_output(output[0, 0, 1].detach(), query[0, 0, 1].detach(), key[0, 0].detach(),
                                 value[0, 0].detach())  # fmt: skip
    return described, _classify_gradient(query.grad[0, 0, 1])


def fused_table(device: torch.device, dtypes: tuple[torch.dtype, ...] = DTYPES,
                backends: tuple[str, ...] = BACKENDS) -> list[FusedRow]:  # fmt: skip
    """The fully hidden query through each SDPA backend, dtype and mask kind, then through the package's attention."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    rows = []
    kinds = ("boolean", "additive -inf", "additive finfo.min")
    for backend in backends:
        for dtype in dtypes:
            for kind in kinds:
                def attend(q, k, v, m, backend=backend):
                    with sdpa_kernel([getattr(SDPBackend, backend)]):
                        return F.scaled_dot_product_attention(q, k, v, attn_mask=m)

                rows.append(FusedRow(backend, dtype_name(dtype), kind, *_run(attend, dtype, kind, device)))
    for fused in (False, True):
        name = f"xattn ({'fused' if fused else 'readable'})"
        for dtype in dtypes:
            def ours(q, k, v, m, fused=fused):
                return scaled_dot_product_attention(q, k, v, m, fused=fused)

            rows.append(FusedRow(name, dtype_name(dtype), "boolean", *_run(ours, dtype, "boolean", device)))
    return rows


@dataclass(frozen=True)
class ResolutionRow:
    """How far rounding the scores to a narrow dtype moves the attention weights."""

    scale: float  # standard deviation of the scores
    bfloat16_error: float  # max |weight - float32 weight| with the scores rounded to bfloat16
    float16_error: float  # the same for float16 (nan when the scores overflow to inf)


def score_resolution(scales: tuple[float, ...] = (1.0, 10.0, 100.0, 1_000.0, 100_000.0), seed: int = 0,
                     shape: tuple[int, int] = (256, 32)) -> list[ResolutionRow]:  # fmt: skip
    """Softmax (in float32) of scores rounded to bfloat16 and to float16, against float32 scores."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(shape, generator=g)
    rows = []
    for scale in scales:
        scores = scale * base
        exact = torch.softmax(scores, dim=-1)
        errors = [float((torch.softmax(scores.to(dtype).float(), dim=-1) - exact).abs().max())
                  for dtype in (torch.bfloat16, torch.float16)]  # fmt: skip
        rows.append(ResolutionRow(scale, *errors))
    return rows


def summarize_fused(rows: list[FusedRow]) -> list[str]:
    """One line per mask kind: each outcome seen among the SDPA kernels that ran, and where (backend/dtype)."""
    ran = [row for row in rows if row.gradient and not row.backend.startswith("xattn")]
    lines = []
    for kind in dict.fromkeys(row.mask for row in ran):
        outcomes: dict[str, list[str]] = {}
        for row in (r for r in ran if r.mask == kind):
            outcomes.setdefault(f"{row.output}, gradient {row.gradient}", []).append(f"{row.backend}/{row.dtype}")
        lines.append(f"{kind}: " + "; ".join(f"{outcome} ({', '.join(where)})" for outcome, where in outcomes.items()))
    return lines
