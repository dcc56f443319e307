"""A model named by reference: a registered name, ``path/to/file.py:factory`` or
``package.module:factory``.

``create_model`` resolves every name through :func:`parse_reference`, so the trainer, ``advkit
eval``, ``advkit.load_model`` and the workers ``--nproc`` starts all build a model one way.
A user's factory is called with ``num_classes`` and ``in_channels`` only where its signature
takes them (by name or ``**kwargs``), plus the model's arguments (``--model-arg``), checked
against its defaults' types as for the registered models; it must return an ``nn.Module``
mapping (N, C, H, W) inputs to (N, num_classes) logits (:func:`check_output` tries a batch of
two before training).

A file is executed from its bytes as a module named after their SHA-256, so the same file gives
the same factory however often it is resolved, and a run folder can keep a copy
(:class:`ModelSource`) from which the model is rebuilt after the original file moved. Every
failure a user can fix is a :class:`ModelReferenceError`: one line saying what to change.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import logging
import sys
import traceback
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from advkit.errors import UserError, one_line
from advkit.models.exported import IN_PROCESS_PREFIX, is_in_process

log = logging.getLogger("advkit.models")

#: Folder of the run folder holding the copy of a model's file.
SOURCE_DIR = "model_source"
#: Arguments advkit gives a user's factory itself, from the data.
DATA_ARGUMENTS = ("num_classes", "in_channels")
#: Where torch's and advkit's own code lies (a user's error is located outside).
_LIBRARY_DIRS = tuple(str(Path(m.__file__).parent) for m in (torch, sys.modules["advkit"]))
#: Shown after a user's factory fails.
_ARG_HINT = "check the factory and its --model-arg values"
_FORMS = "a registered name (advkit models), path/to/file.py:FACTORY or package.module:FACTORY"


class ModelReferenceError(UserError, ValueError):
    """A model reference that cannot be resolved, or a factory whose model does not fit."""


@dataclass(frozen=True)
class ModelReference:
    """A parsed ``--model`` value. ``kind`` is "registered", "file", "module" or "in-process" (a
    module given to advkit.fit); ``target`` the registered name, the file's path, the module's
    dotted name or the fit module's class; ``factory`` the attribute."""

    text: str
    kind: str
    target: str
    factory: str = ""

    @property
    def registered(self) -> bool:
        return self.kind == "registered"

    @property
    def path(self) -> Path:
        return Path(self.target)


def parse_reference(text: str) -> ModelReference:
    """Split a ``--model`` value into its kind, target and factory; checks the form only (no file
    is read, no module imported). A value without ``:`` is a registered name."""
    if not isinstance(text, str) or not text.strip():
        raise ModelReferenceError(f"--model needs {_FORMS}; got {text!r}")
    text = text.strip()
    if is_in_process(text):  # a module a Python caller passed to advkit.fit
        return ModelReference(text, "in-process", text.removeprefix(IN_PROCESS_PREFIX))
    target, sep, factory = text.rpartition(":")
    if not sep:
        if text.endswith(".py"):
            raise ModelReferenceError(
                f"--model {text} names a file but no factory: add the function (or class) that "
                f"builds the model, e.g. --model {text}:build"
            )
        return ModelReference(text, "registered", text)
    if not factory.isidentifier():
        raise ModelReferenceError(
            f"--model {text}: after the last ':' comes the name of the function or class that "
            f"builds the model (a Python identifier), got {factory!r}; write {_FORMS}"
        )
    if target.endswith(".py"):
        return ModelReference(text, "file", target, factory)
    if "/" in target or "\\" in target or Path(target).is_file():
        raise ModelReferenceError(
            f"--model {text}: {target} is not a .py file; a file reference is "
            "path/to/file.py:FACTORY, a module reference package.module:FACTORY"
        )
    if not all(part.isidentifier() for part in target.split(".")):
        raise ModelReferenceError(
            f"--model {text}: {target!r} is neither a .py file nor a dotted module name; write "
            f"{_FORMS}"
        )
    return ModelReference(text, "module", target, factory)


def check_reference(text: str) -> ModelReference:
    """The reference's form, and for a registered name that it is registered (config
    validation: a file or module is only read when the model is built)."""
    from advkit.models.base import MODELS

    ref = parse_reference(text)
    if ref.registered and ref.target not in MODELS:
        raise ModelReferenceError(
            f"unknown model {ref.target!r}; choose one of: {', '.join(MODELS.names())}; or give "
            "your own as path/to/file.py:FACTORY or package.module:FACTORY"
        )
    return ref


