import pytest
import torch

from trainer.pix2pix.losses import adversarial_loss, discriminator_loss, generator_loss
from trainer.pix2pix.networks import (
    NetConfig,
    PatchDiscriminator,
    UNetGenerator,
    build_networks,
    count_parameters,
)

torch.set_num_threads(1)


@pytest.mark.parametrize(
    "cfg",
    [
        NetConfig(size=64, ngf=8, ndf=8),  # full depth: down to 1x1
        NetConfig(size=64, ngf=8, ndf=8, n_down=4, norm="batch", n_layers_d=2),
        NetConfig.fast(size=64, ngf=8, ndf=8),
    ],
)
def test_shapes_and_value_range(cfg):
    G, D = build_networks(cfg)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = G(x)
    assert y.shape == (2, 3, 64, 64)
    assert y.min() >= -1 and y.max() <= 1  # tanh output, the frames' value range
    logits = D(x, y)
    assert logits.shape[:2] == (2, 1) and logits.shape[2] > 1  # a grid of patch verdicts


def test_classic_matches_pix2pix_and_fast_is_smaller():
    classic, fast = NetConfig.classic(256), NetConfig.fast(256)
    G, D = build_networks(classic)
    # The published U-Net-256 and 70x70 PatchGAN sizes (54.4M and 2.77M weights).
    assert count_parameters(G) == pytest.approx(54.4e6, rel=0.002)
    assert count_parameters(D) == pytest.approx(2.77e6, rel=0.002)
    assert D.receptive_field == 70
    Gf, Df = build_networks(fast)
    assert count_parameters(Gf) < count_parameters(G) / 4
    assert count_parameters(Df) < count_parameters(D) / 3
    assert Df.receptive_field == 70  # the fast variant still judges 70x70 patches


def test_receptive_field_follows_layer_count():
    assert PatchDiscriminator(NetConfig(size=64, n_layers_d=1)).receptive_field == 16
    assert PatchDiscriminator(NetConfig(size=64, n_layers_d=2)).receptive_field == 34


def test_generator_output_depends_on_far_away_input():
    # The U-Net bottleneck sees the whole map: a change in one corner reaches the other.
    torch.manual_seed(0)
    G = UNetGenerator(NetConfig(size=32, ngf=8, dropout=0.0)).eval()
    x = torch.zeros(1, 3, 32, 32)
    x2 = x.clone()
    x2[..., :4, :4] = 1
    assert not torch.allclose(G(x)[..., -4:, -4:], G(x2)[..., -4:, -4:])


def test_bad_configs_are_rejected():
    with pytest.raises(ValueError, match="power of two"):
        NetConfig(size=100)
    with pytest.raises(ValueError, match="n_down"):
        NetConfig(size=32, n_down=6)
    with pytest.raises(ValueError, match="norm"):
        NetConfig(size=32, norm="layer")
    assert NetConfig.from_dict(NetConfig.fast(64).to_dict()) == NetConfig.fast(64)


def test_losses():
    ones, zeros = torch.ones(1, 1, 4, 4), torch.zeros(1, 1, 4, 4)
    assert adversarial_loss(ones, True) == 0 and adversarial_loss(zeros, True) == 1  # LSGAN
    assert adversarial_loss(torch.full((1, 1, 2, 2), 20.0), True, "bce") < 1e-6
    assert discriminator_loss(ones, zeros) == 0
    real, fake = torch.zeros(1, 3, 8, 8), torch.full((1, 3, 8, 8), 0.5)
    total, parts = generator_loss(ones, fake, real, lambda_l1=100)
    assert parts["g_l1"] == pytest.approx(0.5) and total == pytest.approx(50.0)
    with pytest.raises(ValueError, match="gan mode"):
        adversarial_loss(ones, True, "wgan")
