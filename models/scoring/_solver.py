"""Discharging one obligation with z3: is the claim consistent with the measurements within
their uncertainty, and if not, which values break it.

An obligation is a claim ``C(x)`` over measured quantities ``x_i = m_i +- k sigma_i`` and
constants. It *holds* when some ``x`` inside the measured intervals satisfies ``C`` (the
measurements are consistent with physics); it *fails* when no value inside them does (z3 proves
``C`` unsatisfiable there). The measured values themselves lie inside the intervals, so for a
failure they are a model of ``not C``: they, with the derived quantities evaluated at them
(z3 substitutes and simplifies each term to its number), are the counterexample shown to the
operator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import z3

__all__ = ["Measured", "ObligationResult", "discharge"]

Claim = Callable[[Mapping[str, z3.ArithRef]], z3.BoolRef]
Derived = Callable[[Mapping[str, z3.ArithRef]], z3.ArithRef]


@dataclass(frozen=True)
class Measured:
    """A measured quantity: its value and 1-sigma uncertainty (0 for exact values)."""

    value: float
    sigma: float = 0.0


@dataclass(frozen=True)
class ObligationResult:
    """One obligation, discharged.

    ``statement`` is the claim in formal notation; ``counterexample`` the solver's model of its
    negation at the measured values (empty when the obligation holds); ``message`` says in
    words what was found.
    """

    name: str
    subject: str
    statement: str
    holds: bool
    message: str
    counterexample: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        return {
            "name": self.name,
            "subject": self.subject,
            "statement": self.statement,
            "holds": self.holds,
            "message": self.message,
            "counterexample": dict(self.counterexample),
        }


def _to_float(value: z3.ExprRef) -> float:
    if z3.is_rational_value(value):
        return value.numerator_as_long() / value.denominator_as_long()
    if z3.is_algebraic_value(value):
        return float(value.approx(12).as_decimal(12).rstrip("?"))
    if z3.is_int_value(value):
        return float(value.as_long())
    return float(str(value))


def _real(value: float) -> z3.ArithRef:
    return z3.RealVal(repr(float(value)))


def discharge(
    *,
    name: str,
    subject: str,
    statement: str,
    measured: Mapping[str, Measured],
    claim: Claim,
    derived: Mapping[str, Derived] | None = None,
    explain: Callable[[dict[str, float]], str],
    sigmas: float = 2.0,
    timeout_ms: int = 2000,
) -> ObligationResult:
    """Discharge ``claim`` over ``measured`` (each within ``sigmas`` of its sigma).

    ``explain`` turns the counterexample (measured and ``derived`` values, by name) into the
    operator's sentence; it is called for the measured values when the claim holds, too.
    """
    symbols = {key: z3.Real(key) for key in measured}
    bounds = []
    for key, m in measured.items():
        low, high = m.value - sigmas * m.sigma, m.value + sigmas * m.sigma
        bounds += [symbols[key] >= _real(low), symbols[key] <= _real(high)]
    # z3's plain SMT core first (the claims are linear, or products of bounded quantities:
    # half the time of the default solver's tactics); its "unknown" goes to the default
    consistent = z3.unknown
    for make in (z3.SimpleSolver, z3.Solver):
        within = make()
        within.set("timeout", timeout_ms)
        within.add(*bounds, claim(symbols))
        consistent = within.check()
        if consistent != z3.unknown:
            break
    shown = _evaluate(symbols, measured, derived)
    if consistent != z3.unsat:  # sat, or unknown: an obligation fails only on a proof
        return ObligationResult(name, subject, statement, True, explain(shown))
    return ObligationResult(name, subject, statement, False, explain(shown), shown)


def _evaluate(
    symbols: Mapping[str, z3.ArithRef],
    measured: Mapping[str, Measured],
    derived: Mapping[str, Derived] | None,
) -> dict[str, float]:
    """The measured values and the derived quantities at them."""
    values = {key: m.value for key, m in measured.items()}
    at = [(symbols[key], _real(m.value)) for key, m in measured.items()]
    for key, term in (derived or {}).items():
        values[key] = _to_float(z3.simplify(z3.substitute(term(symbols), *at)))
    return values
