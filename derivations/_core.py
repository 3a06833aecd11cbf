r"""Proof machinery shared by the derivations D1..D7.

Every derivation builds SymPy expressions from the model definitions (the logit ``f``, the
loss, the perturbation :math:`\epsilon = \rho\, g/\|g\|`) and then *proves* statements about them
with the three primitives below. Each primitive answers ``True`` only when SymPy produced a
certificate; anything SymPy cannot decide counts as *not proved* (``False``), never as proved.

``prove_equal(a, b, cases=...)``
    In every listed case (e.g. :math:`t = +1` and :math:`t = -1`), :math:`a - b` is first
    evaluated at random points with 30-digit arithmetic (a false identity is refused there,
    cheaply), then reduced to the literal ``0``: square roots :math:`\sqrt P` become symbols
    :math:`r` with :math:`r^2 = P`, sigmoids with provably equal arguments become one symbol,
    and the numerator of the resulting rational function must vanish modulo the relations
    (``_algebraic_zero``); small expressions may also go through ``cancel``/``simplify``.
    Only the symbolic reduction proves; the numeric check can only refuse.

``provably_positive(expr)``
    SymPy's assumption system says ``expr.is_positive``; or ``expr`` is a product/power of
    provably positive factors; or (monotone lemma) for a positive symbol :math:`s` of
    ``expr``: :math:`\lim_{s\to 0^+} \mathrm{expr} \ge 0` and
    :math:`\partial_s \mathrm{expr}` is provably positive, so ``expr`` > 0 for all
    :math:`s > 0` (mean value theorem; the expressions used here are smooth in :math:`s`).

``prove_sign_by_factors(expr, factors, sign)``
    ``expr`` equals the product of ``factors`` (``prove_equal``) and every factor is provably
    positive; ``sign=-1`` allows exactly one factor to be provably negative. This is the sign
    argument used for the monotonicity claims.

The logistic sigmoid is the SymPy function :class:`sigmoid`, defined by
:math:`\sigma(u) = 1/(1 + e^{-u})`; its derivative rule :math:`\sigma'(u) = \sigma(u)\sigma(-u)`
is itself proved (``sigmoid_lemmas``) from that definition.
"""

from __future__ import annotations

import dataclasses
import functools
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence

import mpmath
import scipy.special
import sympy as sp

__all__ = [
    "sigmoid", "norm", "dot", "prove_zero", "prove_equal", "provably_positive",
    "provably_negative", "prove_sign_by_factors", "prove_limit", "label_cases", "Step", "Claim",
    "Result", "run_steps", "timed_result", "lambdify", "latex", "render_claims", "gram_inner",
    "symbols_vec", "sigmoid_lemmas",
]


# --------------------------------------------------------------------------------------------
# The logistic sigmoid as a SymPy function
# --------------------------------------------------------------------------------------------


class sigmoid(sp.Function):  # noqa: N801  (reads like the math)
    r""":math:`\sigma(u) = 1/(1 + e^{-u})`, positive for real u, with :math:`\sigma' = \sigma(u)\sigma(-u)`."""

    @classmethod
    def eval(cls, u):
        if u == 0:
            return sp.S.Half

    def fdiff(self, argindex=1):
        u = self.args[0]
        return sigmoid(u) * sigmoid(-u)

    def _eval_is_real(self):
        return self.args[0].is_real

    def _eval_is_positive(self):
        if self.args[0].is_real:
            return True
        return None

    def _eval_rewrite_as_exp(self, u, **kwargs):
        return 1 / (1 + sp.exp(-u))

    def _eval_evalf(self, prec):
        return (1 / (1 + sp.exp(-self.args[0])))._eval_evalf(prec)

    def _latex(self, printer):
        return r"\sigma\left(%s\right)" % printer._print(self.args[0])


