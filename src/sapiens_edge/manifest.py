"""The artifact manifest (`manifest.json`): what every exported folder says about itself.

Torch-free: the runtime reads it on a Raspberry Pi. Schema changes bump SCHEMA_VERSION; readers
refuse newer versions with a clear message instead of guessing.

Integrity: `files` holds the sha256 of every other file, and `manifest_sha256` the sha256 of the
manifest itself (its canonical JSON without that field), so an edited manifest is caught like an
edited model file. This catches accidents (hand edits, partial copies, a file swapped under the
manifest), not a deliberate edit that also rewrites the digests: that needs a signature.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import ArtifactError, ManifestVersionError, UncheckedManifestWarning, option

# 2: the manifest carries its own digest (manifest_sha256). Version 1 manifests are read with a warning.
SCHEMA_VERSION = 2
MANIFEST_NAME = "manifest.json"
DIGEST_KEY = "manifest_sha256"


@dataclass
class TensorSpec:
    name: str
    shape: list[int]
    dtype: str  # numpy dtype name: float32, float16, uint8, ...
    layout: str = "NCHW"  # NCHW / NHWC for images, "" for others


@dataclass
class Manifest:
    model: str  # zoo name, e.g. sapiens2-0.1b-seg
    task: str  # pose / seg / normal / pointmap / backbone
    recipe: str  # e.g. onnx-int8
    target: str  # onnx / executorch / coreml / tflite
    precision: str  # fp32 / fp16 / int8 / int8-dynamic ...
    input_hw: list[int]
    files: dict[str, str]  # relative path -> sha256 of every file in the folder but the manifest
    model_file: str  # the file a backend opens
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    normalization: dict[str, Any]  # {"mean_rgb": [...], "std_rgb": [...], "scale": "0-255"}
    source_weights: dict[str, Any]  # {"path": ..., "sha256": ... or None, "random": bool}
    tool_versions: dict[str, str]
    task_metadata: dict[str, Any] = field(default_factory=dict)  # keypoint names, flip table, classes ...
    export_options: dict[str, Any] = field(default_factory=dict)  # calibration, quantizer settings ...
    created: str = ""
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> dict[str, Any]:
        """The manifest document, sealed: its `manifest_sha256` covers every other field."""
        doc = asdict(self)
        doc[DIGEST_KEY] = manifest_digest(doc)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any], where: str = "manifest") -> Manifest:
        version = doc.get("schema_version")
        if not isinstance(version, int):
            raise ArtifactError(f"{where} has no integer schema_version: not a sapiens-edge manifest.")
        if version > SCHEMA_VERSION:
            raise ManifestVersionError(
                f"{where} uses manifest schema {version}, newer than this sapiens-edge understands "
                f"({SCHEMA_VERSION}). Upgrade sapiens-edge (pip install -U sapiens-edge) or re-export.")
        try:
            data = {k: v for k, v in doc.items() if k != DIGEST_KEY}  # derived, not a field
            data["inputs"] = [TensorSpec(**t) for t in doc["inputs"]]
            data["outputs"] = [TensorSpec(**t) for t in doc["outputs"]]
            return cls(**data)
        except (KeyError, TypeError) as exc:
            raise ArtifactError(f"{where} is incomplete or malformed ({exc}); re-export the artifact.") from exc


def manifest_digest(doc: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of `doc` without its digest field: sorted keys, no whitespace,
    ASCII escapes, so indentation or key order in manifest.json does not matter, content does."""
    body = {k: v for k, v in doc.items() if k != DIGEST_KEY}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def read_manifest(artifact_dir: str | Path, *, verify: bool = True) -> Manifest:
    """Read and (by default) verify an artifact folder: the manifest's own digest, every listed file
    present, hashes equal."""
    folder = Path(artifact_dir)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ArtifactError(f"Artifact folder not found: {folder}. Export one with `sapiens-edge export`.")
    if not path.is_file():
        raise ArtifactError(f"{folder} has no {MANIFEST_NAME}: not a sapiens-edge artifact (or an "
                            f"interrupted copy). Re-export it or copy the whole folder.")
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is not valid JSON ({exc}); the artifact is damaged, re-export it.") from exc
    manifest = Manifest.from_json(doc, str(path))
    if verify:
        verify_manifest(path, doc)
        verify_files(folder, manifest)
    return manifest


def verify_manifest(path: Path, doc: dict[str, Any]) -> None:
    """The manifest's content equals what export sealed (see the module docstring for the limits)."""
    stored = doc.get(DIGEST_KEY)
    if stored is None and doc.get("schema_version") == 1:
        # Written before manifests carried a digest: the model files are still checked, the manifest cannot be.
        warnings.warn(f"{path} predates manifest digests (schema 1): its own content (normalization, task, file "
                      f"list) is not checked, only the files it lists. Re-export the artifact to get the check.",
                      UncheckedManifestWarning, stacklevel=3)
        return
    if stored != manifest_digest(doc):
        why = "has no manifest_sha256" if stored is None else "changed since export (manifest_sha256 mismatch)"
        raise ArtifactError(
            f"{path} {why}: the manifest was edited or damaged, so its normalization, task and file list cannot be "
            f"trusted. Re-export the artifact or restore the folder from its original copy (skip this check with "
            f"{option('--no-verify', 'verify=False')}).")


def verify_files(folder: Path, manifest: Manifest) -> None:
    missing = [name for name in manifest.files if not (folder / name).is_file()]
    if missing:
        raise ArtifactError(f"{folder} is missing {', '.join(missing)}; copy the whole artifact folder.")
    bad = [name for name, digest in manifest.files.items() if sha256_file(folder / name) != digest]
    if bad:
        raise ArtifactError(
            f"{folder}: {', '.join(bad)} changed since export (sha256 mismatch): the file is corrupt or was "
            f"edited. Re-export or re-copy it (skip this check with {option('--no-verify', 'verify=False')}).")
