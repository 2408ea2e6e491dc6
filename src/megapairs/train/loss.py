"""InfoNCE over in-batch candidates (paper §3.3; one direction, query -> candidates)."""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from megapairs.train.distributed import gather_with_grad, gather_without_grad


class InfoNCELoss(nn.Module):
    """L = -1/|Q| sum_i log( exp(q_i . c_i+ / t) / sum_{c in C_i} exp(q_i . c / t) ).

    Inputs are L2-normalised: `q` (B, D) queries and `c` (B*G, D) candidates grouped per query as
    [positive, hard_negative_1 .. hard_negative_{G-1}] (the first hard negative is the query's own
    image). C is every candidate in the batch: all positives and all hard negatives, so each query
    also sees the other queries' positives and negatives. With `candidate_ids` (B*G,) int64 image
    ids, C_i leaves out every other copy of query i's positive image (another row's identical
    target, a sibling row's hard negative, a top-up positive): a copy of the positive is not a
    negative, and a perfect model then reaches loss 0. Without ids, C_i = C.

    With `gather=True` under torch.distributed, C (and the set of queries, and the ids) spans all
    ranks; every rank then computes the same global loss with gradients flowing only into its
    local embeddings, so the ranks' gradients must be *summed* (not averaged) to get the exact
    gradient of the global loss (`sync_gradients(average=not loss.gathers)`).
    """

    def __init__(self, temperature: float = 0.02, gather: bool = False) -> None:
        super().__init__()
        self.temperature = temperature
        self.gather = gather

    @property
    def gathers(self) -> bool:
        return self.gather and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1

    def forward(self, q: torch.Tensor, c: torch.Tensor, candidate_ids: torch.Tensor | None = None,
                query_mask: torch.Tensor | None = None) -> torch.Tensor:
        """`query_mask` (B,) bool: only these queries count (the mean over them; 0 when none)."""
        b = q.shape[0]
        if c.shape[0] % b:
            raise ValueError(f"{c.shape[0]} candidates do not split into groups for {b} queries")
        if candidate_ids is not None and candidate_ids.shape != (c.shape[0],):
            raise ValueError(f"candidate_ids has shape {tuple(candidate_ids.shape)}, expected ({c.shape[0]},)")
        group = c.shape[0] // b
        if self.gathers:
            q = gather_with_grad(q)  # (W*B, D)
            c = gather_with_grad(c)  # (W*B*G, D)
            if candidate_ids is not None:
                candidate_ids = gather_without_grad(candidate_ids.to(c.device))  # (W*B*G,)
            if query_mask is not None:
                query_mask = gather_without_grad(query_mask.to(c.device))  # (W*B,)
        logits = q.float() @ c.float().T / self.temperature  # (Bq, Bq*G)
        targets = torch.arange(q.shape[0], device=q.device) * group  # (Bq,) index of each positive
        if candidate_ids is not None:
            logits = logits.masked_fill(positive_copies(candidate_ids.to(c.device), group), float("-inf"))
        if query_mask is None:
            return F.cross_entropy(logits, targets)
        per_query = F.cross_entropy(logits, targets, reduction="none")  # (Bq,)
        mask = query_mask.to(per_query.device)
        return (per_query * mask).sum() / mask.sum().clamp(min=1)


def positive_copies(candidate_ids: torch.Tensor, group: int) -> torch.Tensor:
    """(Bq, Bq*G) bool: candidate j is the same image as query i's positive, in a slot other than
    the positive's own (i*G). `candidate_ids` (Bq*G,) is grouped per query, positive first."""
    pos = candidate_ids[::group]  # (Bq,)
    same = pos[:, None] == candidate_ids[None, :]  # (Bq, Bq*G)
    own = torch.arange(pos.shape[0], device=same.device) * group
    same[torch.arange(pos.shape[0], device=same.device), own] = False
    return same
