"""Relevance emitters, one module per op family; importing this package fills the registry."""
from . import (attention, concat, elementwise, embedding, gate, linear, merge, movement,  # noqa: F401
               normalization, pooling, reduce, resize, shape)  # (registration side effects)
from .registry import REGISTRY, OpSpec, register

__all__ = ["REGISTRY", "OpSpec", "register"]
