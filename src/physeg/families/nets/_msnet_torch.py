"""MSNet as a torch module (private; imported lazily by :mod:`physeg.families.nets.msnet`).

See :mod:`physeg.families.nets.msnet` for the model, its equations and the choices made where
the paper left room. Layer names follow the paper's description of the network (head, FEM
relaxation, restriction R_v / R_F, prolongation, output head).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from . import _blocks as B

__all__ = ["RegularityOperator", "FEMStep", "MSNet"]


class RegularityOperator(nn.Module):
    r"""The learnable regularity operator :math:`A = W_2\,\sigma(W_1\,\cdot)` and its adjoint.

    ``forward(v)`` is :math:`A v` (conv → [norm] → ReLU → conv, no biases, so that the
    linearised :math:`A` is linear). ``adjoint(w)`` is :math:`A^T w = W_1^T \sigma(W_2^T w)`:
    transposed convolutions in reverse order. With ``tied=True`` they reuse :math:`W_1, W_2`,
    so that with ``act`` replaced by the identity (and no norm) ``adjoint`` is the exact
    adjoint of ``forward``: :math:`\langle A v, w\rangle = \langle v, A^T w\rangle`.
    """

    def __init__(self, channels: int, ndim: int, kernel: int = 3, tied: bool = True,
                 norm: str = "none"):
        super().__init__()
        conv = B.conv_cls(ndim)
        pad = kernel // 2
        self.ndim = ndim
        self.pad = pad
        self.tied = tied
        self.w1 = conv(channels, channels, kernel, padding=pad, bias=False)
        self.w2 = conv(channels, channels, kernel, padding=pad, bias=False)
        self.norm = B.make_norm(norm, ndim, channels)
        self.act: nn.Module = nn.ReLU()
        if not tied:
            self.t1 = conv(channels, channels, kernel, padding=pad, bias=False)
            self.t2 = conv(channels, channels, kernel, padding=pad, bias=False)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        return self.w2(self.act(self.norm(self.w1(v))))

    def adjoint(self, w: torch.Tensor) -> torch.Tensor:
        if not self.tied:
            return self.t1(self.act(self.t2(w)))
        convt = B.conv_transpose_fn(self.ndim)
        h = convt(w, self.w2.weight, padding=self.pad)
        return convt(self.act(h), self.w1.weight, padding=self.pad)


class FEMStep(nn.Module):
    r"""One relaxation of the feature extractor module: eqs. (13) and (14).

    .. math::

        r &= s\,u \odot (F - v) - A^T(s\,u \odot A v), \qquad v \leftarrow v + \tau \odot r,\\
        u &\leftarrow \operatorname{softmax}_c\big(-\alpha \odot (v - F)^2
              - \alpha' \odot (A v^t)^2 + K_\theta * u + \beta\big),

    with per-channel :math:`\tau` (init ``tau_init``), :math:`\alpha = \mathrm{softplus}(a)`
    (init 1), :math:`\alpha' = \mathrm{softplus}(a')` (init 0.1, only when
    ``regularity_in_u``), :math:`K_\theta` a depthwise convolution initialised to a
    normalised Gaussian (σ = 1 px) with bias :math:`\beta` (init 0), and :math:`s` the
    ``u_scale`` (1 by default; C makes :math:`s u \approx 1` at start).
    The operator ``A`` is passed in (it is shared between the pre- and post-smoothing of a
    level). The regularity term of the u-update uses the :math:`A v` computed for the
    relaxation (lagged by one half-step) instead of :math:`A v^{t+1}`: it saves two of the
    five convolutions of a step.
    """

    def __init__(self, channels: int, ndim: int, *, td_kernel: int = 5, tau_init: float = 0.1,
                 u_scale: float = 1.0, regularity_in_u: bool = True):
        super().__init__()
        shape = (1, channels) + (1,) * ndim
        self.u_scale = float(u_scale)
        self.tau = nn.Parameter(torch.full(shape, float(tau_init)))
        self.a = nn.Parameter(torch.full(shape, math.log(math.e - 1.0)))  # softplus(a) = 1
        self.regularity_in_u = regularity_in_u
        if regularity_in_u:
            self.a2 = nn.Parameter(torch.full(shape, math.log(math.expm1(0.1))))  # 0.1
        conv = B.conv_cls(ndim)
        self.K = conv(channels, channels, td_kernel, padding=td_kernel // 2, groups=channels,
                      bias=True)
        with torch.no_grad():
            g = B.gaussian_kernel(ndim, td_kernel, 1.0)
            self.K.weight.copy_(g.expand_as(self.K.weight))
            self.K.bias.zero_()

    def forward(self, v: torch.Tensor, u: torch.Tensor, Fd: torch.Tensor,
                A: RegularityOperator) -> tuple[torch.Tensor, torch.Tensor]:
        su = self.u_scale * u
        Av = A(v)
        r = su * (Fd - v) - A.adjoint(su * Av)
        v = v + self.tau * r
        z = -F.softplus(self.a) * (v - Fd) ** 2 + self.K(u)
        if self.regularity_in_u:  # lagged: (A v^t)^2, reusing the relaxation's A v
            z = z - F.softplus(self.a2) * Av**2
        u = torch.softmax(z, dim=1)
        return v, u


class MSNet(nn.Module):
    """Multigrid (FAS V-cycle) unrolling of the Mumford–Shah model (see :mod:`..msnet`).

    ``forward(x)`` takes (B, in_channels, *spatial) and returns class logits
    (B, num_classes, *spatial); inputs whose size is not a multiple of the product of the
    strides are padded (reflect) and the logits cropped back.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        *,
        ndim: int = 2,
        widths: Sequence[int] = (32, 64, 128, 256, 512),
        relaxations: int = 1,
        head_kernel: int = 3,
        kernel: int = 3,
        td_kernel: int = 5,
        strides: Sequence[Any] | None = None,
        tied_adjoint: bool = True,
        u_scale: str = "1",
        tau_init: float = 1.0,
        norm: str = "none",
        regularity_in_u: bool = True,
    ):
        super().__init__()
        if ndim not in (2, 3):
            raise ValueError(f"ndim must be 2 or 3; got {ndim!r}.")
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1 or min(widths) < 1:
            raise ValueError(f"widths must be a non-empty sequence of positive ints; got {widths}.")
        if relaxations < 1:
            raise ValueError(f"relaxations must be >= 1; got {relaxations}.")
        if u_scale not in ("C", "1"):
            raise ValueError(f"u_scale must be 'C' or '1'; got {u_scale!r}.")
        self.ndim = ndim
        self.widths = widths
        self.levels = len(widths)
        self.relaxations = int(relaxations)
        self.strides = B.normalize_strides(strides, self.levels, ndim)
        self.divisor = B.divisor(self.strides, ndim)
        conv = B.conv_cls(ndim)
        self.head = conv(in_channels, widths[0], head_kernel, padding=head_kernel // 2)
        self.A = nn.ModuleList(
            RegularityOperator(c, ndim, kernel, tied=tied_adjoint, norm=norm) for c in widths
        )

        def steps(c: int) -> nn.ModuleList:
            s = float(c) if u_scale == "C" else 1.0
            return nn.ModuleList(
                FEMStep(c, ndim, td_kernel=td_kernel, tau_init=tau_init, u_scale=s,
                        regularity_in_u=regularity_in_u)
                for _ in range(self.relaxations)
            )

        self.pre = nn.ModuleList(steps(c) for c in widths)  # pre[J-1] = coarsest relaxations
        self.post = nn.ModuleList(steps(c) for c in widths[:-1])
        self.restrict_v = nn.ModuleList()
        self.restrict_f = nn.ModuleList()
        self.restrict_u = nn.ModuleList()
        self.prolong = nn.ModuleList()
        for lvl in range(self.levels - 1):
            c0, c1, s = widths[lvl], widths[lvl + 1], self.strides[lvl]
            kz = tuple(3 if si == 2 else 1 for si in s)
            pz = tuple(k // 2 for k in kz)
            self.restrict_v.append(conv(c0, c1, kz, stride=s, padding=pz))
            self.restrict_f.append(conv(c0, c1, kz, stride=s, padding=pz))
            self.restrict_u.append(nn.Sequential(B.avg_pool(ndim, s), conv(c0, c1, 1)))
            self.prolong.append(conv(c1, c0, 1))
        self.out = nn.Sequential(
            conv(widths[0], widths[0], kernel, padding=kernel // 2),
            nn.ReLU(),
            conv(widths[0], num_classes, 1),
        )

    def _relax(self, steps: nn.ModuleList, lvl: int, v, u, Fd):
        for step in steps:
            v, u = step(v, u, Fd, self.A[lvl])
        return v, u

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, spatial = B.pad_to_multiple(x, self.divisor)
        Fd = self.head(x)
        v = Fd
        u = torch.softmax(Fd, dim=1)
        stack = []
        mode = B.interp_mode(self.ndim)
        for lvl in range(self.levels - 1):  # down-sweep: pre-smoothing + FAS restriction
            v, u = self._relax(self.pre[lvl], lvl, v, u, Fd)
            v_hat = self.restrict_v[lvl](v)
            F_next = self.restrict_f[lvl](Fd - v) + v_hat
            u_next = torch.softmax(self.restrict_u[lvl](u), dim=1)
            stack.append((v, u, Fd, v_hat))
            v, u, Fd = v_hat, u_next, F_next
        v, u = self._relax(self.pre[-1], self.levels - 1, v, u, Fd)  # coarsest grid
        for lvl in range(self.levels - 2, -1, -1):  # up-sweep: coarse-grid correction
            v_f, u_f, F_f, v_hat = stack[lvl]
            err = F.interpolate(v - v_hat, size=v_f.shape[2:], mode=mode, align_corners=False)
            v = v_f + self.prolong[lvl](err)
            v, u = self._relax(self.post[lvl], lvl, v, u_f, F_f)
        return B.crop_to(self.out(v), spatial)
