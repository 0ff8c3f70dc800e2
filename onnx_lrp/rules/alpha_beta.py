"""Alpha-beta: alpha times the positive contributions minus beta times the negative ones (alpha - beta = 1)."""
from .base import NEGATIVE, POSITIVE, Rule, Term, check_positive


def alpha_beta(alpha=2.0, beta=1.0, stabilizer=1e-6):
    alpha, beta = check_positive("alpha", alpha, allow_zero=True), check_positive("beta", beta, allow_zero=True)
    if alpha - beta != 1.0:
        raise ValueError(f"alpha - beta must equal 1 (got alpha={alpha:g}, beta={beta:g})")
    eps = check_positive("stabilizer", stabilizer)
    return Rule("alpha-beta", (
        Term("a+", POSITIVE, bias=True, group=0, coef=alpha),
        Term("a-", NEGATIVE, bias=False, group=0, coef=alpha),
        Term("a+", NEGATIVE, bias=True, group=1, coef=-beta),
        Term("a-", POSITIVE, bias=False, group=1, coef=-beta),
    ), stabilizer=eps, masks=(None, None), params={"alpha": alpha, "beta": beta, "stabilizer": eps})
