"""Epsilon (and LRP-0, and Norm): R_in = a * W^T (R / s(z)), the bias inside z absorbs its share."""
from .base import IDENTITY, Rule, Term, check_positive


def epsilon(epsilon=1e-6):
    eps = check_positive("epsilon", epsilon)
    return Rule("epsilon", (Term("a", IDENTITY, bias=True),), stabilizer=eps, params={"epsilon": eps})


def zero():
    """LRP-0: Epsilon with epsilon = 0; a neuron with z == 0 passes no relevance (instead of NaN)."""
    return Rule("zero", (Term("a", IDENTITY, bias=True),), stabilizer=0.0)


def norm(stabilizer=1e-6):
    """Zennit's Norm, as used for pooling and sums: parameters untouched, the default stabilizer."""
    eps = check_positive("stabilizer", stabilizer)
    return Rule("norm", (Term("a", IDENTITY, bias=True),), stabilizer=eps, params={"stabilizer": eps})
