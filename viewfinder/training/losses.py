"""The three recipes' losses (PaddleClas semantics, PyTorch code).

* classification: cross-entropy with label smoothing (``torch.nn.CrossEntropyLoss``);
* multi-label: :class:`AsymmetricLoss` (Ridnik et al. 2021; PaddleClas ``MultiLabelASL``);
* recognition: cross-entropy + :class:`TripletAngularMarginLoss` (PaddleClas, PP-ShiTuV2_rec).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class AsymmetricLoss(nn.Module):
    """Asymmetric loss for multi-label classification.

    Positives: ``-(1 - p)^gamma_pos * log(p)``. Negatives: the probability is shifted down by
    ``clip`` (``p_m = max(p - clip, 0)``) and weighted ``p_m^gamma_neg * -log(1 - p_m)``, so
    easy negatives, which dominate multi-label batches, barely count. As in PaddleClas
    (``disable_focal_loss_grad``) the focusing weights get no gradient. Summed over classes,
    averaged over the batch (PaddleClas sums over both; dividing by the batch keeps the
    learning rate independent of the batch size).
    """

    def __init__(self, gamma_pos: float = 0.0, gamma_neg: float = 4.0, clip: float = 0.05, eps: float = 1e-8) -> None:
        super().__init__()
        self.gamma_pos, self.gamma_neg, self.clip, self.eps = gamma_pos, gamma_neg, clip, eps

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        targets = targets.to(logits.dtype)
        p_pos = torch.sigmoid(logits)
        p_neg = 1.0 - p_pos
        if self.clip > 0:
            p_neg = (p_neg + self.clip).clamp(max=1.0)
        loss = targets * torch.log(p_pos.clamp(min=self.eps)) + (1 - targets) * torch.log(p_neg.clamp(min=self.eps))
        if self.gamma_pos > 0 or self.gamma_neg > 0:
            with torch.no_grad():
                pt = p_pos * targets + p_neg * (1 - targets)
                gamma = self.gamma_pos * targets + self.gamma_neg * (1 - targets)
                weight = torch.pow(1 - pt, gamma)
            loss = loss * weight
        return -loss.sum() / max(1, logits.shape[0])


class TripletAngularMarginLoss(nn.Module):
    """PaddleClas ``TripletAngularMarginLoss`` with batch-hard mining on cosine similarity.

    For each anchor: ``s_ap`` = the least similar positive, ``s_an`` = the most similar
    negative; loss = ``mean(max(0, s_an - s_ap + margin))`` plus, with ``add_absolute``,
    ``absolute_loss_weight * (mean(max(0, ap_value - s_ap)) + mean(max(0, s_an - an_value)))``
    which also pulls positives above ``ap_value`` and pushes negatives below ``an_value``.
    (PaddleClas fills the satisfied negative terms with 1 instead of 0; a constant, so the
    gradients are the same.) Anchors without a positive or a negative in the batch are
    skipped; a P x K sampler guarantees both.
    """

    def __init__(self, margin: float = 0.5, normalize_feature: bool = True, add_absolute: bool = True,
                 absolute_loss_weight: float = 0.1, ap_value: float = 0.8, an_value: float = 0.4) -> None:
        super().__init__()
        self.margin, self.normalize_feature = margin, normalize_feature
        self.add_absolute, self.absolute_loss_weight = add_absolute, absolute_loss_weight
        self.ap_value, self.an_value = ap_value, an_value

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        features = features.float()
        if self.normalize_feature:
            features = F.normalize(features, p=2, dim=1)
        similarity = features @ features.t()
        same = labels.view(-1, 1) == labels.view(1, -1)
        eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
        positive = same & ~eye
        negative = ~same
        valid = positive.any(dim=1) & negative.any(dim=1)
        if not valid.any():
            return features.sum() * 0.0  # keeps the graph; nothing to learn from this batch
        big = torch.finfo(similarity.dtype).max
        s_ap = similarity.masked_fill(~positive, big).min(dim=1).values[valid]
        s_an = similarity.masked_fill(~negative, -big).max(dim=1).values[valid]
        loss = F.relu(s_an - s_ap + self.margin).mean()
        if self.add_absolute:
            absolute = F.relu(self.ap_value - s_ap).mean() + F.relu(s_an - self.an_value).mean()
            loss = loss + self.absolute_loss_weight * absolute
        return loss
