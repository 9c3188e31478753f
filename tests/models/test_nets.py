from __future__ import annotations

import pytest
import torch

from mixsep.models import ConvDual, ConvSkipDual, ResNetDual, ResNetSkipDual, ResNetSkipSub, SingleSub, UNetSeparator
from mixsep.models.blocks import Upsample
from mixsep.models.losses import reconstruction_loss
from mixsep.models.module import SeparationModule
from mixsep.models.structure import SourceHead, feasible_gray_bounds

# the design-card families at their best (small widths where a test only needs the shape of the network)
FAMILIES = {
    "conv_dual": lambda **kw: ConvSkipDual(widths=[8, 16, 24], decoder_widths=[8, 16], **kw),
    "resnet_dual": lambda **kw: ResNetSkipDual(input_width=8, decoder_widths=[8, 8, 16, 16], **kw),
    "single_sub": lambda **kw: ResNetSkipSub(input_width=8, decoder_widths=[8, 8, 16, 16], **kw),
}
NETS = {
    **{name: build for name, build in FAMILIES.items()},
    "resnet_dual_4_stages": lambda: ResNetSkipDual(stages=4, input_width=8, decoder_widths=[8, 8, 16, 16, 32]),
    "conv_dual_bottleneck": lambda: ConvDual(),
    "resnet_dual_bottleneck": lambda: ResNetDual(),
    "single_sub_bottleneck": lambda: SingleSub(),
    "unet": lambda: UNetSeparator(width=8, depth=2),
    "unet_residual_attention": lambda: UNetSeparator(
        widths=[8, 16, 24], blocks=[0, 1, 2], attention=True, output="interval"
    ),
}


def _pairs(n: int = 16, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mnist = (torch.rand(n, 1, 32, 32, generator=g) > 0.8).float().expand(-1, 3, -1, -1)
    cifar = torch.rand(n, 3, 32, 32, generator=g)
    return (mnist + cifar) / 2, mnist, cifar


@pytest.mark.parametrize("name", NETS)
def test_forward_shapes(name):
    torch.manual_seed(0)
    gray_hat, color_hat = NETS[name]()(torch.rand(4, 3, 32, 32))
    assert gray_hat.shape == color_hat.shape == (4, 3, 32, 32)


@pytest.mark.parametrize("name", NETS)
def test_a_few_optimizer_steps_reduce_the_loss(name):
    torch.manual_seed(0)
    module = SeparationModule(NETS[name](), lr=1e-3)
    opt = module.configure_optimizers()
    batch = _pairs()
    module.train()
    losses = []
    for _ in range(8):
        loss, _, _ = module.loss_and_outputs(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize(
    "name", ["conv_dual", "resnet_dual", "single_sub", "single_sub_bottleneck", "unet", "unet_residual_attention"]
)
def test_mixture_consistency_is_exact_before_clamping(name):
    torch.manual_seed(1)
    net = NETS[name]().eval()
    mix = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        gray_hat, color_hat = net(mix)
    torch.testing.assert_close((gray_hat + color_hat) / 2, mix, rtol=0, atol=1e-6)


@pytest.mark.parametrize("output", ["clamp", "interval"])
def test_unet_predicts_gray_mnist_inside_the_feasible_interval(output):
    torch.manual_seed(2)
    mix, mnist, cifar = _pairs(8)
    with torch.no_grad():
        gray_hat, color_hat = UNetSeparator(width=8, depth=2, output=output).eval()(mix)
    assert torch.equal(gray_hat[:, 0], gray_hat[:, 2])
    lo, hi = feasible_gray_bounds(mix)
    assert (mnist[:, :1] >= lo - 1e-6).all() and (mnist[:, :1] <= hi + 1e-6).all()  # truth is feasible
    assert (gray_hat[:, :1] >= lo - 1e-6).all() and (gray_hat[:, :1] <= hi + 1e-6).all()
    assert (color_hat >= -1e-6).all() and (color_hat <= 1 + 1e-6).all()


def test_interval_output_has_a_gradient_where_clamping_has_none():
    """A clamped sigmoid outside the feasible interval passes no gradient; lo + (hi − lo)·sigmoid always does."""
    torch.manual_seed(3)
    mix = torch.rand(4, 3, 32, 32) * 0.3 + 0.6  # bright mixes: lo > 0 at most pixels
    grads = {}
    for output in ("clamp", "interval"):
        torch.manual_seed(3)
        net = UNetSeparator(width=4, depth=1, output=output)
        with torch.no_grad():  # push the raw prediction far below every lower bound
            net.head.bias.fill_(-20.0)
        net(mix)[0].sum().backward()
        grads[output] = net.head.bias.grad.abs().item()
    assert grads["clamp"] == 0.0 and grads["interval"] > 0.0


def test_unet_options_keep_the_parameter_names_of_earlier_checkpoints():
    plain = set(UNetSeparator(width=8, depth=2).state_dict())
    assert "stem.0.weight" in plain and not any(k.startswith("context.") for k in plain)
    same = UNetSeparator(widths=[8, 16, 32], blocks=0).state_dict()
    assert set(same) == plain
    residual = set(UNetSeparator(width=8, depth=2, blocks=[0, 1, 1], attention=True).state_dict())
    assert plain < residual and any(k.startswith("down.1.6.body.") for k in residual)
    assert any(k.startswith("context.qkv.") for k in residual)


def test_naf_blocks_start_as_the_identity_and_learn():
    """NAFNet's blocks add both branches through zero-initialised scales: a new block passes its input
    through unchanged, in either memory layout, and training moves those scales."""
    from mixsep.models.unet import NAFBlock

    torch.manual_seed(6)
    block = NAFBlock(8)
    x = torch.randn(2, 8, 16, 16)
    assert torch.equal(block(x), x)
    assert torch.allclose(block(x.contiguous(memory_format=torch.channels_last)), x)
    net = UNetSeparator(width=8, depth=2, block=["naf", "naf", "conv"])
    names = set(net.state_dict())
    assert {"stem.1.beta", "down.0.1.beta", "merge.0.1.gamma", "merge.1.1.gamma"} <= names  # levels 0 and 1
    assert not any(k.startswith("down.1.") and "beta" in k for k in names)  # level 2: conv-BN-ReLU
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    mix, mnist, _ = _pairs(4)
    for _ in range(3):
        loss = torch.nn.functional.mse_loss(net(mix)[0], mnist)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert net.stem[1].gamma.abs().sum() > 0 and net.stem[1].beta.abs().sum() > 0


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(width=0), "width"),
        (dict(widths=[8]), "widths"),
        (dict(width=8, depth=2, blocks=[0, 1]), "blocks"),
        (dict(width=8, depth=2, blocks=-1), "blocks"),
        (dict(width=8, depth=2, output="tanh"), "model.net.output"),
        (dict(widths=[8, 10], attention=True), "attention"),
        (dict(width=8, depth=2, block="nafnet"), "model.net.block"),
        (dict(width=8, depth=2, block=["naf", "conv"]), "one per level"),
    ],
)
def test_bad_unet_options_are_rejected_with_the_config_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        UNetSeparator(**kwargs)


