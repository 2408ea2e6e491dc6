"""A trainable text-conditioned combiner for the offline retriever's composed queries.

The sum `normalize(i + w t)` of a fixed image vector and a fixed sentence vector adds the same
text vector to every image: it can pull towards "red things" but cannot express an edit whose
effect depends on the image ("the same, but green": drop the query's own colour; "mirror it": flip
whichever way it faces). Following the Combiner pattern of CLIP4Cir (Baldrati et al. 2022), an MLP
sees both inputs at once and writes a residual plus a per-query mixing weight:

    h   = ReLU(W_m [ReLU(W_i [f, i]) ; ReLU(W_t s)])      f: normalised pooled EfficientNet (1280),
    λ   = sigmoid(w_λ · h + b_λ)                           i: the image embedding (384),
    out = W_o h                                            s: the MiniLM sentence (384),
    q   = normalize(out + λ i + (1 − λ) w t)               t: the text embedding, w its weight

The image side gets the 1280-d pooled features, not only the 384-d label-bridge embedding: colour
and orientation are in the features, not in the ImageNet class probabilities. `W_o`, `w_λ` and
`b_λ` start at zero, so at init out = 0 and λ = 1/2, and q = normalize(i/2 + w t/2) =
normalize(i + w t): exactly the sum fusion. Training moves away from it only as far as the loss
asks. Candidates (images alone) never pass through it.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

IMAGE_FEATURES = 1280  # EfficientNet-Lite0 pooled features
EMBED_DIM = 384  # MiniLM sentence / the retriever's embedding


class Combiner(nn.Module):
    def __init__(self, hidden: int = 512, dropout: float = 0.1, image_dim: int = IMAGE_FEATURES,
                 embed_dim: int = EMBED_DIM) -> None:
        super().__init__()
        self.hidden = hidden
        self.image_in = nn.Sequential(nn.Linear(image_dim + embed_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.text_in = nn.Sequential(nn.Linear(embed_dim, hidden), nn.ReLU(), nn.Dropout(dropout))
        self.mix = nn.Sequential(nn.Linear(2 * hidden, 2 * hidden), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(2 * hidden, embed_dim)
        self.gate = nn.Linear(2 * hidden, 1)
        for layer in (self.out, self.gate):  # residual starts at 0, λ at 1/2: the sum fusion
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(self, feats: torch.Tensor, img: torch.Tensor, sent: torch.Tensor, txt: torch.Tensor,
                text_weight: torch.Tensor) -> torch.Tensor:
        """feats (B, 1280) normalised pooled features, img (B, 384) image embedding, sent (B, 384)
        sentence, txt (B, 384) text embedding -> composed query (B, 384), L2-normalised."""
        h = self.mix(torch.cat([self.image_in(torch.cat([feats, img], dim=-1)), self.text_in(sent)], dim=-1))
        lam = torch.sigmoid(self.gate(h))  # (B, 1)
        return F.normalize(self.out(h) + lam * img + (1 - lam) * text_weight * txt, dim=-1)  # (B, 384)
