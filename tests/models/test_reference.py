"""``create_model`` with a file or module reference: the form, the factory calling convention,
the checks of its arguments and output, and the run folder's copy it is rebuilt from."""

from __future__ import annotations

import sys

import pytest
import torch
from torch import nn

from advkit.config import ConfigError, TrainConfig
from advkit.models import NormalizedModel, create_model
from advkit.models.model_source import ModelSource, model_source, rebuild_reference
from advkit.models.reference import ModelReferenceError, parse_reference, resolve_factory
from advkit.models.user_factory import check_output
from tests.models.user_models import write_model


@pytest.fixture
def model_file(tmp_path):
    return write_model(tmp_path / "code")


@pytest.mark.parametrize(
    ("text", "kind", "target", "factory"),
    [
        ("cnn-small", "registered", "cnn-small", ""),
        ("nets/my_net.py:build", "file", "nets/my_net.py", "build"),
        ("C:/nets/my_net.py:build", "file", "C:/nets/my_net.py", "build"),
        ("pkg.sub.nets:Net", "module", "pkg.sub.nets", "Net"),
        ("nets:build", "module", "nets", "build"),
    ],
)
def test_the_three_forms(text, kind, target, factory):
    ref = parse_reference(text)
    assert (ref.kind, ref.target, ref.factory) == (kind, target, factory)


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("my_net.py", "names a file but no factory: .* --model my_net.py:build"),
        ("my_net.py:", "Python identifier"),
        ("my_net.py:build-it", "Python identifier"),
        ("nets/my_net.txt:build", "is not a .py file"),
        ("pkg..x:build", "neither a .py file nor a dotted module name"),
        ("", "--model needs"),
    ],
)
def test_malformed_references_say_the_forms(text, match):
    with pytest.raises(ModelReferenceError, match=match):
        parse_reference(text)


def test_config_validation_checks_the_form_but_reads_no_file(tmp_path):
    TrainConfig(model=str(tmp_path / "not_yet_there.py:build")).validate()  # read at build time
    TrainConfig(model="some.module:build").validate()
    with pytest.raises(ConfigError, match=r"unknown model 'nope'; .*cnn-small.*file\.py:FACTORY"):
        TrainConfig(model="nope").validate()
    with pytest.raises(ConfigError, match="names a file but no factory"):
        TrainConfig(model="my_net.py").validate()


def test_a_factory_may_take_an_argument_called_name(tmp_path):
    path = tmp_path / "named.py"
    path.write_text(
        "from torch import nn\n\ndef build(num_classes, name='a'):\n"
        "    return nn.Sequential(nn.Flatten(), nn.LazyLinear(num_classes))\n"
    )
    assert TrainConfig(model_args=["name=b"]).model_args == {"name": "b"}
    assert isinstance(create_model(f"{path}:build", num_classes=3, name="b"), NormalizedModel)


@pytest.mark.parametrize("factory", ["build", "ten_classes", "anything", "TinyCNN"])
def test_num_classes_and_in_channels_go_only_where_the_factory_takes_them(model_file, factory):
    model = create_model(f"{model_file}:{factory}", num_classes=10, width=3)
    assert isinstance(model, NormalizedModel)
    assert model.net.conv.out_channels == 3
    assert model(torch.rand(2, 1, 12, 12)).shape == (2, 10)


def test_channels_and_classes_come_from_the_data(model_file):
    model = create_model(f"{model_file}:build", num_classes=7, mean=(0.5,) * 3, std=(0.2,) * 3)
    assert model.net.conv.in_channels == 3 and model.net.head.out_features == 7
    assert torch.equal(model.normalize.std, torch.full((3,), 0.2))


def test_a_file_is_one_module_however_often_it_is_resolved(model_file, tmp_path):
    first = resolve_factory(f"{model_file}:build")
    assert resolve_factory(f"{model_file}:build") is first
    copy = tmp_path / "copy" / "my_net.py"
    copy.parent.mkdir()
    copy.write_bytes(model_file.read_bytes())
    assert resolve_factory(f"{copy}:build") is first  # same bytes, same module
    assert first.__module__ in sys.modules  # so pickle and dataclasses find its classes
    model_file.write_text(model_file.read_text() + "\nWIDTH = 5\n")
    assert resolve_factory(f"{model_file}:build") is not first  # edited: executed again


