"""Registry-driven tests of every model: shapes, gradients, normalization, errors, safetensors."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from advkit.models import MODELS, Normalize, NormalizedModel, create_model, list_models

NUM_CLASSES = 7
MEAN = (0.4, 0.5, 0.6)
STD = (0.2, 0.25, 0.3)
# Small inputs and options keep the big networks fast; adaptive pooling makes any size work.
SIZES = {"preact-resnet18": 28, "resnet50": 32, "wrn-28-10": 8, "wrn-34-10": 8}
KWARGS: dict[str, dict[str, Any]] = {"wrn": {"depth": 10, "widen_factor": 2, "dropout": 0.3}}


def input_size(name: str) -> int:
    return MODELS.meta(name)["input_size"] or SIZES.get(name, 32)


def build(name: str, seed: int = 0, device: str = "cpu") -> NormalizedModel:
    torch.manual_seed(seed)
    with torch.device(device):
        return create_model(name, NUM_CLASSES, MEAN, STD, **KWARGS.get(name, {}))


@pytest.fixture(scope="module", autouse=True)
def one_thread() -> Iterator[None]:
    """Batch-2 passes gain nothing from threads, and one thread stays fast on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module", params=MODELS.names())
def built(request: pytest.FixtureRequest) -> Iterator[tuple[str, NormalizedModel, torch.Tensor]]:
    """One model at a time (pytest groups the tests by this module-scoped parameter)."""
    name = request.param
    torch.manual_seed(1)
    size = input_size(name)
    yield name, build(name), torch.rand(2, len(MEAN), size, size)


def test_output_shape_and_gradients(built: tuple[str, NormalizedModel, torch.Tensor]) -> None:
    _, model, x = built
    model.train()
    x = x.clone().requires_grad_(True)
    logits = model(x)
    assert logits.shape == (2, NUM_CLASSES)
    params = list(model.parameters())
    grads = torch.autograd.grad(logits.logsumexp(1).sum(), [x, *params])  # every param is used
    assert torch.isfinite(grads[0]).all() and grads[0].abs().sum() > 0
    assert all(torch.isfinite(g).all() for g in grads[1:])


def test_normalization_is_inside(built: tuple[str, NormalizedModel, torch.Tensor]) -> None:
    _, model, x = built
    model.eval()
    mean = torch.tensor(MEAN).view(1, -1, 1, 1)
    std = torch.tensor(STD).view(1, -1, 1, 1)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model.net((x - mean) / std))
    state = model.state_dict()
    torch.testing.assert_close(state["normalize.mean"], torch.tensor(MEAN))
    torch.testing.assert_close(state["normalize.std"], torch.tensor(STD))


def test_safetensors_round_trip(built: tuple[str, NormalizedModel, torch.Tensor], tmp_path) -> None:
    """The file holds every tensor bit for bit; the loaded model computes the same function.

    The tensors are compared exactly: saving and loading copies bytes, no arithmetic. The outputs
    are compared with float32 tolerances: the loaded weights sit at other addresses (safetensors
    does not align them to 64 bytes), and CPU kernels pick their vectorized path by alignment,
    so the sums come in another order (ResNet-50 differed by 1.5e-7 on an AMD EPYC).
    """
    name, model, x = built
    model.train()
    with torch.no_grad():
        model(x)  # move BatchNorm running statistics away from their defaults
    path = tmp_path / "model.safetensors"
    save_file(model.state_dict(), str(path))
    loaded = load_file(str(path))
    assert loaded.keys() == model.state_dict().keys()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded[key], value), key
    fresh = build(name, device="meta")  # no init cost; loading assigns real tensors
    fresh.load_state_dict(loaded, assign=True)
    model.eval()
    fresh.eval()
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), model(x))


@pytest.mark.parametrize("name", [n for n in MODELS.names() if MODELS.meta(n)["input_size"]])
def test_fixed_size_model_names_expected_size(name: str) -> None:
    size = MODELS.meta(name)["input_size"]
    model = create_model(name)
    with pytest.raises(
        ValueError, match=rf"{name} expects .*\(N, C, {size}, {size}\), got \(1, 1, 32, 32\)"
    ):
        model(torch.rand(1, 1, 32, 32))


@pytest.mark.parametrize(
    ("name", "kwargs", "match"),
    [
        ("wrn", {"depth": 27}, r"6n \+ 4"),
        ("wrn", {"widen_factor": 0}, "widen_factor"),
        ("cnn-small", {"std": (0.0,)}, "std must be finite and > 0"),
        ("cnn-small", {"mean": (0.5, 0.5), "std": (0.5,)}, "same length"),
        ("cnn-small", {"num_classes": 1}, "num_classes must be an integer >= 2"),
        ("cnn-small", {"depth": 28}, r"does not take the options \['depth'\]"),
        ("nope", {}, "unknown model 'nope'; choose one of: .*cnn-small"),
    ],
)
def test_bad_arguments_raise_value_error(name: str, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model(name, **kwargs)


def test_wrong_channel_count_names_expected_channels() -> None:
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        Normalize(MEAN, STD)(torch.rand(1, 1, 28, 28))


def test_list_models_lists_every_registered_model() -> None:
    listed = list_models()
    assert [name for name, _ in listed] == MODELS.names()
    assert {"cnn-small", "cnn-madry", "cnn-trades", "cnn-bn", "preact-resnet18", "wrn"} <= set(
        MODELS.names()
    )
    assert {"wrn-28-10", "wrn-34-10", "resnet50"} <= set(MODELS.names())
    assert all(description for _, description in listed)
    assert all("input_size" in MODELS.meta(name) for name in MODELS.names())


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.net.parameters())


def test_architectures_match_published_sizes() -> None:
    """Parameter counts of the reference implementations, built on the meta device (no memory)."""
    rgb = {"mean": MEAN, "std": STD}
    with torch.device("meta"):
        assert n_params(create_model("resnet50", 1000, **rgb)) == 25_557_032  # torchvision
        assert n_params(create_model("wrn-28-10", 10, **rgb)) == 36_479_194
        # kuangliu / fast-AT PreActResNet18 (11,171,146) plus the final BatchNorm (1,024)
        assert n_params(create_model("preact-resnet18", 10, **rgb)) == 11_172_170
        preset = create_model("wrn-34-10", 10, **rgb).state_dict()
        general = create_model("wrn", 10, depth=34, widen_factor=10, **rgb).state_dict()
    assert {k: v.shape for k, v in preset.items()} == {k: v.shape for k, v in general.items()}


@pytest.mark.parametrize("name", ["cnn-small", "cnn-bn", "preact-resnet18"])
def test_channels_last_and_compile(name: str) -> None:
    model = build(name).eval()
    size = input_size(name)
    x = torch.rand(2, len(MEAN), size, size)
    with torch.no_grad():
        expected = model(x)
        compiled = torch.compile(model, backend="eager", fullgraph=True)
        torch.testing.assert_close(compiled(x), expected)
        model.to(memory_format=torch.channels_last)
        torch.testing.assert_close(model(x.to(memory_format=torch.channels_last)), expected)
    if MODELS.meta(name)["input_size"]:  # the size check still speaks under (non-fullgraph) compile
        with pytest.raises(ValueError, match=f"expects .*{size}, {size}"):
            torch.compile(model, backend="eager")(torch.rand(1, len(MEAN), size + 4, size + 4))