def is_user_model(text: str) -> bool:
    """True for a file or module reference (a model advkit does not ship)."""
    return not parse_reference(text).registered


# ---------------------------------------------------------------------------- resolving
def resolve_factory(reference: str | ModelReference) -> Callable[..., Any]:
    """The callable a file or module reference names, imported; ModelReferenceError saying what
    to change if the file or module is missing or fails to import, or the name is not there."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    if ref.registered:
        from advkit.models.base import MODELS

        return MODELS.get(ref.target)
    if ref.kind == "in-process":
        raise ModelReferenceError(
            f"model {ref.target} was a module passed to advkit.fit, which advkit cannot build "
            "again: load the run with advkit.load_model (its model.pt2), or pass the module to "
            "advkit.fit(..., resume=True)"
        )
    module = _load_file(ref) if ref.kind == "file" else _import_module(ref)
    where = ref.target if ref.kind == "file" else f"module {ref.target}"
    if not hasattr(module, ref.factory):
        defined = _callables(module)
        listed = ", ".join(defined[:10]) + (", ..." if len(defined) > 10 else "")
        raise ModelReferenceError(
            f"{where} defines no {ref.factory!r}; "
            + (f"it defines {listed}: " if defined else "it defines no function or class: ")
            + f"name one of them after the ':' in --model {ref.text}"
        )
    factory = getattr(module, ref.factory)
    if not callable(factory):
        raise ModelReferenceError(
            f"{ref.target}:{ref.factory} is {_a(type(factory).__name__)}, not a function or class: "
            "name the callable that returns the model after the ':'"
        )
    return factory


def _load_file(ref: ModelReference) -> types.ModuleType:
    """The module of a file, executed from its bytes once per content (named by its SHA-256)."""
    path = ref.path
    if not path.exists():
        raise ModelReferenceError(
            f"model file {path} does not exist (working folder {Path.cwd()}): give the path of "
            f"the .py file that defines {ref.factory}"
        )
    if not path.is_file():
        raise ModelReferenceError(f"model file {path} is not a file: give the path of a .py file")
    text = path.read_bytes()
    name = f"_advkit_model_{sha256_hex(text)[:16]}"
    if name in sys.modules:
        return sys.modules[name]
    module = types.ModuleType(name)
    module.__file__ = str(path.resolve())
    sys.modules[name] = module  # dataclasses, pickle and torch.compile look classes up there
    try:
        exec(compile(text, str(path), "exec"), module.__dict__)
    except BaseException as error:
        del sys.modules[name]
        if isinstance(error, KeyboardInterrupt | SystemExit):
            raise
        raise ModelReferenceError(
            f"model file {path} fails to import ({_describe(error, path)}): fix it"
            + _import_hint(error)
        ) from error
    return module


def _import_module(ref: ModelReference) -> types.ModuleType:
    try:
        return importlib.import_module(ref.target)
    except ModuleNotFoundError as error:
        if error.name is not None and ref.target.startswith(error.name):
            raise ModelReferenceError(
                f"module {ref.target} is not importable ({error}): install it or put the folder "
                f"above it on PYTHONPATH, or give its file as path/to/file.py:{ref.factory}"
            ) from error
        raise ModelReferenceError(
            f"module {ref.target} fails to import ({_describe(error)}): install what it imports"
        ) from error
    except Exception as error:
        raise ModelReferenceError(
            f"module {ref.target} fails to import ({_describe(error)}): fix it"
        ) from error


def _import_hint(error: BaseException) -> str:
    if isinstance(error, ModuleNotFoundError):
        return (
            "; a model file is copied alone into the run folder, so the modules it imports "
            "must be installed or on PYTHONPATH (or use --model package.module:FACTORY)"
        )
    return ""


def _a(noun: str) -> str:
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _callables(module: types.ModuleType) -> list[str]:
    """Public functions and classes the module defines itself (not those it imports)."""
    return sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and getattr(value, "__module__", None) == module.__name__
    )


def _describe(error: BaseException, path: Path | None = None) -> str:
    """``SyntaxError: invalid syntax at tiny.py:3``: the exception and where (a one-liner)."""
    if isinstance(error, SyntaxError):
        where = f" at {error.filename}:{error.lineno}" if error.lineno else ""
        return f"SyntaxError: {error.msg}{where}"
    frames = traceback.extract_tb(error.__traceback__)
    if path is not None:
        own = [f for f in frames if Path(f.filename) == path] or frames[-1:]
    else:  # the user's code: the deepest frame outside torch and advkit, if any
        own = [f for f in frames if not f.filename.startswith(_LIBRARY_DIRS)]
    where = f" at {own[-1].filename}:{own[-1].lineno}" if own else ""
    return f"{type(error).__name__}: {one_line(error)}{where}"


# ---------------------------------------------------------------------------- calling
def factory_arguments(
    factory: Callable[..., Any], ref: ModelReference, kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """Check ``kwargs`` against a user factory's signature; returns the data arguments it takes
    (``{"num_classes": ..., ...}`` keys only, values filled in by the caller)."""
    from advkit.models.base import _check_type

    try:
        parameters = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # a builtin without a signature: pass the arguments as given
        return {}
    named = {
        name: p
        for name, p in parameters.items()
        if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    given = [name for name in DATA_ARGUMENTS if name in kwargs]
    if given:
        raise ModelReferenceError(
            f"--model-arg {given[0]} is set by advkit from the data (num_classes: the dataset's "
            "classes, in_channels: its channels): drop it"
        )
    options = [name for name in named if name not in DATA_ARGUMENTS]
    unknown = [] if takes_any else sorted(set(kwargs) - set(named))
    if unknown:
        raise ModelReferenceError(
            f"model {ref.text!r} does not take the options {unknown}; it accepts "
            f"{options or 'none'}"
        )
    for key, value in kwargs.items():
        _check_type(ref.text, named.get(key), value)
    needed = [
        name
        for name, p in named.items()
        if p.default is inspect.Parameter.empty and name not in (*DATA_ARGUMENTS, *kwargs)
    ]
    if needed:
        raise ModelReferenceError(
            f"model {ref.text!r} needs {', '.join(needed)}: give each as --model-arg NAME=VALUE"
        )
    return {name: None for name in DATA_ARGUMENTS if name in named or takes_any}


def check_factory(reference: str, kwargs: Mapping[str, Any]) -> None:
    """Resolve a reference and check ``kwargs`` against its factory, calling nothing (what
    ``--nproc`` checks once before starting the workers)."""
    ref = parse_reference(reference)
    factory = resolve_factory(ref)
    if not ref.registered:
        factory_arguments(factory, ref, kwargs)


def build_user_model(
    reference: str | ModelReference, num_classes: int, in_channels: int, kwargs: Mapping[str, Any]
) -> nn.Module:
    """Call a file or module reference's factory (see the module docstring) and check that it
    returned a module."""
    ref = parse_reference(reference) if isinstance(reference, str) else reference
    factory = resolve_factory(ref)
    data = factory_arguments(factory, ref, kwargs)
    values = {"num_classes": num_classes, "in_channels": in_channels}
    arguments = {**{name: values[name] for name in data}, **kwargs}
    try:
        model = factory(**arguments)
    except Exception as error:
        shown = ", ".join(f"{k}={v!r}" for k, v in arguments.items()) or "no arguments"
        path = ref.path if ref.kind == "file" else None
        raise ModelReferenceError(
            f"model {ref.text!r} raised {_describe(error, path)} when called with {shown}: "
            f"{_ARG_HINT}"
        ) from error
    if not isinstance(model, nn.Module):
        raise ModelReferenceError(
            f"model {ref.text!r} returned {_a(type(model).__name__)}, not a torch.nn.Module: "
            "return the network itself (advkit puts the normalization in front of it)"
        )
    return model


def check_output(
    model: nn.Module,
    input_shape: tuple[int, ...],
    num_classes: int,
    what: str,
    *,
    at_least: bool = False,
) -> None:
    """Run a batch of two random (C, H, W) images through ``model`` in eval mode, without
    gradients and with the caller's RNG untouched, and refuse an output that is not
    (2, num_classes) logits (``at_least``: (2, K) with K >= num_classes)."""
    device = next((t.device for t in (*model.parameters(), *model.buffers())), None)
    device = device or torch.device("cpu")
    shown = "x".join(str(n) for n in input_shape)
    was_training = model.training
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            inputs = torch.rand(2, *input_shape, device=device)
            with torch.no_grad():
                model.eval()
                output = model(inputs)
    except Exception as error:
        raise ModelReferenceError(
            f"model {what!r} fails on a batch of 2 {shown} images ({_describe(error)}): it must "
            f"take (N, {', '.join(str(n) for n in input_shape)}) inputs in [0, 1]"
        ) from error
    finally:
        model.train(was_training)
    shape = tuple(output.shape) if isinstance(output, torch.Tensor) else None
    fits = shape is not None and len(shape) == 2 and shape[0] == 2
    fits = fits and (shape[1] >= num_classes if at_least else shape[1] == num_classes)
    if not fits:
        got = f"shape {shape}" if shape is not None else _a(type(output).__name__)
        raise ModelReferenceError(
            f"model {what!r} returns {got} for a batch of 2 {shown} images; expected logits of "
            f"shape (2, {num_classes}), one per class: make it output {num_classes} values per "
            "image (a factory that takes num_classes gets the dataset's)"
        )


# ---------------------------------------------------------------------------- run folders
def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class ModelSource:
    """Where a run's model comes from: ``reference`` as configured, ``build`` the reference it is
    built from (the run folder's copy when a run is resumed), ``text`` a file's bytes."""

    reference: str
    build: str
    text: bytes | None = None

    @property
    def user(self) -> bool:
        return is_user_model(self.reference)

    def record(self) -> dict[str, Any] | None:
        """model.json's ``model_source``: the factory and, for a file, its copy and SHA-256."""
        ref = parse_reference(self.reference)
        if ref.registered:
            return None
        if ref.kind == "in-process":
            return {"python": ref.target}
        if ref.kind == "module":
            return {"module": ref.target, "factory": ref.factory}
        return {
            "file": f"{SOURCE_DIR}/{ref.path.name}", "factory": ref.factory,
            "sha256": sha256_hex(self.text or b""), "original": str(ref.path.resolve()),
        }  # fmt: skip

    def save(self, run_dir: Path) -> None:
        """Copy a file reference's bytes into ``run_dir/model_source`` (unless already there)."""
        from advkit.training.checkpoint import atomic_write

        ref = parse_reference(self.reference)
        if ref.kind != "file" or self.text is None:
            return
        copy = run_dir / SOURCE_DIR / ref.path.name
        if copy.is_file() and copy.read_bytes() == self.text:
            return
        atomic_write(copy, lambda tmp: tmp.write_bytes(self.text))


def model_source(reference: str, run_dir: Path | None, *, resuming: bool = False) -> ModelSource:
    """The source of a run's model: a file reference is read now (and copied into the run
    folder by :meth:`ModelSource.save`); a resumed run builds from that copy."""
    ref = parse_reference(reference)
    if ref.kind != "file":
        return ModelSource(reference, reference)
    if resuming and run_dir is not None:
        copy = _run_copy(run_dir, ref.path.name, ref.text)
        return ModelSource(reference, f"{copy}:{ref.factory}", copy.read_bytes())
    resolve_factory(ref)  # the file's own errors first
    return ModelSource(reference, reference, ref.path.read_bytes())


def rebuild_reference(meta: Mapping[str, Any], folder: Path) -> str:
    """The reference to rebuild a saved model from: its architecture, or for a file the copy in
    ``folder`` that ``meta["model_source"]`` names (a changed copy is used with a warning)."""
    source = meta.get("model_source")
    if not isinstance(source, Mapping) or not source.get("file"):
        return str(meta["architecture"])
    copy = _run_copy(folder, Path(str(source["file"])).name, str(meta["architecture"]))
    recorded = source.get("sha256")
    if recorded and sha256_hex(copy.read_bytes()) != recorded:
        log.warning(
            "%s has changed since the model was trained (its SHA-256 is not the %s... in "
            "model.json): the model is rebuilt from the file as it is now", copy, recorded[:12]
        )  # fmt: skip
    return f"{copy}:{source.get('factory') or parse_reference(str(meta['architecture'])).factory}"


def _run_copy(folder: Path, name: str, reference: str) -> Path:
    copy = folder / SOURCE_DIR / name
    if not copy.is_file():
        raise ModelReferenceError(
            f"{copy} is missing: it is the copy of the model's code ({reference}) that this run "
            "is rebuilt from; restore it from a backup or copy the original file there"
        )
    return copy