@pytest.mark.parametrize("kind", ["mse", "l1", "psnr", "mse+ssim", "psnr+ssim"])
def test_losses_are_zero_or_minimal_at_the_truth(kind):
    _, target, _ = _pairs(4)
    noisy = (target + 0.1 * torch.randn_like(target)).clamp(0, 1)
    assert reconstruction_loss(target, target, kind) < reconstruction_loss(noisy, target, kind)


def test_bad_loss_name_is_rejected():
    with pytest.raises(ValueError, match="model.loss"):
        SeparationModule(ConvDual(), loss="huber")


def test_resnet_pretrained_weights_load_from_a_local_file(tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(3)
    weights = resnet18(weights=None).state_dict()
    torch.save(weights, tmp_path / "r18.pth")
    net = ResNetDual(pretrained_weights=str(tmp_path / "r18.pth"))
    torch.testing.assert_close(net.encoder[0].weight, weights["conv1.weight"])
    (tmp_path / "bad.pth").write_bytes(b"junk")
    with pytest.raises(ValueError, match="pretrained_weights"):
        ResNetDual(pretrained_weights=str(tmp_path / "bad.pth"))


def test_bf16_autocast_and_channels_last_train_a_step_on_cpu():
    torch.manual_seed(4)
    module = SeparationModule(UNetSeparator(width=8, depth=2), channels_last=True)
    opt = module.configure_optimizers()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, gray_hat, _ = module.loss_and_outputs(_pairs(4))
    assert gray_hat.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    opt.step()


def test_compile_option_runs_a_training_step_or_falls_back():
    torch.manual_seed(5)
    module = SeparationModule(ConvDual(), compile=True)
    loss, _, _ = module.loss_and_outputs(_pairs(4))
    loss.backward()
    assert all(k.startswith(("net.", "metrics.")) for k in module.state_dict())


def _feasible_mixes(n: int = 8, seed: int = 7) -> torch.Tensor:
    _, mnist, cifar = _pairs(n, seed)
    return (mnist + cifar) / 2


@pytest.mark.parametrize("family", FAMILIES)
def test_families_give_a_gray_digit_inside_its_feasible_interval(family):
    torch.manual_seed(8)
    mix = _feasible_mixes()
    with torch.no_grad():
        gray_hat, color_hat = FAMILIES[family]().eval()(mix)
    assert torch.equal(gray_hat[:, 0], gray_hat[:, 1]) and torch.equal(gray_hat[:, 0], gray_hat[:, 2])
    lo, hi = feasible_gray_bounds(mix)
    assert (gray_hat[:, :1] >= lo - 1e-6).all() and (gray_hat[:, :1] <= hi + 1e-6).all()
    assert (color_hat >= -1e-6).all() and (color_hat <= 1 + 1e-6).all()


@pytest.mark.parametrize("family", ["conv_dual", "resnet_dual"])
def test_structure_switches_off_give_two_free_decoders(family):
    """gray=false, consistency=none: the report-style dual decoder (three-channel MNIST, no mixture constraint)."""
    torch.manual_seed(9)
    mix = _feasible_mixes()
    with torch.no_grad():
        gray_hat, color_hat = FAMILIES[family](gray=False, consistency="none").eval()(mix)
    assert not torch.equal(gray_hat[:, 0], gray_hat[:, 1])
    assert ((gray_hat + color_hat) / 2 - mix).abs().max() > 1e-3


def test_dual_consistency_is_the_nearest_pair_that_averages_to_the_mix():
    """Two decoders' estimates (m, c) projected onto {(g, 2·mix − g)}: the gray value minimising
    3·(g − m)² + Σ_c (2·mix_c − g − c_c)² (a gray digit has three equal channels) is what the head returns."""
    torch.manual_seed(10)
    mix = torch.rand(2, 3, 4, 4)
    m_logit, c_logit = torch.randn(2, 1, 4, 4), torch.randn(2, 3, 4, 4)
    gray_hat, color_hat = SourceHead(interval=False)(mix, m_logit, c_logit)
    torch.testing.assert_close((gray_hat + color_hat) / 2, mix, rtol=0, atol=1e-6)
    m, c = torch.sigmoid(m_logit), torch.sigmoid(c_logit)

    def cost(g):
        return 3 * (g - m) ** 2 + ((2 * mix - g - c) ** 2).sum(1, keepdim=True)

    best = cost(gray_hat[:, :1])
    for step in (-0.05, -0.01, 0.01, 0.05):
        assert (cost(gray_hat[:, :1] + step) > best).all()


def test_resize_range_keeps_resized_digits_and_moves_others():
    """PIL's bilinear 28→32 resize is linear: a resized digit (before 8-bit rounding) is a fixed point of the
    projection; 32×32 noise is not in the range and moves."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(11)
    digit = rng.random((28, 28)).astype(np.float32)
    resized = torch.from_numpy(np.asarray(Image.fromarray(digit, mode="F").resize((32, 32), Image.BILINEAR)).copy())
    projector = SourceHead(resize_range=True).projector
    torch.testing.assert_close(projector @ resized @ projector.T, resized, rtol=0, atol=1e-5)
    noise = torch.from_numpy(rng.random((32, 32)).astype(np.float32))
    assert (projector @ noise @ projector.T - noise).abs().max() > 0.05
    with pytest.raises(ValueError, match="gray"):
        SourceHead(gray=False, resize_range=True)


def test_bottleneck_versions_keep_the_reports_parameter_counts():
    count = lambda net: sum(p.numel() for p in net.parameters())
    assert count(ConvDual()) == 8_475_718
    assert count(ResNetDual()) == 16_688_582


@pytest.mark.parametrize(
    "preset, target, params",
    [
        ("prior/conv_dual", "ConvDual", 8_475_718),
        ("prior/resnet_dual", "ResNetDual", 16_688_582),
    ],
)
def test_prior_presets_compose_to_the_reports_architectures(compose, tmp_path, preset, target, params):
    from omegaconf import OmegaConf

    from mixsep.models.registry import build_network

    cfg = compose("config", [f"experiment={preset}"], tmp_path)
    assert cfg.model.net.name == target
    net = build_network(OmegaConf.to_container(cfg.model.net))
    assert sum(p.numel() for p in net.parameters()) == params


@pytest.mark.parametrize("option", ["resnet_dual", "single_sub"])
def test_resnet_families_take_torchvisions_stages_and_local_weights(option, tmp_path):
    from torchvision.models import resnet18

    torch.manual_seed(12)
    weights = resnet18(weights=None).state_dict()
    torch.save(weights, tmp_path / "r18.pth")
    net = FAMILIES[option](pretrained_weights=str(tmp_path / "r18.pth"))
    torch.testing.assert_close(net.encoder.conv1.weight, weights["conv1.weight"])
    torch.testing.assert_close(net.encoder.get_submodule("layer2.0.conv1").weight, weights["layer2.0.conv1.weight"])
    assert not any(name.startswith(("layer4.", "fc.")) for name in net.encoder.state_dict())  # stages=3
    with pytest.raises(ValueError, match="pretrained_weights"):
        FAMILIES[option](pretrained_weights=str(tmp_path / "missing.pth"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(consistency="soft"), "consistency"),
        (dict(stages=2), "stages"),
        (dict(stem_stride=4), "stem_stride"),
        (dict(decoder_widths=[8, 8]), "decoder_widths"),
    ],
)
def test_bad_family_options_are_rejected_with_the_config_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ResNetSkipDual(**{"input_width": 8, **kwargs})


def test_shift_ensemble_keeps_a_pointwise_separator_exact_and_the_mixture_consistent():
    """A separator that works pixel by pixel commutes with shifts: the ensemble (wrapped borders left out of
    each vote) gives back exactly its separation. A U-Net's ensemble still averages to the mix."""
    from mixsep.models.tta import ShiftEnsemble

    class Pointwise(torch.nn.Module):
        def forward(self, mix):
            gray = mix.mean(1, keepdim=True).expand(-1, 3, -1, -1) * 0.8
            return gray, 2 * mix - gray

    mix = _feasible_mixes(4)
    for a, b in zip(ShiftEnsemble(Pointwise())(mix), Pointwise()(mix)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.manual_seed(13)
    net = UNetSeparator(width=8, depth=2).eval()
    with torch.no_grad():
        gray_hat, color_hat = ShiftEnsemble(net)(mix)
        plain, _ = net(mix)
    torch.testing.assert_close((gray_hat + color_hat) / 2, mix, rtol=0, atol=1e-6)
    lo, hi = feasible_gray_bounds(mix)
    assert (gray_hat[:, :1] >= lo - 1e-6).all() and (gray_hat[:, :1] <= hi + 1e-6).all()
    assert not torch.allclose(gray_hat, plain)  # the shifted passes do contribute


def test_unet_resize_range_projects_its_gray_estimate_into_the_resize_range_and_the_interval():
    torch.manual_seed(14)
    mix = _feasible_mixes(4)
    net = UNetSeparator(width=8, depth=2, resize_range=True).eval()
    assert "projector" not in net.state_dict()  # derived at start-up: checkpoints are unchanged
    with torch.no_grad():
        gray_hat, color_hat = net(mix)
    torch.testing.assert_close((gray_hat + color_hat) / 2, mix, rtol=0, atol=1e-6)
    lo, hi = feasible_gray_bounds(mix)
    assert (gray_hat[:, :1] >= lo - 1e-6).all() and (gray_hat[:, :1] <= hi + 1e-6).all()
    plain = UNetSeparator(width=8, depth=2).eval()
    plain.load_state_dict(net.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain(mix)[0], gray_hat)


@pytest.mark.parametrize("factor", [2, 4])
def test_upsample_is_the_transposed_convolution_it_replaces(factor):
    """Same parameters (names and shapes: earlier checkpoints load), same outputs and gradients."""
    torch.manual_seed(factor)
    ours, theirs = Upsample(16, 8, factor), torch.nn.ConvTranspose2d(16, 8, factor, stride=factor)
    theirs.load_state_dict(ours.state_dict())
    x = torch.rand(3, 16, 5, 7, requires_grad=True)
    out, expected = ours(x), theirs(x)
    assert out.shape == (3, 8, 5 * factor, 7 * factor)
    torch.testing.assert_close(out, expected)
    grads = [torch.autograd.grad(y.square().sum(), [x, m.weight]) for y, m in ((out, ours), (expected, theirs))]
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