def sigmoid_lemmas() -> list[tuple[str, bool]]:
    r"""Prove the two properties of :math:`\sigma` the derivations rely on, from its definition."""
    u = sp.Symbol("u", real=True)
    defn = 1 / (1 + sp.exp(-u))
    deriv = prove_zero(sp.diff(defn, u) - (sigmoid(u) * sigmoid(-u)).rewrite(sp.exp))
    reflect = prove_zero((sigmoid(u) + sigmoid(-u)).rewrite(sp.exp) - 1)
    return [
        (r"$\sigma'(u) = \sigma(u)\,\sigma(-u)$", deriv),
        (r"$\sigma(u) + \sigma(-u) = 1$", reflect),
    ]


# --------------------------------------------------------------------------------------------
# Small vector helpers
# --------------------------------------------------------------------------------------------


def dot(a: Sequence, b: Sequence) -> sp.Expr:
    """Euclidean inner product of two equal-length sequences of SymPy expressions."""
    if len(a) != len(b):
        raise ValueError(f"dot: lengths differ ({len(a)} vs {len(b)})")
    return sp.Add(*[ai * bi for ai, bi in zip(a, b)])


def norm(vec: Iterable) -> sp.Expr:
    r"""Euclidean norm :math:`\sqrt{\sum_k v_k^2}`, with common factors pulled out of the root.

    ``factor_terms`` is an exact rewrite; SymPy then takes positive factors out of the square
    root only when it knows they are positive (e.g. :math:`\sigma(\cdot)`), and ``|t|`` otherwise.
    """
    return sp.sqrt(sp.factor_terms(sp.Add(*[sp.expand(v) ** 2 for v in vec])))


def gram_inner(u: Mapping, v: Mapping, gram: Mapping) -> sp.Expr:
    r"""Inner product of two formal linear combinations of named vectors.

    ``u`` and ``v`` map basis names to scalar coefficients; ``gram[(a, b)]`` is
    :math:`\langle a, b\rangle` (symmetric; either order may be given). Bilinearity is all that
    is used, so an identity proved with this helper holds in every dimension.
    """
    total = sp.S.Zero
    for a, ca in u.items():
        for b, cb in v.items():
            g = gram.get((a, b), gram.get((b, a)))
            if g is None:
                raise KeyError(f"gram_inner: no inner product given for ({a}, {b})")
            total += ca * cb * g
    return total


# --------------------------------------------------------------------------------------------
# Proof primitives
# --------------------------------------------------------------------------------------------

def label_cases(*labels: sp.Symbol) -> list[dict]:
    """All sign assignments ``{t_i: +-1}``: binary labels take exactly these two values."""
    out: list[dict] = [{}]
    for t in labels:
        out = [{**c, t: s} for c in out for s in (sp.S.One, sp.S.NegativeOne)]
    return out


def _flatten(x) -> list:
    if isinstance(x, sp.MatrixBase):
        return list(x)
    if isinstance(x, (list, tuple)):
        out = []
        for item in x:
            out.extend(_flatten(item))
        return out
    return [sp.sympify(x)]


def _sample_value(sym: sp.Symbol, rng: random.Random):
    if sym.is_positive:
        return mpmath.mpf(rng.uniform(0.3, 2.0))
    if sym.is_negative:
        return -mpmath.mpf(rng.uniform(0.3, 2.0))
    return mpmath.mpf(rng.uniform(-1.5, 1.5))


