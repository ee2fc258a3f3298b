"""The loss terms of the prompt-learning methods, as pure functions of tensors.

Every method here is one configuration of the same prompt module (`PromptConfig.for_method`),
differing only in which terms carry weight:

| method      | loss                                                                 |
|-------------|----------------------------------------------------------------------|
| CoOp        | CE                                                                   |
| KgCoOp      | CE + lambda_kg * mean_c (1 - cos(t_c, template feature of c))        |
| BiomedCoOp  | CE + lambda_mse * MSE(t, description means) + lambda_kl * KL(pruned)  |
| Biomed-DPT  | CE + lambda_l1 * L1(t, teacher) + lambda_kl * KL(teacher)              |

`t` are the learned prompts' text features (C, D), the teacher the per-class mean of the class
descriptions' features; KL is KL(teacher logits || student logits) on the batch's images. All of
it runs in fp32 (callers switch autocast off).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


def l1_to(text: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference between the learned and the target text features."""
    return (text.float() - target.float()).abs().mean()


def mse_to(text: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared difference between the learned and the target text features."""
    return F.mse_loss(text.float(), target.float())


def cosine_gap(text: torch.Tensor, anchor: torch.Tensor) -> torch.Tensor:
    """KgCoOp's term: mean over classes of 1 - cos(learned, anchor); both L2-normalised."""
    return (1 - (text.float() * anchor.float()).sum(dim=-1)).mean()


def kl_to_teacher(logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) over the classes, summed and divided by the number of logits
    (the released code's normalisation: 'batchmean' divided again by the classes)."""
    return F.kl_div(F.log_softmax(logits.float(), dim=-1),
                    F.log_softmax(teacher_logits.float(), dim=-1),
                    reduction="sum", log_target=True) / logits.numel()


def class_means(features: torch.Tensor, owner: Sequence[int], n_classes: int) -> torch.Tensor:
    """(C, D) L2-normalised per-class mean of L2-normalised sentence features; `owner[i]` is
    the class of sentence i."""
    index = torch.as_tensor(list(owner), device=features.device)
    summed = torch.zeros(n_classes, features.shape[1], device=features.device)
    summed.index_add_(0, index, features.float())
    return F.normalize(summed, dim=-1)


def pruned_means(features: torch.Tensor, owner: Sequence[int], n_classes: int
                 ) -> tuple[torch.Tensor, list[int]]:
    """BiomedCoOp's outlier pruning, done once: per class, drop the sentences whose cosine to
    the class mean is below the mean minus one standard deviation of those cosines (classes with
    fewer than 3 sentences keep all); (C, D) normalised means of what is kept, and the count
    kept per class."""
    owner_t = torch.as_tensor(list(owner), device=features.device)
    means = class_means(features, owner, n_classes)
    keep = torch.ones(len(owner), dtype=torch.bool, device=features.device)
    for c in range(n_classes):
        mine = (owner_t == c).nonzero().flatten()
        if len(mine) >= 3:
            cosine = features[mine].float() @ means[c]
            keep[mine] = cosine >= cosine.mean() - cosine.std()
    kept_owner = owner_t[keep].tolist()
    counts = [int((owner_t[keep] == c).sum()) for c in range(n_classes)]
    return class_means(features[keep], kept_owner, n_classes), counts


def ranked_sentences(features: torch.Tensor, owner: Sequence[int], n_classes: int) -> torch.Tensor:
    """(C, S, D) the sentence features of each class by rank; a class with fewer than the most
    (S) repeats its own from the first, so every rank has a sentence of every class."""
    per_class = [features[[i for i, c in enumerate(owner) if c == k]] for k in range(n_classes)]
    most = max(len(p) for p in per_class)
    return torch.stack([p[torch.arange(most) % len(p)] for p in per_class])


def batch_pruned_means(sentences: torch.Tensor, image_feats: torch.Tensor, logit_scale: float,
                       tau: float) -> torch.Tensor:
    """BiomedCoOp's per-batch pruning (released code): sentence rank i scores the batch's mean
    of its best class logit, s_i = mean_b max_c (scale * f_b . T_ci); the ranks with
    |s_i - mean(s)| <= tau * std(s) (unbiased std) are averaged per class and normalised. (The
    released code standardises the scores by their median and median absolute deviation
    first; that cancels out of the mask.) All ranks are kept when the scores do not vary."""
    logits = logit_scale * torch.einsum("bd,csd->bcs", image_feats.float(), sentences.float())
    scores = logits.max(dim=1).values.mean(dim=0)  # (S,)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if scores.numel() > 1:
        spread = scores.std()
        if spread > 0:
            keep = (scores - scores.mean()).abs() <= tau * spread
    if not keep.any():
        keep[:] = True
    return F.normalize(sentences[:, keep].float().mean(dim=1), dim=-1)
