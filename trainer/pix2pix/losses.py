"""pix2pix objective: lambda * L1(fake, real) + an adversarial term on PatchGAN logits; with an
alpha matte (matte_losses) the L1 is taken on the composite over the plate, plus a term tying the
matte to the person mask and one making the person layer right under the mask.

The adversarial term defaults to LSGAN (least squares on the raw logits, targets 1 for real and
0 for fake), as pix2pixHD and "Everybody Dance Now" use: it gives the generator useful gradients
even when the discriminator is confident and trains more stably than the log loss. "bce" selects
the original pix2pix loss (binary cross-entropy with logits, numerically safe under autocast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_MODES = ("lsgan", "bce")
DEFAULT_LAMBDA_L1 = 100.0


def adversarial_loss(logits: torch.Tensor, target_is_real: bool, mode: str = "lsgan") -> torch.Tensor:
    """Mean loss of a logit grid against an all-real or all-fake target."""
    logits = logits.float()  # the loss in float32 even when the network ran in float16
    target = torch.full_like(logits, 1.0 if target_is_real else 0.0)
    if mode == "lsgan":
        return F.mse_loss(logits, target)
    if mode == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    raise ValueError(f"gan mode must be one of {GAN_MODES}, got {mode!r}")


def reconstruction_loss(fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """Mean absolute error, in the networks' [-1, 1] value range."""
    return F.l1_loss(fake.float(), real.float())


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, mode: str = "lsgan") -> torch.Tensor:
    # Halved, as pix2pix does, so D learns at half the rate of G.
    return 0.5 * (adversarial_loss(real_logits, True, mode) + adversarial_loss(fake_logits, False, mode))


def generator_loss(
    fake_logits: torch.Tensor,
    fake: torch.Tensor,
    real: torch.Tensor,
    *,
    lambda_l1: float = DEFAULT_LAMBDA_L1,
    mode: str = "lsgan",
) -> tuple[torch.Tensor, dict]:
    """(total, parts) with parts = {"g_gan", "g_l1"} as floats-to-be (detached tensors)."""
    gan = adversarial_loss(fake_logits, True, mode)
    l1 = reconstruction_loss(fake, real)
    return gan + lambda_l1 * l1, {"g_gan": gan.detach(), "g_l1": l1.detach()}


DEFAULT_LAMBDA_ALPHA = 20.0
DEFAULT_LAMBDA_FG = 50.0


def matte_losses(
    image: torch.Tensor, alpha: torch.Tensor, mask: torch.Tensor, real: torch.Tensor
) -> dict[str, torch.Tensor]:
    """The matte's two extra terms (floats in [0, 2]):

    * "g_alpha": L1(alpha, mask): the matte follows the person mask. With a small weight the
      composite's L1 can still lend alpha to what the mask leaves out (a shadow).
    * "g_fg": L1 of the person layer against the frame under the mask, so the layer is right
      wherever the person is, even before the matte has become opaque there.
    """
    la = F.l1_loss(alpha.float(), mask.float())
    lfg = (mask.float() * (image.float() - real.float()).abs()).sum() / (image.shape[1] * mask.float().sum() + 1.0)
    return {"g_alpha": la, "g_fg": lfg}
