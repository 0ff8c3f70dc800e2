"""Relevance emitters, one module per op family; importing this package fills the registry."""
from . import elementwise, linear, merge, pooling, shape  # noqa: F401  (registration side effects)
from .registry import REGISTRY, OpSpec, register

__all__ = ["REGISTRY", "OpSpec", "register"]
