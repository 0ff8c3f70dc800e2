"""Registry of rules by their command-line name, and parsing of `RULE[:key=value,...]`."""
from .alpha_beta import alpha_beta
from .base import Rule
from .epsilon import epsilon, norm, zero
from .flat import flat
from .gamma import gamma
from .passthrough import passthrough
from .wsquare import wsquare
from .zbox import zbox
from .zplus import zplus

RULES = {
    "zero": zero,
    "epsilon": epsilon,
    "z-plus": zplus,
    "alpha-beta": alpha_beta,
    "gamma": gamma,
    "z-box": zbox,
    "flat": flat,
    "w-square": wsquare,
    "pass": passthrough,
    "norm": norm,
}


def make_rule(name, **params):
    """Build a rule by name; raises ValueError with a message meant for the user."""
    if name not in RULES:
        raise ValueError(f"unknown rule '{name}'; choose one of: {', '.join(RULES)}")
    try:
        return RULES[name](**params)
    except TypeError:
        import inspect
        accepted = ", ".join(inspect.signature(RULES[name]).parameters) or "none"
        raise ValueError(f"rule '{name}' got parameters {sorted(params)}; it accepts: {accepted}") from None


def parse_rule_spec(spec, defaults=None):
    """'gamma:gamma=0.5' -> Rule. Values are floats; z-box takes low/high."""
    name, _, args = spec.partition(":")
    params = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        key, eq, value = item.partition("=")
        if not eq:
            raise ValueError(f"rule parameter '{item}' in '{spec}' is not key=value")
        try:
            params[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"rule parameter '{key}' in '{spec}' is not a number: '{value}'") from None
    if name.strip() == "z-box" and defaults:
        params = {**{k: defaults[k] for k in ("low", "high") if defaults.get(k) is not None}, **params}
    return make_rule(name.strip(), **params)


__all__ = ["RULES", "Rule", "make_rule", "parse_rule_spec"]
