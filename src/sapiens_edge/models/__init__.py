"""PyTorch re-implementation of Sapiens2 (backbone and task heads), written from the spec."""

from .backbone import Sapiens2Backbone
from .build import build_model
from .estimator import Sapiens2TaskModel
from .rope import RopeEmbedding, rope_constants

__all__ = ["RopeEmbedding", "Sapiens2Backbone", "Sapiens2TaskModel", "build_model", "rope_constants"]
