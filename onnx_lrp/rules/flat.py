"""Flat: spread relevance uniformly over each neuron's receptive field (inputs and weights taken as ones)."""
from .base import ONES, Rule, Term, check_positive


def flat(stabilizer=1e-6):
    eps = check_positive("stabilizer", stabilizer)
    return Rule("flat", (Term("ones", ONES, bias=False),), stabilizer=eps, params={"stabilizer": eps})
