"""Relevance emitters, one module per op family; importing this package fills the registry."""
from . import (concat, elementwise, embedding, gate, linear, merge, movement, pooling, reduce,  # noqa: F401
               shape)  # (registration side effects)
from .registry import REGISTRY, OpSpec, register

__all__ = ["REGISTRY", "OpSpec", "register"]