def _mp_eval(e: sp.Expr, env: dict, memo: dict):
    """Evaluate a SymPy tree with mpmath, memoised on sub-expressions (linear in the DAG size)."""
    hit = memo.get(e)
    if hit is not None:
        return hit
    if e.is_Symbol:
        val = env[e]
    elif e.is_Integer:
        val = mpmath.mpf(int(e))
    elif e.is_Rational:
        val = mpmath.mpf(int(e.p)) / int(e.q)
    elif e.is_Number or e.is_NumberSymbol:
        val = mpmath.mpmathify(str(sp.N(e, 40)))
    elif e.is_Add:
        val = mpmath.fsum(_mp_eval(a, env, memo) for a in e.args)
    elif e.is_Mul:
        val = mpmath.fprod(_mp_eval(a, env, memo) for a in e.args)
    elif e.is_Pow:
        base, ex = e.args
        b = _mp_eval(base, env, memo)
        if ex.is_Integer:
            val = b ** int(ex)
        else:
            val = mpmath.power(b, _mp_eval(ex, env, memo))
    elif isinstance(e, sigmoid):
        val = 1 / (1 + mpmath.exp(-_mp_eval(e.args[0], env, memo)))
    elif isinstance(e, sp.exp):
        val = mpmath.exp(_mp_eval(e.args[0], env, memo))
    elif isinstance(e, sp.log):
        val = mpmath.log(_mp_eval(e.args[0], env, memo))
    elif isinstance(e, sp.Abs):
        val = abs(_mp_eval(e.args[0], env, memo))
    else:  # anything else: let SymPy evaluate this node
        sub = e.xreplace({k: sp.Float(str(v), 40) for k, v in env.items()})
        val = mpmath.mpmathify(complex(sp.N(sub, 40)))
    memo[e] = val
    return val


def _numerically_zero(exprs: Sequence[sp.Expr], points: int = 2, seed: int = 0) -> bool:
    """Evaluate at random points (30 digits); used only to *refuse* a symbolic 'zero'."""
    exprs = [sp.sympify(e) for e in exprs]
    syms = sorted(set().union(*[e.free_symbols for e in exprs]), key=lambda s: s.name)
    rng = random.Random(seed)
    with mpmath.workdps(30):
        for _ in range(points):
            env = {s: _sample_value(s, rng) for s in syms}
            memo: dict = {}
            try:
                vals = [_mp_eval(e, env, memo) for e in exprs]
            except (ZeroDivisionError, ValueError, TypeError):
                continue
            if any(abs(v) > mpmath.mpf(10) ** -18 for v in vals):
                return False
    return True


def _is_half_power(x) -> bool:
    return x.is_Pow and x.exp.is_Rational and x.exp.q == 2


def _algebraic_zero(e: sp.Expr, depth: int = 0) -> bool:
    r"""Decide ``e == 0`` treating square roots and sigmoids as algebraic atoms.

    1. Sigmoid atoms whose arguments are proved equal (recursively) are merged, and each
       class is replaced by one positive symbol :math:`s_k`.
    2. Every :math:`P^{k/2}` is replaced by :math:`r^k` with a new symbol :math:`r` and the
       relation :math:`r^2 = P` recorded.
    3. The numerator of ``together(e)`` is reduced modulo every :math:`r^2 - P` and expanded;
       a zero remainder proves ``e == 0`` (the numerator is a multiple of the relations).
    """
    if depth > 4:
        return False
    # 1. sigmoid atoms, merged when their arguments are provably equal
    sig_atoms = sorted(e.atoms(sigmoid), key=sp.default_sort_key)
    reps: list[tuple[sp.Expr, sp.Symbol]] = []
    sig_map = {}
    for atom in sig_atoms:
        for rep_arg, sym in reps:
            if _args_equal(atom.args[0], rep_arg, depth):
                sig_map[atom] = sym
                break
        else:
            sym = sp.Dummy(f"s{len(reps)}", positive=True)
            reps.append((atom.args[0], sym))
            sig_map[atom] = sym
    e = e.xreplace(sig_map)
    # 2. square roots as symbols with r**2 = P
    roots: dict[sp.Expr, sp.Symbol] = {}

    def root_of(base):
        key = sp.expand(base)
        if key not in roots:
            roots[key] = sp.Dummy(f"r{len(roots)}", positive=True)
        return roots[key]

    e = e.replace(_is_half_power, lambda x: root_of(x.base) ** x.exp.p)
    if any(_is_half_power(a) for a in e.atoms(sp.Pow)):
        return False  # nested radicals left: not handled
    num = sp.numer(sp.together(e))
    num = sp.expand(num)
    for key, r in roots.items():
        if num == 0:
            break
        if num.has(r):
            num = sp.expand(sp.Add(*[_reduce_power(term, r, key) for term in sp.Add.make_args(num)]))
    return num == 0


