"""W-square: relevance in proportion to the squared weights; Zennit squares the bias too (it absorbs its share)."""
from .base import SQUARE, Rule, Term, check_positive


def wsquare(stabilizer=1e-6):
    eps = check_positive("stabilizer", stabilizer)
    return Rule("w-square", (Term("ones", SQUARE, bias=True),), stabilizer=eps, params={"stabilizer": eps})
