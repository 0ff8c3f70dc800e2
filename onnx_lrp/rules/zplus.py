"""Z-plus: only positive contributions, a+ W+ and a- W-; the bias counts with its positive part only."""
from .base import NEGATIVE, POSITIVE, Rule, Term, check_positive


def zplus(stabilizer=1e-6):
    eps = check_positive("stabilizer", stabilizer)
    return Rule("z-plus", (Term("a+", POSITIVE, bias=True), Term("a-", NEGATIVE, bias=False)), stabilizer=eps,
                params={"stabilizer": eps})
