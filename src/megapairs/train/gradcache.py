"""Gradient caching (GradCache, Gao et al. 2021): large contrastive batches in bounded memory.

The loss couples every query with every candidate, so the batch cannot simply be split into
micro-batches. Instead:

1. embed all queries and candidates chunk by chunk *without* building graphs -> reps (N, D);
2. compute the loss on the cached reps (as leaves) and backprop it to get dL/d(rep) (N, D);
3. for each chunk again: re-embed *with* a graph and backprop dL/d(rep) of that chunk into the
   parameters (gradients accumulate across chunks).

The parameter gradients equal those of the full-batch loss (same math, different order of sums).
Each chunk's RNG state (CPU and CUDA) is recorded in step 1 and replayed in step 3, so dropout masks
match. Peak activation memory is that of one chunk.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable

import torch

from megapairs.models.common import Inputs, batch_len, slice_inputs


class _RngState:
    def __init__(self, device: torch.device) -> None:
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
        self.device = device

    @contextlib.contextmanager
    def replay(self):
        devices = [self.device] if self.cuda is not None else []
        with torch.random.fork_rng(devices=devices):
            torch.set_rng_state(self.cpu)
            if self.cuda is not None:
                torch.cuda.set_rng_state(self.cuda, self.device)
            yield


def _chunks(n: int, size: int) -> list[tuple[int, int]]:
    return [(i, min(i + size, n)) for i in range(0, n, size)]


def grad_cache_backward(model: torch.nn.Module, query: Inputs, candidate: Inputs,
                        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], chunk_size: int, *,
                        autocast: Callable[[], Any] = contextlib.nullcontext,
                        scale: Callable[[torch.Tensor], torch.Tensor] = lambda x: x) -> torch.Tensor:
    """Accumulate into `.grad` the gradients of `loss_fn(model(**query), model(**candidate))`;
    return the (detached) loss. `scale` is applied to the loss before backward (fp16 loss scaling)."""
    device = next(model.parameters()).device
    cached: dict[str, tuple[torch.Tensor, list[tuple[int, int]], list[_RngState]]] = {}
    for name, inputs in (("query", query), ("candidate", candidate)):
        spans = _chunks(batch_len(inputs), chunk_size)
        reps, states = [], []
        with torch.no_grad():
            for start, stop in spans:
                states.append(_RngState(device))
                with autocast():
                    reps.append(model(**slice_inputs(inputs, start, stop)).float())  # (n, D)
        cached[name] = (torch.cat(reps).requires_grad_(True), spans, states)  # (N, D) leaf

    loss = loss_fn(cached["query"][0], cached["candidate"][0])
    scale(loss).backward()  # -> d loss / d rep on the cached leaves

    for name, inputs in (("query", query), ("candidate", candidate)):
        reps, spans, states = cached[name]
        grad = reps.grad  # (N, D)
        for (start, stop), state in zip(spans, states):
            with state.replay(), autocast():
                rep = model(**slice_inputs(inputs, start, stop)).float()  # (n, D), with graph
            rep.backward(gradient=grad[start:stop])
    return loss.detach()
