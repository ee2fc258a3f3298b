"""Does batching the text steps of concurrent sessions pay? `python -m benchmarks.text_batching`
prints one JSON line.

Each session's tuning step is one pass of the frozen text tower over its few class prompts
(4 classes: 4 sequences of ~13 tokens), forward and backward to its own context vectors. The
weights are shared, and one session's step is far from filling the hardware (on a CPU the
step is memory-bound: the weights are read three times for 52 tokens). This times, for S
sessions, S separate steps against one pass over all S x C prompts (padded to the longest,
each session's loss on its own rows, the sum backward: the gradients are each session's own),
on BiomedCLIP's full architecture at random weights, and checks the gradients agree.
"""
from __future__ import annotations

import argparse
import json

import torch
import torch.nn.functional as F

from benchmarks.engine import CLASSNAMES, best_of, cpu_name
from core.backbone import autocast, load_backbone, resolve_precision
from core.prompts import DualPrompt, PromptConfig

TEMPLATES = ["a MR photo of a {} in the brain.", "an MRI scan showing {}.",
             "a brain MR image of a patient with {}.", "a T1-weighted MR photo of {}."]


def sessions(bb, n: int, classes: int) -> list[DualPrompt]:
    out = []
    for i in range(n):
        names = CLASSNAMES[(i % 2): (i % 2) + classes]
        dp = DualPrompt(bb, names, PromptConfig(template=TEMPLATES[i % len(TEMPLATES)],
                                                init_seed=i)).train()
        with torch.no_grad():
            dp.ctx.add_(0.01 * torch.randn(dp.ctx.shape, generator=torch.Generator().manual_seed(i)))
        out.append(dp)
    return out


def _embeds(dp: DualPrompt) -> torch.Tensor:
    n = dp.n_ctx
    ctx = dp.ctx.to(dp.token_embeds.dtype).unsqueeze(0).expand(dp.token_embeds.shape[0], -1, -1)
    return torch.cat([dp.token_embeds[:, :1], ctx, dp.token_embeds[:, 1 + n:]], dim=1)


def _loss(dp: DualPrompt, text: torch.Tensor, images: torch.Tensor, labels: torch.Tensor):
    text = F.normalize(text.float(), dim=-1)
    return F.cross_entropy(dp.backbone.logit_scale.float() * images @ text.T, labels)


def separate_step(dps, images, labels) -> None:
    for dp in dps:
        text = dp.backbone.encode_text_embeds(_embeds(dp), dp.lengths)
        _loss(dp, text, images, labels % len(dp.classnames)).backward()


def batched_step(dps, images, labels) -> None:
    bb = dps[0].backbone
    parts = [_embeds(dp) for dp in dps]
    length = max(p.shape[1] for p in parts)
    pad = bb.embed_tokens(torch.full((1, 1), bb.pad_id, device=bb.device))[0, 0]
    rows = [torch.cat([p, pad.expand(p.shape[0], length - p.shape[1], -1)], dim=1)
            for p in parts]
    text = bb.encode_text_embeds(torch.cat(rows), torch.cat([dp.lengths for dp in dps]))
    total, start = 0.0, 0
    for dp in dps:
        c = len(dp.classnames)
        total = total + _loss(dp, text[start:start + c], images, labels % c)
        start += c
    total.backward()


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="random-biomedclip")
    parser.add_argument("--device", default=None)
    parser.add_argument("--sessions", default="1,2,4,8")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    bb = load_backbone(args.backbone, args.device)
    precision = resolve_precision(args.precision, bb.device)
    generator = torch.Generator().manual_seed(0)
    images = F.normalize(torch.randn(64, bb.embed_dim, generator=generator), dim=-1).to(bb.device)
    labels = (torch.arange(64) % args.classes).to(bb.device)
    rows = {}
    with autocast(bb.device, precision):
        for n in (int(k) for k in args.sessions.split(",")):
            dps = sessions(bb, n, args.classes)
            separate_step(dps, images, labels)
            expected = [dp.ctx.grad.clone() for dp in dps]
            for dp in dps:
                dp.ctx.grad = None
            batched_step(dps, images, labels)
            agree = max(float((dp.ctx.grad - g).abs().max() / g.abs().max().clamp_min(1e-12))
                        for dp, g in zip(dps, expected))

            def clear():
                for dp in dps:
                    dp.ctx.grad = None

            sep = best_of(lambda: (separate_step(dps, images, labels), clear()), args.repeats)
            bat = best_of(lambda: (batched_step(dps, images, labels), clear()), args.repeats)
            rows[n] = {"separate_s": round(sep, 4), "batched_s": round(bat, 4),
                       "speedup": round(sep / bat, 2), "grad_rel_diff": float(f"{agree:.1e}")}
    result = {"backbone": args.backbone, "device": str(bb.device), "cpu": cpu_name(),
              "threads": torch.get_num_threads(), "precision": precision,
              "classes_per_session": args.classes, "steps": rows}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
