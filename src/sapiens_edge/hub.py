"""Resolve `weights=` references: local paths or Hugging Face `hf://org/repo[/file][@rev]`."""

from __future__ import annotations

import re
from pathlib import Path

from .errors import WeightsNotFoundError, require
from .zoo import MODELS, ModelInfo

_HF = re.compile(r"^hf://(?P<repo>[\w.-]+/[\w.-]+)(?:/(?P<file>[^@]+?))?(?:@(?P<rev>[\w./-]+))?$")


def resolve_weights(weights: str | Path, info: ModelInfo | None = None) -> Path:
    """A local file path for `weights` (downloading or reading the hub cache for hf://)."""
    text = str(weights)
    if not text.startswith("hf://"):
        return Path(text).expanduser()
    m = _HF.match(text)
    if not m:
        raise WeightsNotFoundError(
            f"Cannot parse {text!r}: use hf://ORG/REPO (official Sapiens2 repos), "
            f"hf://ORG/REPO/FILE.safetensors or append @REVISION.")
    repo, filename, revision = m["repo"], m["file"], m["rev"]
    if filename is None:
        filename = _default_filename(repo, info)
    return _download(repo, filename, revision)


def _default_filename(repo: str, info: ModelInfo | None) -> str:
    candidates = [m for m in MODELS.values() if m.official and m.official.repo_id == repo]
    if info is not None and info.official and info.official.repo_id == repo:
        return info.official.filename
    if candidates:
        return candidates[0].official.filename
    raise WeightsNotFoundError(
        f"hf://{repo} is not an official Sapiens2 repo, so the file name is unknown: write "
        f"hf://{repo}/FILE.safetensors.")


def _download(repo: str, filename: str, revision: str | None) -> Path:
    hub = require("huggingface_hub", "torch", "Loading hf:// weights")
    from huggingface_hub.utils import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(hub.hf_hub_download(repo_id=repo, filename=filename, revision=revision))
    except LocalEntryNotFoundError as exc:
        raise WeightsNotFoundError(
            f"hf://{repo}/{filename} is not in the local Hugging Face cache and cannot be downloaded "
            f"(offline mode or no network). On a connected machine run `hf download {repo} {filename}` "
            f"(or unset HF_HUB_OFFLINE), or pass the local .safetensors path.") from exc
    except GatedRepoError as exc:
        raise WeightsNotFoundError(
            f"hf://{repo} is gated: accept its licence on the Hugging Face page and log in "
            f"(`hf auth login`).") from exc
    except RepositoryNotFoundError as exc:
        raise WeightsNotFoundError(f"Hugging Face repo {repo!r} does not exist (or is private).") from exc
    except EntryNotFoundError as exc:
        raise WeightsNotFoundError(f"Hugging Face repo {repo!r} has no file {filename!r}.") from exc
