from __future__ import annotations

import pytest
import torch

from mixsep.losses import reconstruction_loss
from mixsep.models import ConvDual, ResNetDual, SingleSub, UNetSeparator, feasible_gray_bounds
from mixsep.module import SeparationModule

NETS = {
    "conv_dual": lambda: ConvDual(),
    "resnet_dual": lambda: ResNetDual(),
    "single_sub": lambda: SingleSub(),
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
    mnist_hat, cifar_hat = NETS[name]()(torch.rand(4, 3, 32, 32))
    assert mnist_hat.shape == cifar_hat.shape == (4, 3, 32, 32)


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


@pytest.mark.parametrize("name", ["single_sub", "unet", "unet_residual_attention"])
def test_mixture_consistency_is_exact_before_clamping(name):
    torch.manual_seed(1)
    net = NETS[name]().eval()
    mix = torch.rand(8, 3, 32, 32)
    with torch.no_grad():
        mnist_hat, cifar_hat = net(mix)
    torch.testing.assert_close((mnist_hat + cifar_hat) / 2, mix, rtol=0, atol=1e-6)


@pytest.mark.parametrize("output", ["clamp", "interval"])
def test_unet_predicts_gray_mnist_inside_the_feasible_interval(output):
    torch.manual_seed(2)
    mix, mnist, cifar = _pairs(8)
    with torch.no_grad():
        mnist_hat, cifar_hat = UNetSeparator(width=8, depth=2, output=output).eval()(mix)
    assert torch.equal(mnist_hat[:, 0], mnist_hat[:, 2])
    lo, hi = feasible_gray_bounds(mix)
    assert (mnist[:, :1] >= lo - 1e-6).all() and (mnist[:, :1] <= hi + 1e-6).all()  # truth is feasible
    assert (mnist_hat[:, :1] >= lo - 1e-6).all() and (mnist_hat[:, :1] <= hi + 1e-6).all()
    assert (cifar_hat >= -1e-6).all() and (cifar_hat <= 1 + 1e-6).all()


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
    from mixsep.models import NAFBlock

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
        loss, mnist_hat, _ = module.loss_and_outputs(_pairs(4))
    assert mnist_hat.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    opt.step()


def test_compile_option_runs_a_training_step_or_falls_back():
    torch.manual_seed(5)
    module = SeparationModule(ConvDual(), compile=True)
    loss, _, _ = module.loss_and_outputs(_pairs(4))
    loss.backward()
    assert all(k.startswith(("net.", "metrics.")) for k in module.state_dict())