def _reduce_power(term: sp.Expr, r: sp.Symbol, square: sp.Expr) -> sp.Expr:
    """Rewrite a monomial ``c * r**k`` as ``c * square**(k // 2) * r**(k % 2)`` (uses r**2 = square)."""
    coeff, k = term.as_coeff_exponent(r)
    if coeff.has(r) or not k.is_Integer or k < 2:
        return term
    k = int(k)
    return coeff * square ** (k // 2) * r ** (k % 2)


_SIMPLIFY_MAX_OPS = 80  # fallback `simplify` only for small expressions (it is slow on big ones)

_ARGS_EQUAL_CACHE: dict[tuple[sp.Expr, sp.Expr], bool] = {}


def _args_equal(a: sp.Expr, b: sp.Expr, depth: int) -> bool:
    """Memoised proof that two sigmoid arguments are equal (the same pairs recur across entries)."""
    key = (a, b) if sp.default_sort_key(a) <= sp.default_sort_key(b) else (b, a)
    if key not in _ARGS_EQUAL_CACHE:
        diff = a - b
        _ARGS_EQUAL_CACHE[key] = bool(sp.expand(diff) == 0 or _algebraic_zero(diff, depth + 1))
    return _ARGS_EQUAL_CACHE[key]


def _reduces_to_zero(e: sp.Expr) -> bool:
    """Try, cheapest first: structural zero, the algebraic reduction, then (small expressions
    only) ``cancel`` and ``simplify``. Any ``True`` is a proof; ``False`` means *not proved*."""
    if e == 0:
        return True
    if _algebraic_zero(e):
        return True
    if sp.count_ops(e) < _SIMPLIFY_MAX_OPS:
        e = sp.expand(e)
        if e == 0 or sp.cancel(sp.together(e)) == 0:
            return True
        return sp.simplify(e) == 0
    return False


def prove_zero(expr, cases: Sequence[Mapping] = ({},), guard: bool = True) -> bool:
    """True iff every entry of ``expr`` is numerically 0 at random points and reduces to 0
    symbolically, in every case. Only the symbolic reduction proves; the numeric check refuses early."""
    for case in cases:
        entries = [e.xreplace(dict(case)) if case else e for e in _flatten(expr)]
        if guard and not _numerically_zero(entries):  # cheap: a false identity is refused here
            return False
        if not all(_reduces_to_zero(e) for e in entries):
            return False
    return True


def prove_equal(a, b, cases: Sequence[Mapping] = ({},), guard: bool = True) -> bool:
    """True iff ``a - b`` (entrywise for vectors/matrices) is proved to be 0 in every case."""
    fa, fb = _flatten(a), _flatten(b)
    if len(fa) != len(fb):
        return False
    return prove_zero([x - y for x, y in zip(fa, fb)], cases, guard)


def provably_positive(expr: sp.Expr, depth: int = 2) -> bool:
    """True only when positivity is certified (assumptions, factors, or the monotone lemma)."""
    expr = sp.sympify(expr)
    if expr.is_positive:
        return True
    if expr.is_Mul:
        return all(provably_positive(f, depth) for f in expr.args)
    if expr.is_Pow:
        base, ex = expr.args
        if provably_positive(base, depth) and ex.is_real:
            return True
        if ex.is_Integer and int(ex) % 2 == 0 and provably_nonzero_real(base, depth):
            return True
    if expr.is_Add and all(provably_positive(a, depth) for a in expr.args):
        return True
    if depth > 0:
        for s in sorted(expr.free_symbols, key=lambda s: s.name):
            if not s.is_positive:
                continue
            at0 = sp.limit(expr, s, 0, "+")
            if at0.is_finite is not True:
                continue
            if not (at0 == 0 or at0.is_nonnegative or provably_positive(at0, depth - 1)):
                continue
            if provably_positive(sp.diff(expr, s), depth - 1):
                return True
    return False


def provably_nonzero_real(expr: sp.Expr, depth: int = 2) -> bool:
    return bool(expr.is_real) and (provably_positive(expr, depth) or provably_positive(-expr, depth))


def provably_negative(expr: sp.Expr, depth: int = 2) -> bool:
    return provably_positive(-sp.sympify(expr), depth)


def prove_sign_by_factors(expr, factors: Sequence, sign: int = 1, cases: Sequence[Mapping] = ({},)) -> bool:
    r"""``expr`` = product of ``factors``; all factors > 0 (sign=+1) or all > 0 but one < 0 (sign=-1)."""
    if not prove_equal(expr, sp.Mul(*factors), cases):
        return False
    pos = [provably_positive(f) for f in factors]
    if sign > 0:
        return all(pos)
    neg = [provably_negative(f) for f in factors]
    return sum(neg) == 1 and all(p or n for p, n in zip(pos, neg))


def prove_limit(expr, var: sp.Symbol, point, value) -> bool:
    """SymPy's ``limit(expr, var, point)`` equals ``value`` (proved by ``prove_zero``)."""
    lim = sp.limit(expr, var, point)
    if lim.has(sp.Limit) or lim.has(sp.AccumBounds):
        return False
    return prove_zero(lim - value)


# --------------------------------------------------------------------------------------------
# Claims, results, rendering helpers
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Step:
    """A statement to prove: Markdown text (with LaTeX), how it is proved, and the proof thunk."""

    statement: str
    method: str
    prove: Callable[[], bool]


@dataclasses.dataclass(frozen=True)
class Claim:
    """A checked statement: ``holds`` is True only when the proof went through."""

    statement: str
    method: str
    holds: bool
    error: str = ""


@dataclasses.dataclass(frozen=True)
class Result:
    """The outcome of one derivation's ``check()``: its claims and the wall time it took."""

    name: str
    title: str
    claims: tuple[Claim, ...]
    seconds: float            # wall time of the proofs
    cpu_seconds: float = 0.0  # process CPU time (robust to other load on the machine)

    @property
    def holds(self) -> bool:
        return bool(self.claims) and all(c.holds for c in self.claims)

    @property
    def failed(self) -> tuple[Claim, ...]:
        return tuple(c for c in self.claims if not c.holds)


def run_steps(steps: Sequence[Step]) -> list[Claim]:
    """Run every proof; an exception counts as a failed claim (message kept in ``error``)."""
    out = []
    for st in steps:
        try:
            ok = bool(st.prove())
            err = ""
        except Exception as exc:  # a crashed proof is a failed proof, reported, not raised
            ok, err = False, f"{type(exc).__name__}: {exc}"
        out.append(Claim(st.statement, st.method, ok, err))
    return out


def timed_result(name: str, title: str, steps_fn: Callable[[], Sequence[Step]]) -> Result:
    t0, c0 = time.perf_counter(), time.process_time()
    claims = run_steps(steps_fn())
    return Result(name, title, tuple(claims), time.perf_counter() - t0, time.process_time() - c0)


NUMPY_MODULES = [{"sigmoid": scipy.special.expit}, "numpy"]


def lambdify(args, expr):
    """``sympy.lambdify`` to NumPy with a stable sigmoid (``scipy.special.expit``)."""
    return sp.lambdify(args, expr, modules=NUMPY_MODULES, cse=True)


def latex(expr) -> str:
    return sp.latex(expr, mul_symbol=None)


def render_claims(steps: Sequence[Step]) -> str:
    lines = ["## Machine-checked claims", "", "`linsam derive --check` proves each of these with SymPy:", ""]
    for i, st in enumerate(steps, 1):
        lines.append(f"{i}. {st.statement}  \n   *Proof:* {st.method}")
    return "\n".join(lines)


@functools.cache
def symbols_vec(prefix: str, n: int, **assumptions) -> tuple[sp.Symbol, ...]:
    """Real coordinate symbols ``prefix_1 .. prefix_n``."""
    assumptions.setdefault("real", True)
    return tuple(sp.Symbol(f"{prefix}_{{{k}}}", **assumptions) for k in range(1, n + 1))
