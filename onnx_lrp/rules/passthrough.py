"""Pass: relevance goes through unchanged (Zennit's rule for activations and BatchNorm)."""
from .base import Rule


def passthrough():
    return Rule("pass")
