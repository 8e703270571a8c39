"""Export targets (`sapiens_edge.export`): artifact folders with a versioned manifest.

`export(model, recipe, output, ...)` captures the model once with torch.export and lowers it with
the recipe's target module: `onnx.py`, `executorch.py`, `coreml.py` or `tflite.py` (one per target,
chosen through `targets.py`). Guides per target: docs/targets/.
"""

from .recipes import RECIPES, Recipe, availability, get_recipe, register

__all__ = ["RECIPES", "Artifact", "Recipe", "availability", "export", "get_recipe", "register"]


def __getattr__(name: str):
    if name in ("export", "Artifact"):  # torch-side; keep `import sapiens_edge.export` light
        from . import core

        return getattr(core, name)
    raise AttributeError(name)
