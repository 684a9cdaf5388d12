"""Gradient checks for exercises whose output feeds training.

``Exercise(run=with_gradients(wrt=("query", "keys")), ...)`` exercises the student's code (and the
reference, the same way) on float64 tensors that require gradients, and returns
``(result, {name: gradient})``: the gradient of ``sum(output * upstream)`` with respect to each named
input, with a fixed random ``upstream`` of the output's shape. A judge then compares both parts with
the reference's, so an output that is right but not differentiable the same way (``nan_to_num`` over
a NaN, a detached tensor, an in-place write) loses its points.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Sequence
from typing import Any

import torch

from xattn_edu.chapters.support.exercise import Case, Wrong, call


def _bind(implementation: Callable, case: Case) -> inspect.BoundArguments:
    try:
        return inspect.signature(implementation).bind(*case.args, **case.kwargs)
    except (TypeError, ValueError) as error:
        raise Wrong(f"{case.label}: the function does not take these arguments ({error})") from None


def with_gradients(wrt: Sequence[str], *, run: Callable[[Any, Case], Any] = call, upstream_seed: int = 0,
                   output: Callable[[Any], torch.Tensor] = lambda result: result[0] if isinstance(result, tuple)
                   else result) -> Callable[[Any, Case], Any]:
    """A ``run`` for :class:`~xattn_edu.chapters.support.exercise.Exercise` that also returns input gradients.

    Args:
        wrt: names of the implementation's parameters to differentiate with respect to (tensors or arrays).
        run: how to call the implementation once its inputs are prepared (default: with the case's arguments).
        upstream_seed: seed of the fixed upstream gradient.
        output: picks the differentiated tensor out of the result (default: the result, or its first item).

    Returns:
        A run giving ``(result, {name: gradient (float64 tensor)})``; an input the output does not depend
        on gets a zero gradient.
    """

    def run_with_gradients(implementation: Any, case: Case) -> Any:
        bound = _bind(implementation, case)
        leaves = {}
        for name in wrt:
            if name not in bound.arguments:
                raise Wrong(f"{case.label}: the function has no argument named `{name}`; keep the names of the "
                            "exercise's signature")
            value = torch.as_tensor(bound.arguments[name], dtype=torch.float64).detach().clone().requires_grad_(True)
            bound.arguments[name] = leaves[name] = value
        result = run(implementation, dataclasses.replace(case, args=bound.args, kwargs=bound.kwargs))
        differentiated = output(result)
        if not isinstance(differentiated, torch.Tensor) or not differentiated.requires_grad:
            raise Wrong(f"{case.label} should return a torch tensor that carries gradients back to "
                        f"{', '.join(wrt)} (no numpy round trip, no .detach())")
        generator = torch.Generator().manual_seed(upstream_seed)
        upstream = torch.randn(differentiated.shape, generator=generator, dtype=torch.float64)
        grads = torch.autograd.grad((differentiated.double() * upstream).sum(), list(leaves.values()),
                                    allow_unused=True)
        gradients = {name: torch.zeros_like(leaf) if grad is None else grad
                     for (name, leaf), grad in zip(leaves.items(), grads, strict=True)}
        return result, gradients

    return run_with_gradients
