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
(:mod:`advkit.models.model_source`) from which the model is rebuilt after the original file
moved; calling a factory is :mod:`advkit.models.user_factory`'s job. Every
failure a user can fix is a :class:`ModelReferenceError`: one line saying what to change.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import sys
import traceback
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from advkit.errors import UserError, one_line
from advkit.models.exported import IN_PROCESS_PREFIX, is_in_process

#: Where torch's and advkit's own code lies (a user's error is located outside).
_LIBRARY_DIRS = tuple(str(Path(m.__file__).parent) for m in (torch, sys.modules["advkit"]))
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
def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


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
            f"{ref.target}:{ref.factory} is {with_article(type(factory).__name__)}, not a function "
            "or class: name the callable that returns the model after the ':'"
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
            f"model file {path} fails to import ({describe_error(error, path)}): fix it"
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
            f"module {ref.target} fails to import ({describe_error(error)}): install what it "
            "imports"
        ) from error
    except Exception as error:
        raise ModelReferenceError(
            f"module {ref.target} fails to import ({describe_error(error)}): fix it"
        ) from error


def _import_hint(error: BaseException) -> str:
    if isinstance(error, ModuleNotFoundError):
        return (
            "; a model file is copied alone into the run folder, so the modules it imports "
            "must be installed or on PYTHONPATH (or use --model package.module:FACTORY)"
        )
    return ""


def with_article(noun: str) -> str:
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


def describe_error(error: BaseException, path: Path | None = None) -> str:
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
