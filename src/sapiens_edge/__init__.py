"""sapiens-edge: Sapiens2 on phones and edge boards.

This package imports without torch (the runtime must run on a Raspberry Pi); the PyTorch
parts are loaded on first use of the names below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import SapiensEdgeError

__version__ = "0.1.0"  # the only place the version is set (pyproject.toml reads it)

# name -> module that defines it; resolved lazily so `import sapiens_edge` stays torch-free.
_LAZY = {
    "list_models": "sapiens_edge.zoo",
    "get_model_info": "sapiens_edge.zoo",
    "ModelInfo": "sapiens_edge.zoo",
    "load_model": "sapiens_edge.loading",
    "inspect_checkpoint": "sapiens_edge.checkpoint",
    "predict": "sapiens_edge.predict",
}

__all__ = ["SapiensEdgeError", "__version__", *_LAZY]

if TYPE_CHECKING:  # pragma: no cover
    from .checkpoint import inspect_checkpoint as inspect_checkpoint
    from .loading import load_model as load_model
    from .predict import predict as predict
    from .zoo import ModelInfo as ModelInfo
    from .zoo import get_model_info as get_model_info
    from .zoo import list_models as list_models


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sapiens_edge' has no attribute {name!r}")
