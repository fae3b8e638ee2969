r"""Segmentation losses for the supervised networks: soft multi-class Dice and Dice + CE.

torch is imported inside the functions, so this module imports without it.

Soft multi-class Dice (MSNet paper §6.1, after DeepAtlas' ``DiceLossMultiClass``):

.. math::

    L_\text{Dice} = 1 - \frac{\sum_k w_k\, \dfrac{2\sum_i g_{ik} p_{ik} + s}
                                         {\sum_i g_{ik} + \sum_i p_{ik} + s}}{\sum_k w_k},

with :math:`p = \operatorname{softmax}(\text{logits})` over the K classes, :math:`g` the one-hot
target, sums over every pixel of the batch (``reduction="batch"``, the DeepAtlas and paper
choice: one Dice per class over the whole mini-batch) or per image then averaged
(``reduction="image"``), and :math:`s` a small smoothing constant (default 1e-5; it only
matters for classes absent from both prediction and target, which then score 1, i.e. no loss).

Choices made where the paper left room
--------------------------------------
* ``class_weights=None`` is the uniform average (the paper's loss). ``"volume"`` gives the
  DeepAtlas "Simple" weights :math:`w_k \propto (\sum_i g_{ik})^{-1/3}` (computed per batch, so
  rare classes count more), or pass an explicit sequence.
* A ``valid`` mask (1 = counts, 0 = ignored) lets the trainer pad images to a common size
  without the padding entering the loss.
* Dice + CE is :math:`L_\text{Dice} + \lambda_\text{CE} \cdot \text{CE}` with the same class
  weights in the cross-entropy (normalised to mean 1) and the same ``valid`` mask.
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["one_hot", "soft_dice_loss", "dice_ce_loss"]


def one_hot(target: Any, num_classes: int):
    """One-hot encode integer labels (B, *spatial) to float (B, K, *spatial).

    Raises
    ------
    ValueError
        A label outside ``0 .. num_classes - 1``.
    """
    import torch

    t = torch.as_tensor(target).long()
    if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise ValueError(
            f"target labels must lie in 0..{num_classes - 1} (class indices); got values in "
            f"{int(t.min())}..{int(t.max())}. Map mask values to class indices first."
        )
    oh = torch.nn.functional.one_hot(t, num_classes)  # (B, *spatial, K)
    return oh.movedim(-1, 1).to(torch.float32)


def _weights(g, class_weights: Any, dims: tuple[int, ...]):
    import torch

    k = g.shape[1]
    if class_weights is None:
        return torch.ones(k, dtype=g.dtype, device=g.device)
    if isinstance(class_weights, str):
        if class_weights != "volume":
            raise ValueError(
                f"class_weights must be None (uniform), 'volume' or a sequence of {k} "
                f"non-negative numbers; got {class_weights!r}."
            )
        vol = g.sum(dim=dims)
        w = torch.where(vol > 0, vol.clamp_min(1.0) ** (-1.0 / 3.0), torch.zeros_like(vol))
        if w.sum() == 0:
            w = torch.ones_like(w)
        return w
    w = torch.as_tensor(class_weights, dtype=g.dtype, device=g.device).flatten()
    if w.numel() != k or bool((w < 0).any()) or float(w.sum()) <= 0:
        raise ValueError(
            f"class_weights must hold {k} non-negative numbers (one per class, not all 0); "
            f"got {list(w.tolist())}."
        )
    return w


def soft_dice_loss(
    logits: Any,
    target: Any,
    *,
    class_weights: None | str | Sequence[float] = None,
    valid: Any = None,
    reduction: str = "batch",
    smooth: float = 1e-5,
    from_logits: bool = True,
):
    """Soft multi-class Dice loss, 1 − weighted mean over classes of the soft Dice.

    Parameters
    ----------
    logits : torch.Tensor, (B, K, *spatial)
        Network outputs (softmax is applied here) or probabilities with ``from_logits=False``.
    target : torch.Tensor
        Integer class indices (B, *spatial) in 0..K-1, or one-hot / soft targets
        (B, K, *spatial).
    class_weights : None, "volume" or sequence of K floats
        None: every class counts the same (uniform). "volume": weight ∝ class volume^(-1/3)
        in the batch (rare classes count more). A sequence: fixed weights.
    valid : torch.Tensor, optional
        (B, *spatial) mask; pixels where it is 0 are ignored (padding).
    reduction : {"batch", "image"}
        "batch": one Dice per class over all pixels of the batch (paper / DeepAtlas).
        "image": Dice per image and class, then averaged over images.
    smooth : float, default 1e-5
        Added to numerator and denominator; larger values soften the loss on small classes.
    from_logits : bool, default True
        False when ``logits`` already hold probabilities.

    Returns
    -------
    torch.Tensor
        Scalar in [0, 1]; 0 for a perfect (hard) prediction.

    Examples
    --------
    >>> import torch
    >>> t = torch.tensor([[[0, 1], [1, 1]]])
    >>> p = torch.nn.functional.one_hot(t, 2).movedim(-1, 1).float()
    >>> round(float(soft_dice_loss(p, t, from_logits=False)), 6)
    0.0
    """
    import torch

    if reduction not in ("batch", "image"):
        raise ValueError(f"reduction must be 'batch' or 'image'; got {reduction!r}.")
    x = torch.as_tensor(logits)
    if x.ndim < 3:
        raise ValueError(
            f"logits must have shape (B, K, *spatial) with at least one spatial axis; "
            f"got shape {tuple(x.shape)}."
        )
    k = x.shape[1]
    p = torch.softmax(x, dim=1) if from_logits else x
    t = torch.as_tensor(target, device=x.device)
    if t.ndim == x.ndim:
        if tuple(t.shape) != tuple(x.shape):
            raise ValueError(
                f"one-hot target shape {tuple(t.shape)} does not match logits {tuple(x.shape)}."
            )
        g = t.to(p.dtype)
    elif t.ndim == x.ndim - 1:
        if tuple(t.shape) != (x.shape[0],) + tuple(x.shape[2:]):
            raise ValueError(
                f"target shape {tuple(t.shape)} does not match logits {tuple(x.shape)}; "
                "expected (B, *spatial) class indices."
            )
        g = one_hot(t, k).to(device=p.device, dtype=p.dtype)
    else:
        raise ValueError(
            f"target must be (B, *spatial) indices or (B, K, *spatial) one-hot; got shape "
            f"{tuple(t.shape)} for logits {tuple(x.shape)}."
        )
    if valid is not None:
        m = torch.as_tensor(valid, device=p.device).to(p.dtype).unsqueeze(1)
        p = p * m
        g = g * m
    spatial = tuple(range(2, x.ndim))
    dims = (0,) + spatial if reduction == "batch" else spatial
    inter = (p * g).sum(dim=dims)
    denom = p.sum(dim=dims) + g.sum(dim=dims)
    dice = (2.0 * inter + smooth) / (denom + smooth)  # (K,) or (B, K)
    w = _weights(g, class_weights, (0,) + spatial)
    if reduction == "image":
        dice = dice.mean(dim=0)
    return 1.0 - (dice * w).sum() / w.sum()


def dice_ce_loss(
    logits: Any,
    target: Any,
    *,
    ce_weight: float = 1.0,
    class_weights: None | str | Sequence[float] = None,
    valid: Any = None,
    reduction: str = "batch",
    smooth: float = 1e-5,
):
    """Soft multi-class Dice plus ``ce_weight`` × cross-entropy (same classes, same mask).

    Parameters
    ----------
    logits : torch.Tensor, (B, K, *spatial)
        Network outputs (not probabilities).
    target : torch.Tensor, (B, *spatial)
        Integer class indices 0..K-1.
    ce_weight : float, default 1.0
        Weight of the cross-entropy (≥ 0); 0 gives the plain Dice loss. Higher values push
        calibrated per-pixel probabilities; Dice alone favours overlap on small classes.
    class_weights, valid, reduction, smooth
        As in :func:`soft_dice_loss`; the CE uses the same class weights (mean-normalised).

    Returns
    -------
    torch.Tensor
        Scalar loss.
    """
    import torch
    import torch.nn.functional as F

    if ce_weight < 0:
        raise ValueError(f"ce_weight must be >= 0; got {ce_weight}.")
    x = torch.as_tensor(logits)
    dice = soft_dice_loss(x, target, class_weights=class_weights, valid=valid,
                          reduction=reduction, smooth=smooth)
    if ce_weight == 0:
        return dice
    t = torch.as_tensor(target, device=x.device).long()
    if t.ndim != x.ndim - 1:
        raise ValueError("dice_ce_loss needs integer class-index targets (B, *spatial).")
    if class_weights is None:
        cw = None
    else:
        g = one_hot(t, x.shape[1]).to(x.dtype)
        cw = _weights(g, class_weights, tuple([0] + list(range(2, x.ndim))))
        cw = cw * (cw.numel() / cw.sum())
    ce = F.cross_entropy(x, t, weight=cw, reduction="none")
    if valid is not None:
        m = torch.as_tensor(valid, device=x.device).to(x.dtype)
        ce = (ce * m).sum() / m.sum().clamp_min(1.0)
    else:
        ce = ce.mean()
    return dice + ce_weight * ce
