"""What a run folder records of a user's model and rebuilds it from: the reference, and for a
file reference a copy of the file (``model_source/``) with its SHA-256."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from advkit.models.reference import (
    ModelReferenceError,
    is_user_model,
    parse_reference,
    resolve_factory,
    sha256_hex,
)

log = logging.getLogger("advkit.models")

#: Folder of the run folder holding the copy of a model's file.
SOURCE_DIR = "model_source"


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
