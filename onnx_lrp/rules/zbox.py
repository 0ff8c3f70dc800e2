"""Z-box: for inputs bounded by [low, high].

Zennit writes it as f(a; W, B) - f(l; W+, B+) - f(h; W-, B-) and a*W^T g - l*W+^T g - h*W-^T g. Since W = W+ + W-
and the biases cancel, that is exactly f(a - l; W+) + f(a - h; W-) and (a - l)*W+^T g + (a - h)*W-^T g, the form
used here: every term is >= 0, and where an output's denominator vanishes (inputs on their bounds) the factor
(a - l) or (a - h) is exactly 0, instead of a float32 cancellation of R/eps-sized terms.
"""
import numpy as np

from .base import NEGATIVE, POSITIVE, Rule, Term, check_positive


def zbox(low=None, high=None, stabilizer=1e-6):
    if low is None or high is None:
        raise ValueError("z-box needs both bounds of the input: low and high (e.g. --low -3 --high 3)")
    low, high = np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))) or np.any(low > high):
        raise ValueError(f"z-box needs finite bounds with low <= high (got low={low}, high={high})")
    eps = check_positive("stabilizer", stabilizer)
    return Rule("z-box", (
        Term("a-low", POSITIVE, bias=False),
        Term("a-high", NEGATIVE, bias=False),
    ), stabilizer=eps, bounds=(low, high),
        params={"low": low.tolist(), "high": high.tolist(), "stabilizer": eps})
