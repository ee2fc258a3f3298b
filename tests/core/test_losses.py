"""core.losses and the methods built from them: each term against a hand computation, and
KgCoOp / BiomedCoOp as configurations of the one prompt module."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from core import losses
from core.prompts import DualPrompt, PromptConfig
from tests.helpers import BRAIN_CLASSES, BRAIN_TEMPLATE


def unit(n, d, seed):
    return F.normalize(torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_terms_match_hand_computations():
    t, target = unit(3, 8, 0), unit(3, 8, 1)
    assert losses.l1_to(t, target).item() == pytest.approx((t - target).abs().mean().item())
    assert losses.mse_to(t, target).item() == pytest.approx(((t - target) ** 2).mean().item())
    cos = (t * target).sum(-1)
    assert losses.cosine_gap(t, target).item() == pytest.approx((1 - cos).mean().item(), rel=1e-6)
    assert losses.cosine_gap(t, t).item() == pytest.approx(0.0, abs=1e-6)
    z, zt = torch.randn(5, 3), torch.randn(5, 3)
    p = zt.softmax(-1)
    expected = (p * (p.log() - z.log_softmax(-1))).sum() / 15
    assert losses.kl_to_teacher(z, zt).item() == pytest.approx(expected.item(), rel=1e-5)


def test_class_means_and_pruning():
    feats = torch.cat([unit(1, 4, s) for s in range(5)])
    owner = [0, 0, 1, 1, 1]
    means = losses.class_means(feats, owner, 2)
    assert torch.allclose(means[0], F.normalize(feats[:2].sum(0), dim=0), atol=1e-6)
    # class 1: two similar sentences and one opposite: the opposite one is pruned
    similar = F.normalize(torch.tensor([[1.0, 0.1, 0, 0], [1.0, -0.1, 0, 0], [-1.0, 0, 0, 0.2]]),
                          dim=-1)
    pruned, kept = losses.pruned_means(torch.cat([feats[:2], similar]), owner, 2)
    assert kept == [2, 2]  # fewer than 3 sentences keep all
    assert torch.allclose(pruned[1], F.normalize(similar[:2].sum(0), dim=0), atol=1e-6)


def test_kgcoop_is_a_configuration_zero_at_the_template(backbones):
    bb = backbones["tiny-biomedclip"]
    dp = DualPrompt(bb, BRAIN_CLASSES, PromptConfig.for_method("kgcoop", BRAIN_TEMPLATE))
    assert dp.vision_prompts.shape[0] == 0 and not dp.cfg.uses_teacher
    feats, labels = unit(4, bb.embed_dim, 0), torch.tensor([0, 1, 2, 3])
    total, parts, logits = dp.loss_and_logits(feats, labels)
    assert parts["kg"] == pytest.approx(0.0, abs=1e-5)
    assert total.item() == pytest.approx(F.cross_entropy(logits, labels).item(), abs=1e-4)
    with torch.no_grad():
        dp.ctx.add_(0.5)
    total, parts, _ = dp.loss_and_logits(feats, labels)
    assert parts["kg"] > 0 and total.item() == pytest.approx(parts["ce"] + 8.0 * parts["kg"],
                                                             rel=1e-4)
    total.backward()
    assert dp.ctx.grad is not None and all(p.grad is None for p in bb.model.parameters())


def test_biomedcoop_is_a_configuration_that_sums_its_parts(backbones):
    bb = backbones["tiny-biomedclip"]
    descriptions = {"glioma": ["an irregular infiltrative mass", "an irregular mass with edema",
                               "an irregular infiltrative mass with edema", "xq zz 99 ## !!"],
                    "meningioma": ["a well defined mass"]}
    cfg = PromptConfig.for_method("biomedcoop", BRAIN_TEMPLATE, lambda_mse=2.0, lambda_kl=0.5)
    dp = DualPrompt(bb, BRAIN_CLASSES, cfg, descriptions)
    feats = unit(4, bb.embed_dim, 1)
    total, parts, logits = dp.loss_and_logits(feats, torch.tensor([0, 1, 2, 3]))
    assert set(parts) == {"ce", "l1", "kl", "mse"} and parts["l1"] == 0.0
    assert total.item() == pytest.approx(parts["ce"] + 2.0 * parts["mse"] + 0.5 * parts["kl"],
                                         rel=1e-4)
    with torch.no_grad():
        text = dp.text_features()
        assert parts["mse"] == pytest.approx(F.mse_loss(text, dp.teacher_features()).item(),
                                             rel=1e-4)
        pruned_logits = dp.logits(feats, dp.pruned_teacher_features())
    assert parts["kl"] == pytest.approx(losses.kl_to_teacher(logits, pruned_logits).item(),
                                        rel=1e-4)


def test_biomed_dpt_defaults_are_the_papers():
    cfg = PromptConfig.for_method("biomed-dpt", BRAIN_TEMPLATE)
    assert (cfg.lambda_l1, cfg.lambda_kl, cfg.n_vision_prompts, cfg.kl_teacher) == \
        (12.5, 0.25, 4, "mean")
    with pytest.raises(Exception, match="Unknown method"):
        PromptConfig.for_method("clip-adapter", BRAIN_TEMPLATE)


def test_per_batch_pruning_keeps_the_sentence_ranks_near_the_mean_score():
    """BiomedCoOp's released pruning by hand: rank i scores mean_b max_c (s f_b . T_ci); the
    ranks within tau standard deviations of the mean score are averaged per class."""
    from core.losses import batch_pruned_means, ranked_sentences

    e = torch.eye(3)
    # two classes, four sentence ranks; rank 3 of class 0 points at the images: an outlier
    sentences = torch.stack([torch.stack([e[1], e[1], e[2], e[0]]),
                             torch.stack([e[2], e[1], e[2], e[2]])])
    images = torch.stack([e[0], e[0]])
    scores = (10 * torch.einsum("bd,csd->bcs", images, sentences)).max(1).values.mean(0)
    assert scores.tolist() == [0, 0, 0, 10]
    keep = (scores - scores.mean()).abs() <= 1.0 * scores.std()
    assert keep.tolist() == [True, True, True, False]
    expected = F.normalize(sentences[:, :3].mean(1), dim=-1)
    assert torch.allclose(batch_pruned_means(sentences, images, 10.0, 1.0), expected)
    # a wide tau keeps every rank
    assert torch.allclose(batch_pruned_means(sentences, images, 10.0, 3.0),
                          F.normalize(sentences.mean(1), dim=-1))
    # a class with fewer sentences repeats its own to fill the ranks
    ranked = ranked_sentences(torch.stack([e[0], e[1], e[2]]), [0, 0, 1], 2)
    assert ranked.shape == (2, 2, 3) and torch.equal(ranked[1], torch.stack([e[2], e[2]]))
