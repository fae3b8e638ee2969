"""ResNet-18 + FPN feature extractor for DynaSeg, written in physeg (no torchvision).

The encoder reproduces torchvision's ``resnet18`` module tree exactly (same attribute
names, same shapes), so a torchvision-format ImageNet ``state_dict`` saved with
``torch.save(model.state_dict(), path)`` loads into it key for key; nothing is downloaded,
the user supplies the file (see :func:`load_resnet18_state_dict`).

Decoder (paper §3.2.2, "FPN on top of Conv5_x"; the exact head is not given, so this is a
standard FPN, Lin et al. 2017): lateral 1x1 convolutions map C2..C5 (64, 128, 256, 512
channels, strides 4..32) to ``fpn_ch`` channels; top-down pathway adds the nearest-upsampled
coarser level; a 3x3 convolution smooths P2; P2 is bilinearly upsampled to the input size,
then ReLU -> BatchNorm, the 1x1 classifier to ``q`` channels and the response BatchNorm, as
in the CNN backbone. The official code's different head (stem + layer1 only) is not
reproduced: the paper's text describes the FPN on Conv5_x.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ResNet18FPN", "load_resnet18_state_dict", "IMAGENET_MEAN", "IMAGENET_STD"]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BasicBlock(nn.Module):
    """torchvision's ResNet BasicBlock (two 3x3 convs, identity or 1x1 downsample)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet18Encoder(nn.Module):
    """ResNet-18 without GAP/FC; returns C2, C3, C4, C5 (strides 4, 8, 16, 32)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64), BasicBlock(64, 64))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512))
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        c2 = self.layer1(x)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [c2, c3, c4, c5]


class ResNet18FPN(nn.Module):
    """ResNet-18 encoder + FPN decoder + DynaSeg classifier (1x1 conv + BN) to ``q`` maps."""

    def __init__(self, q: int = 100, fpn_ch: int = 128):
        super().__init__()
        self.encoder = ResNet18Encoder()
        self.lateral = nn.ModuleList(nn.Conv2d(c, fpn_ch, 1) for c in (64, 128, 256, 512))
        self.smooth = nn.Conv2d(fpn_ch, fpn_ch, 3, padding=1)
        self.feat_norm = nn.BatchNorm2d(fpn_ch)
        self.classifier = nn.Conv2d(fpn_ch, q, 1)
        self.norm = nn.BatchNorm2d(q)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = self.encoder((x - self.mean) / self.std)
        p = self.lateral[3](feats[3])
        for lvl in (2, 1, 0):
            lat = self.lateral[lvl](feats[lvl])
            p = lat + F.interpolate(p, size=lat.shape[-2:], mode="nearest")
        p = self.smooth(p)
        p = F.interpolate(p, size=size, mode="bilinear", align_corners=False)
        p = self.feat_norm(F.relu(p))
        return self.norm(self.classifier(p))


_HASH_NAME = re.compile(r"-([0-9a-f]{8,})\.(pth|pt)$")


def load_resnet18_state_dict(model: ResNet18FPN, path: str | os.PathLike) -> dict[str, int]:
    """Load a torchvision-format ResNet-18 ``state_dict`` file into ``model.encoder``.

    Parameters
    ----------
    model : ResNet18FPN
        The network whose encoder receives the weights (the decoder keeps its random init).
    path : str or path-like
        A file written by ``torch.save(resnet18.state_dict(), path)`` (keys ``conv1.weight``,
        ``layer1.0.bn1.running_mean``, ...). A dict wrapping it under ``"state_dict"`` or
        ``"model"`` and keys prefixed by ``"module."`` (DataParallel) are accepted; the ``fc.*``
        classifier keys are ignored. If the file name carries torchvision's hash suffix
        (``resnet18-f37072fd.pth``), the SHA-256 of the file must start with it.

    Returns
    -------
    dict
        ``{"loaded": n_tensors, "ignored": n_ignored}``.

    Raises
    ------
    FileNotFoundError, ValueError
        Missing file, hash mismatch, not a state_dict, missing keys or wrong shapes (the
        message lists the first offenders).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"ResNet-18 weights file {str(path)!r} does not exist; pass the path of an ImageNet "
            "state_dict saved with torch.save(model.state_dict(), path) (nothing is downloaded)."
        )
    m = _HASH_NAME.search(path.name)
    if m:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if not digest.startswith(m.group(1)):
            raise ValueError(
                f"{path.name}: SHA-256 {digest[:12]}... does not start with the hash "
                f"{m.group(1)!r} in its name; the file is corrupt or truncated."
            )
    data = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(data, dict):
        for key in ("state_dict", "model"):
            if key in data and isinstance(data[key], dict):
                data = data[key]
                break
    if not isinstance(data, dict) or not all(isinstance(v, torch.Tensor) for v in data.values()):
        raise ValueError(
            f"{path} does not hold a state_dict (a dict of tensors); save the weights with "
            "torch.save(resnet18.state_dict(), path)."
        )
    sd = {k[7:] if k.startswith("module.") else k: v for k, v in data.items()}
    target = model.encoder.state_dict()
    missing = [k for k in target if k not in sd]
    wrong = [
        f"{k} {tuple(sd[k].shape)} != {tuple(v.shape)}"
        for k, v in target.items()
        if k in sd and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[:3]})")
        if wrong:
            parts.append(f"{len(wrong)} shape mismatches (e.g. {wrong[:3]})")
        raise ValueError(
            f"{path} is not a ResNet-18 state_dict in torchvision format: "
            + "; ".join(parts) + "."
        )
    model.encoder.load_state_dict({k: sd[k] for k in target}, strict=True)
    return {"loaded": len(target), "ignored": len(sd) - len(target)}
