"""pix2pix networks: a U-Net generator and a PatchGAN discriminator, both pose-map conditioned.

Two presets (`NetConfig.classic` / `NetConfig.fast`):

* classic: the pix2pix paper's U-Net-256 (ngf 64, eight levels down to 1x1, channels capped at
  512) and 70x70 PatchGAN (ndf 64, 3 strided layers).
* fast: for the booth's minutes-long fine-tuning budget. A convolution's cost is proportional to
  C_in * C_out * pixels, so halving every width (ngf 32, ndf 32) cuts the work about 4x; capping the
  inner channels at 256 and stopping at a 2x2 bottleneck (7 levels) removes most of the weights
  (the 512-channel inner blocks hold ~85% of the classic generator's 54M parameters) and with them
  optimizer time and memory, while the receptive field the pose maps need is kept. The
  discriminator keeps n_layers 3, so it still judges 70x70 patches, at a quarter of the cost.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetConfig:
    """Architecture of generator and discriminator; stored in every checkpoint."""

    size: int = 256  # input/output side in pixels, a power of two
    in_channels: int = 3  # pose map
    out_channels: int = 3  # frame
    matte: bool = False  # the generator also predicts an alpha matte (a last channel); see split_matte
    # The input channel where a first guess of the output starts (e.g. the visitor warped to the
    # pose, then its matte: trainer.warp_framing): the generator adds a correction to it.
    residual: int | None = None
    ngf: int = 64
    n_down: int | None = None  # U-Net levels; None = down to 1x1 (log2(size))
    max_channels: int = 512
    norm: str = "instance"  # "instance" or "batch"
    dropout: float = 0.5  # in the decoder blocks next to the bottleneck, as pix2pix
    n_dropout: int = 3
    ndf: int = 64
    n_layers_d: int = 3  # PatchGAN strided layers: 3 -> 70x70 patches

    def __post_init__(self) -> None:
        if self.size < 8 or self.size & (self.size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {self.size}")
        if self.norm not in ("instance", "batch"):
            raise ValueError(f"norm must be 'instance' or 'batch', got {self.norm!r}")
        n = self.levels
        if not 2 <= n <= int(math.log2(self.size)):
            raise ValueError(f"n_down must be in 2..{int(math.log2(self.size))} for size {self.size}, got {n}")
        if min(self.ngf, self.ndf, self.max_channels) < 1 or self.n_layers_d < 1:
            raise ValueError("ngf, ndf, max_channels and n_layers_d must be positive")
        outputs = self.out_channels + int(self.matte)
        if self.residual is not None and not 0 <= self.residual <= self.in_channels - outputs:
            raise ValueError(
                f"residual: the first guess needs {outputs} input channels from channel {self.residual}, "
                f"the input has {self.in_channels}"
            )

    @property
    def levels(self) -> int:
        return self.n_down if self.n_down is not None else int(math.log2(self.size))

    @classmethod
    def classic(cls, size: int = 256, **over) -> NetConfig:
        return cls(size=size, **over)

    @classmethod
    def fast(cls, size: int = 256, **over) -> NetConfig:
        levels = min(7, int(math.log2(size)))
        base = dict(size=size, ngf=32, n_down=levels, max_channels=256, ndf=32, n_layers_d=3)
        return cls(**{**base, **over})

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetConfig:
        try:
            return cls(**data)
        except TypeError as e:
            raise ValueError(f"bad network config: {e}") from None


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class _UNetBlock(nn.Module):
    """down -> (inner block) -> up, with the block's input concatenated to its output (skip)."""

    def __init__(
        self,
        outer: int,
        inner: int,
        *,
        in_ch: int | None = None,
        sub: nn.Module | None,
        outermost: bool = False,
        norm: str = "instance",
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        in_ch = outer if in_ch is None else in_ch
        innermost = sub is None
        down = [nn.Conv2d(in_ch, inner, 4, 2, 1, bias=outermost or innermost or norm == "instance")]
        if not outermost:
            # In place, as the reference pix2pix: the skip connection then carries the activated
            # features, and no second copy of the largest maps is kept.
            down.insert(0, nn.LeakyReLU(0.2, True))
            if not innermost:  # no norm at 1x1 (instance norm of one pixel is undefined)
                down.append(_norm(norm, inner))
        up_in = inner if innermost else inner * 2
        up: list[nn.Module] = [nn.ReLU(True), nn.ConvTranspose2d(up_in, outer, 4, 2, 1)]
        if outermost:
            up.append(nn.Tanh())
        else:
            up.append(_norm(norm, outer))
            if dropout > 0:
                up.append(nn.Dropout(dropout))
        self.outermost = outermost
        self.model = nn.Sequential(*down, *([sub] if sub is not None else []), *up)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        return y if self.outermost else torch.cat([x, y], 1)


class UNetGenerator(nn.Module):
    """Pose map [B, in_channels, S, S] in [-1, 1] -> frame [B, out_channels, S, S] in [-1, 1]
    (with matte, one more channel: the alpha matte, see split_matte)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        ch = [min(cfg.ngf * 2**i, cfg.max_channels) for i in range(cfg.levels)]
        # Built inside out; ch[i] is the width after the i-th down convolution.
        block = _UNetBlock(ch[-2], ch[-1], sub=None, norm=cfg.norm)
        for depth in range(cfg.levels - 2, 0, -1):
            drop = cfg.dropout if (cfg.levels - 2 - depth) < cfg.n_dropout else 0.0
            block = _UNetBlock(ch[depth - 1], ch[depth], sub=block, norm=cfg.norm, dropout=drop)
        self.model = _UNetBlock(
            cfg.out_channels + int(cfg.matte), ch[0], in_ch=cfg.in_channels, sub=block, outermost=True, norm=cfg.norm
        )
        init_weights(self)
        if cfg.residual is not None:
            # The last layer starts at zero: untrained, the output is the first guess exactly (no
            # noise over it); its weights get gradients at once, the layers below follow.
            last = [m for m in self.model.modules() if isinstance(m, nn.ConvTranspose2d)][-1]
            nn.init.zeros_(last.weight)

    @property
    def size(self) -> int:
        return self.cfg.size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.model(x)
        if self.cfg.residual is None:
            return y
        # A correction of up to the whole range either way; at initialisation (weights near 0)
        # the output is the first guess itself.
        guess = x[:, self.cfg.residual : self.cfg.residual + y.shape[1]]
        return torch.clamp(guess + 2.0 * y, -1.0, 1.0)


def split_matte(output: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A matte generator's output -> (image [B, C, S, S] in [-1, 1], alpha [B, 1, S, S] in [0, 1])."""
    return output[:, :-1], (output[:, -1:] + 1.0) * 0.5


def composite(image: torch.Tensor, alpha: torch.Tensor, plate: torch.Tensor) -> torch.Tensor:
    """The generated person over the background plate: alpha * image + (1 - alpha) * plate."""
    return alpha * image + (1.0 - alpha) * plate


class PatchDiscriminator(nn.Module):
    """concat(pose map, frame) -> a grid of real/fake logits, one per overlapping patch (a matte
    generator's frame is its composite over the plate)."""

    def __init__(self, cfg: NetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        bias = cfg.norm == "instance"
        c = cfg.ndf
        layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels + cfg.out_channels, c, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        for n in range(1, cfg.n_layers_d + 1):
            prev, c = c, cfg.ndf * min(2**n, 8)
            stride = 2 if n < cfg.n_layers_d else 1
            layers += [nn.Conv2d(prev, c, 4, stride, 1, bias=bias), _norm(cfg.norm, c), nn.LeakyReLU(0.2, True)]
        layers.append(nn.Conv2d(c, 1, 4, 1, 1))
        self.model = nn.Sequential(*layers)
        init_weights(self)

    @property
    def receptive_field(self) -> int:
        """Side in input pixels of the patch each output logit judges."""
        rf = 1
        for m in reversed([m for m in self.model if isinstance(m, nn.Conv2d)]):
            rf = rf * m.stride[0] + (m.kernel_size[0] - m.stride[0])
        return rf

    def forward(self, posemap: torch.Tensor, frame: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([posemap, frame], 1))


def init_weights(net: nn.Module, gain: float = 0.02) -> None:
    """pix2pix's N(0, 0.02) initialisation of convolutions and batch-norm scales."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.normal_(m.weight, 0.0, gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)


def build_networks(cfg: NetConfig) -> tuple[UNetGenerator, PatchDiscriminator]:
    return UNetGenerator(cfg), PatchDiscriminator(cfg)


def count_parameters(net: nn.Module, trainable_only: bool = True) -> int:
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)
