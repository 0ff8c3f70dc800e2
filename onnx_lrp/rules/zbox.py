"""Z-box: for inputs bounded by [low, high]; the bias cancels between the three forwards."""
import numpy as np

from .base import IDENTITY, NEGATIVE, POSITIVE, Rule, Term, check_positive


def zbox(low=None, high=None, stabilizer=1e-6):
    if low is None or high is None:
        raise ValueError("z-box needs both bounds of the input: low and high (e.g. --low -3 --high 3)")
    low, high = np.asarray(low, dtype=np.float32), np.asarray(high, dtype=np.float32)
    if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))) or np.any(low > high):
        raise ValueError(f"z-box needs finite bounds with low <= high (got low={low}, high={high})")
    eps = check_positive("stabilizer", stabilizer)
    return Rule("z-box", (
        Term("a", IDENTITY, bias=True),
        Term("low", POSITIVE, bias=True, sign=-1.0, coef=-1.0),
        Term("high", NEGATIVE, bias=True, sign=-1.0, coef=-1.0),
    ), stabilizer=eps, bounds=(low, high),
        params={"low": low.tolist(), "high": high.tolist(), "stabilizer": eps})
