"""Torch core of DynaSeg: the per-image CNN, the two losses, the weight schedules, the loop.

Private module, imported only when :func:`physeg.families.dynaseg.segment_dynaseg` runs, so
torch is never imported by ``import physeg``. Everything here works on torch tensors; the
public module does the numpy-side validation, resizing and relabelling.

Notation (Kim, Kanezaki & Tanaka 2020; Guermazi, Ksantini & Khan 2024):
``r'`` (``resp``) is the batch-normalised response of shape (1, q, h, w), ``c`` the argmax
labels, ``q'`` the number of distinct labels at the current iteration.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = [
    "DynaSegCNN",
    "similarity_loss",
    "continuity_loss",
    "mu_schedule",
    "TrainResult",
    "train_per_image",
]


class DynaSegCNN(nn.Module):
    """The per-image feature extractor + linear classifier of Kim et al. (TIP 2020).

    ``M`` components conv3x3 -> ReLU -> BatchNorm (the first maps ``in_ch -> p``, the others
    ``p -> p``), then a 1x1 convolution ``p -> q`` (the linear classifier ``W_c``) and a
    BatchNorm over the ``q`` responses (the "intra-axis normalisation" giving ``r'``).
    No pooling or striding: the response has the input's resolution.

    The 3x3 convolutions pad by *reflection*, not with zeros: a zero border is a dark frame
    that the first layers see as an edge, and the self-labelling turned it into thin
    clusters along the image sides (1-2 px per layer at the training scale, ~4 px after
    upsampling from scale 0.5). Reflection gives a border pixel the statistics of its
    neighbourhood, so a region touching the side is labelled like its interior. (The
    published codes pad with zeros; the weights are the same shape either way.)
    """

    def __init__(self, in_ch: int, p: int = 100, q: int = 100, n_conv: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_ch
        for _ in range(n_conv):
            layers += [nn.Conv2d(ch, p, 3, padding=1, padding_mode="reflect"),
                       nn.ReLU(inplace=True), nn.BatchNorm2d(p)]
            ch = p
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Conv2d(p, q, 1)
        self.norm = nn.BatchNorm2d(q)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.classifier(self.features(x)))


def similarity_loss(resp: torch.Tensor, labels: torch.Tensor,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """Feature-similarity loss: mean cross-entropy of ``r'`` (as logits) against ``c``.

    ``L_sim = -(1/N) sum_n log softmax(r'_n)[c_n]`` (mean over the N pixels, as
    ``nn.CrossEntropyLoss`` in all published codes; the papers write the sum).
    ``resp`` is (1, q, h, w), ``labels`` (1, h, w) int64; ``mask`` (1, h, w) bool restricts
    the mean to those pixels (scribble mode).
    """
    ce = F.cross_entropy(resp, labels, reduction="none")
    if mask is None:
        return ce.mean()
    n = mask.sum()
    return (ce * mask).sum() / n.clamp_min(1)


def continuity_loss(resp: torch.Tensor) -> torch.Tensor:
    """Spatial-continuity loss: L1 of vertical plus horizontal first differences of ``r'``.

    ``L_con = mean|r'(i+1, j) - r'(i, j)| + mean|r'(i, j+1) - r'(i, j)|`` (each mean over
    its own set of differences and the q channels, as ``nn.L1Loss`` in the published codes).
    """
    dv = resp[:, :, 1:, :] - resp[:, :, :-1, :]
    dh = resp[:, :, :, 1:] - resp[:, :, :, :-1]
    return dv.abs().mean() + dh.abs().mean()


def mu_schedule(variant: str, alpha: float, mu: float) -> Callable[[int], float]:
    """Return ``q_eff -> mu``: fixed ``mu``, FSF ``q_eff/alpha`` or SCF ``alpha/q_eff``."""
    if variant == "fixed":
        return lambda q: float(mu)
    if variant == "fsf":
        return lambda q: float(q) / float(alpha)
    if variant == "scf":
        return lambda q: float(alpha) / float(max(q, 1))
    raise ValueError(f"unknown variant {variant!r}")  # pragma: no cover - validated upstream


@dataclass
class TrainResult:
    """What the per-image optimisation did (the diagnostics returned to the caller)."""

    response: torch.Tensor  # (1, q, h, w) final normalised response r' (no grad)
    n_labels: list[int] = field(default_factory=list)  # q' at each iteration
    mu: list[float] = field(default_factory=list)  # weight used at each iteration
    loss: list[float] = field(default_factory=list)
    stop_reason: str = ""
    iterations: int = 0


def train_per_image(
    model: nn.Module,
    x: torch.Tensor,
    *,
    variant: str,
    alpha: float,
    mu: float,
    max_iter: int,
    min_labels: int,
    q_floor: int = 0,
    patience: int = 0,
    lr: float = 0.1,
    momentum: float = 0.9,
    weight_decay: float = 0.0,
    scribble: torch.Tensor | None = None,
    scribble_weight: float = 0.5,
    callback: Callable[[int, int, float, float, torch.Tensor], None] | None = None,
) -> TrainResult:
    """Optimise ``model`` on one image by self-labelling; return the final response.

    Each iteration: forward -> ``c = argmax r'`` (detached) -> ``q'`` ->
    ``L = L_sim(r', c) + mu(q_eff) * L_con(r')`` with ``q_eff = max(q', q_floor)`` -> one SGD
    step. Stops after ``max_iter`` iterations, or when ``q' <= min_labels`` (checked on the
    labels of the iteration, after its step, as in the published code), or when ``patience``
    > 0 and the smallest ``q'`` seen has not decreased for ``patience`` iterations.

    ``scribble`` (1, h, w) int64 with -1 = unlabelled switches on the scribble loss of
    Kim et al.: ``L_sim`` on unscribbled pixels + ``scribble_weight`` * CE on scribbled ones.
    ``callback(it, q', mu, loss, resp)`` is called after every step with the detached
    response of that iteration's forward pass.
    """
    weight = mu_schedule(variant, alpha, mu)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum,
                          weight_decay=weight_decay)
    model.train()
    res = TrainResult(response=torch.empty(0))
    best_q = math.inf
    since_best = 0
    stop = "max_iter"
    scr_mask = None
    if scribble is not None:
        scr_mask = scribble >= 0
    for it in range(max_iter):
        opt.zero_grad(set_to_none=True)
        resp = model(x)
        labels = resp.detach().argmax(dim=1)
        q_now = int(torch.unique(labels).numel())
        m = weight(max(q_now, q_floor))
        if scr_mask is None:
            l_sim = similarity_loss(resp, labels)
        else:
            l_sim = similarity_loss(resp, labels, ~scr_mask) + scribble_weight * similarity_loss(
                resp, scribble.clamp_min(0), scr_mask)
        loss = l_sim + m * continuity_loss(resp)
        loss.backward()
        opt.step()
        res.n_labels.append(q_now)
        res.mu.append(m)
        res.loss.append(float(loss.detach()))
        res.iterations = it + 1
        if callback is not None:
            callback(it, q_now, m, res.loss[-1], resp.detach())
        if q_now <= min_labels:
            stop = "min_labels"
            break
        if q_now < best_q:
            best_q, since_best = q_now, 0
        else:
            since_best += 1
            if patience > 0 and since_best >= patience:
                stop = "stable"
                break
    with torch.no_grad():
        res.response = model(x)  # BN stays in train mode: statistics of this image
    res.stop_reason = stop
    return res