@pytest.mark.parametrize(
    ("factory", "kwargs", "match"),
    [
        ("nope", {}, r"defines no 'nope'; it defines TinyCNN, anything, build, fails, "),
        ("WIDTH", {}, "WIDTH is an int, not a function or class"),
        ("build", {"width": "wide"}, r"takes width as int \(default 4\), got 'wide'"),
        ("build", {"depth": 3}, r"does not take the options \['depth'\]; it accepts \['width'\]"),
        ("build", {"in_channels": 3}, "in_channels is set by advkit from the data"),
        ("needs_depth", {}, "needs depth: give each as --model-arg NAME=VALUE"),
        ("fails", {}, r"raised ValueError: width 4 is too narrow at .*my_net.py:\d+ .*--model-arg"),
        ("not_a_module", {}, "returned a tuple, not a torch.nn.Module"),
    ],
)
def test_factory_errors_say_what_to_change(model_file, factory, kwargs, match):
    with pytest.raises(ModelReferenceError, match=match) as caught:
        create_model(f"{model_file}:{factory}", **kwargs)
    assert "\n" not in str(caught.value)


def test_files_and_modules_that_do_not_import(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("import torch\n\ndef build(:\n    pass\n")
    with pytest.raises(ModelReferenceError, match=r"fails to import \(SyntaxError: .* at .*:3\)"):
        create_model(f"{broken}:build")
    importer = tmp_path / "importer.py"
    importer.write_text("import not_installed_anywhere\n")
    with pytest.raises(
        ModelReferenceError, match=r"ModuleNotFoundError.*installed or on PYTHONPATH"
    ):
        create_model(f"{importer}:build")
    assert not [name for name in sys.modules if name.startswith("_advkit_model_") and
                getattr(sys.modules[name], "__file__", "") == str(importer)]  # fmt: skip
    with pytest.raises(ModelReferenceError, match=r"model file .*gone.py does not exist"):
        create_model(f"{tmp_path / 'gone.py'}:build")
    with pytest.raises(ModelReferenceError, match=r"module no_such_pkg\.nets is not importable"):
        create_model("no_such_pkg.nets:build")


def test_a_module_reference_imports_the_module(tmp_path, monkeypatch):
    package = tmp_path / "mypkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    write_model(package, "nets.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    model = create_model("mypkg.nets:build", num_classes=4, width=2)
    assert model(torch.rand(2, 1, 8, 8)).shape == (2, 4)
    assert type(model.net).__module__ == "mypkg.nets"


def test_the_probe_refuses_wrong_outputs_and_leaves_the_rng_and_mode_alone(model_file):
    model = create_model(f"{model_file}:build", num_classes=10).train()
    state = torch.get_rng_state()
    check_output(model, (1, 12, 12), 10, "m")
    assert torch.equal(torch.get_rng_state(), state) and model.training
    with pytest.raises(ModelReferenceError, match=r"returns shape \(2, 10\) .* \(2, 9\)"):
        check_output(model, (1, 12, 12), 9, "m")
    check_output(model, (1, 12, 12), 9, "m", at_least=True)
    wrong = create_model(f"{model_file}:wrong_input", num_classes=10)
    with pytest.raises(ModelReferenceError, match=r"fails on a batch of 2 1x12x12 images"):
        check_output(wrong, (1, 12, 12), 10, "m")
    with pytest.raises(ModelReferenceError, match="returns a tuple"):
        check_output(TupleOut(), (1, 4, 4), 10, "m")


class TupleOut(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple:
        return (x,)


def test_a_run_keeps_a_copy_and_is_rebuilt_from_it(model_file, tmp_path):
    run = tmp_path / "run"
    source = model_source(f"{model_file}:build", run)
    source.save(run)
    copy = run / "model_source" / "my_net.py"
    assert copy.read_bytes() == model_file.read_bytes()
    record = source.record()
    assert record["file"] == "model_source/my_net.py" and record["factory"] == "build"
    meta = {"architecture": f"{model_file}:build", "model_source": record}
    model_file.unlink()
    assert rebuild_reference(meta, run) == f"{copy}:build"
    resumed = model_source(f"{model_file}:build", run, resuming=True)
    assert resumed.build == f"{copy}:build" and resumed.record() == record
    copy.unlink()
    with pytest.raises(ModelReferenceError, match=r"model_source/my_net\.py is missing"):
        rebuild_reference(meta, run)
    assert ModelSource("cnn-small", "cnn-small").record() is None
    assert rebuild_reference({"architecture": "cnn-small", "model_source": None}, run) == (
        "cnn-small"
    )


def test_a_changed_copy_is_used_with_a_warning(model_file, tmp_path, caplog):
    run = tmp_path / "run"
    source = model_source(f"{model_file}:build", run)
    source.save(run)
    (run / "model_source" / "my_net.py").write_text(model_file.read_text() + "\n# edited\n")
    meta = {"architecture": f"{model_file}:build", "model_source": source.record()}
    rebuild_reference(meta, run)
    assert "has changed since the model was trained" in caplog.text
