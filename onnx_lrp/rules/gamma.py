"""Generalized gamma (Zennit): favour contributions that agree with the sign of the original z; z == 0 drops."""
from .base import Rule, Term, check_positive, gamma_mod


def gamma(gamma=0.25, stabilizer=1e-6):
    g = check_positive("gamma", gamma, allow_zero=True)
    eps = check_positive("stabilizer", stabilizer)
    up, down = gamma_mod(g, "+"), gamma_mod(g, "-")
    return Rule("gamma", (
        Term("a+", up, bias=True, group=0),
        Term("a-", down, bias=False, group=0),
        Term("a+", down, bias=True, group=1),
        Term("a-", up, bias=False, group=1),
    ), stabilizer=eps, masks=("z>0", "z<0"), params={"gamma": g, "stabilizer": eps})
