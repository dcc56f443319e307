"""InputConv2d: the same function and gradients as nn.Conv2d, input gradient from another kernel."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from advkit.models import create_model
from advkit.models.input_conv import InputConv2d


def conv_pair(**kwargs) -> tuple[nn.Conv2d, InputConv2d]:
    torch.manual_seed(0)
    plain = nn.Conv2d(**kwargs)
    ours = InputConv2d(**kwargs)
    ours.load_state_dict(plain.state_dict())
    return plain, ours


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(4, 2, 1), (3, 1, 1), (5, 1, 2), (3, 1, 0)]
)
def test_gradients_and_double_backward_match_conv2d(bias, kernel, stride, padding):
    plain, ours = conv_pair(
        in_channels=1, out_channels=4, kernel_size=kernel, stride=stride, padding=padding, bias=bias
    )
    inputs = torch.rand(3, 1, 12, 12)
    results = []
    for conv in (plain, ours):
        x = inputs.clone().requires_grad_(True)
        out = conv(x)
        (grad_x,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
        # A GradAlign-like second-order term: its weight gradient runs through grad_x.
        (grad_x.square().sum() + out.sum()).backward()
        results.append([out, grad_x, x.grad] + [p.grad for p in conv.parameters()])
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_channels_last_inputs_and_weights_give_the_same_gradients():
    plain, ours = conv_pair(in_channels=1, out_channels=4, kernel_size=4, stride=2, padding=1)
    ours = ours.to(memory_format=torch.channels_last)
    inputs = torch.rand(3, 1, 12, 12)
    results = []
    for conv, x in ((plain, inputs), (ours, inputs.contiguous(memory_format=torch.channels_last))):
        x = x.clone().requires_grad_(True)
        conv(x).square().sum().backward()
        results.append([x.grad] + [p.grad for p in conv.parameters()])
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_gradcheck_in_double_precision():
    _, ours = conv_pair(in_channels=1, out_channels=2, kernel_size=4, stride=2, padding=1)
    ours = ours.double()
    x = torch.rand(2, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(ours, (x,))
    assert torch.autograd.gradgradcheck(ours, (x,))


def test_the_native_path_is_taken_only_where_it_applies():
    _, ours = conv_pair(in_channels=1, out_channels=4, kernel_size=3)
    x = torch.rand(2, 1, 8, 8)
    assert "NativeInputGradient" in type(ours(x.requires_grad_(True)).grad_fn).__name__
    assert "NativeInputGradient" not in type(ours(x.detach()).grad_fn).__name__  # natural training
    _, rgb = conv_pair(in_channels=3, out_channels=4, kernel_size=3)
    assert (
        "NativeInputGradient"
        not in type(rgb(torch.rand(2, 3, 8, 8, requires_grad=True)).grad_fn).__name__
    )


def test_an_attack_gradient_skips_the_weight_gradient():
    _, ours = conv_pair(in_channels=1, out_channels=4, kernel_size=3)
    x = torch.rand(2, 1, 8, 8, requires_grad=True)
    torch.autograd.grad(ours(x).sum(), x)
    assert ours.weight.grad is None


def test_models_keep_their_state_dict_layout_and_outputs():
    torch.manual_seed(0)
    model = create_model("cnn-small", 10, mean=(0.5,), std=(0.25,))
    assert isinstance(model.net.features[0], InputConv2d)
    assert "net.features.0.weight" in model.state_dict()
    x = torch.rand(4, 1, 28, 28, requires_grad=True)
    reference = F.conv2d(
        model.normalize(x), model.net.features[0].weight, model.net.features[0].bias, 2, 1
    )
    torch.testing.assert_close(model.net.features[0](model.normalize(x)), reference)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # raised by torch.compile's imports
def test_torch_compile_gives_the_same_gradients():
    torch.manual_seed(0)
    model = create_model("cnn-small", 10, mean=(0.5,), std=(0.25,))
    compiled = torch.compile(model)
    inputs, labels = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    results = []
    for net in (model, compiled):
        delta = torch.zeros_like(inputs, requires_grad=True)
        F.cross_entropy(net(inputs + delta), labels).backward()
        results.append([delta.grad] + [p.grad.clone() for p in model.parameters()])
        model.zero_grad()
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def test_frozen_weights_still_give_the_input_gradient():
    plain, ours = conv_pair(in_channels=1, out_channels=4, kernel_size=3)
    grads = []
    for conv in (plain.requires_grad_(False), ours.requires_grad_(False)):
        x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0)).requires_grad_(True)
        conv(x).square().sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-5, atol=1e-5)
