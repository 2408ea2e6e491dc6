"""InfoNCE over in-batch candidates (paper §3.3; one direction, query -> candidates)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from megapairs.train.distributed import gather_with_grad


class InfoNCELoss(nn.Module):
    """L = -1/|Q| sum_i log( exp(q_i . c_i+ / t) / sum_{c in C} exp(q_i . c / t) ).

    Inputs are L2-normalised: `q` (B, D) queries and `c` (B*G, D) candidates grouped per query as
    [positive, hard_negative_1 .. hard_negative_{G-1}] (the first hard negative is the query's own
    image). C is every candidate in the batch: all positives and all hard negatives, so each query
    also sees the other queries' positives and negatives. With `gather=True` under
    torch.distributed, C (and the set of queries) spans all ranks; every rank then computes the
    same global loss with gradients flowing only into its local embeddings, so the ranks' gradients
    must be *summed* (not averaged) to get the exact gradient of the global loss
    (`sync_gradients(average=not loss.gathers)`).
    """

    def __init__(self, temperature: float = 0.02, gather: bool = False) -> None:
        super().__init__()
        self.temperature = temperature
        self.gather = gather

    @property
    def gathers(self) -> bool:
        return self.gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def forward(self, q: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        b = q.shape[0]
        if c.shape[0] % b:
            raise ValueError(f"{c.shape[0]} candidates do not split into groups for {b} queries")
        group = c.shape[0] // b
        if self.gathers:
            q = gather_with_grad(q)  # (W*B, D)
            c = gather_with_grad(c)  # (W*B*G, D)
        logits = q.float() @ c.float().T / self.temperature  # (Bq, Bq*G)
        targets = torch.arange(q.shape[0], device=q.device) * group  # (Bq,) index of each positive
        return F.cross_entropy(logits, targets)
