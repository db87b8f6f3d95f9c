"""Explicit Runge-Kutta methods: each is a Butcher tableau (data) run by one generic stepper."""

from __future__ import annotations

from dataclasses import dataclass

from .base import ODESolver


@dataclass(frozen=True)
class ButcherTableau:
    """An explicit Runge-Kutta tableau.

    Attributes:
        c: nodes, ``c[0] == 0``.
        a: strictly lower-triangular coefficients, ``a[i]`` has ``i`` entries.
        b: weights of the solution.
        error: weights of the embedded error estimate (``b - b_hat``), or ``None``.
        order / error_order: orders of the solution and of the embedded estimate.
        fsal: first stage of the next step equals the last stage of this one.
    """

    name: str
    c: tuple
    a: tuple
    b: tuple
    order: int
    error: tuple | None = None
    error_order: int | None = None
    fsal: bool = False

    def validate(self) -> None:
        s = len(self.b)
        if len(self.c) != s or len(self.a) != s or any(len(row) != i for i, row in enumerate(self.a)):
            raise ValueError(f"tableau {self.name}: c, a and b must describe {s} stages")
        if abs(sum(self.b) - 1.0) > 1e-12:
            raise ValueError(f"tableau {self.name}: weights b must sum to 1, got {sum(self.b)}")
        for i, row in enumerate(self.a):
            if abs(sum(row) - self.c[i]) > 1e-12:
                raise ValueError(f"tableau {self.name}: row {i} of a must sum to c[{i}]")
        if self.error is not None and abs(sum(self.error)) > 1e-12:
            raise ValueError(f"tableau {self.name}: error weights must sum to 0")
        if self.fsal and (self.c[-1] != 1.0 or tuple(self.a[-1]) != tuple(self.b[:-1]) or self.b[-1] != 0):
            raise ValueError(f"tableau {self.name}: FSAL needs a last stage at c=1 with a[-1] = b")


EULER = ButcherTableau("euler", c=(0.0,), a=((),), b=(1.0,), order=1)
MIDPOINT = ButcherTableau("midpoint", c=(0.0, 0.5), a=((), (0.5,)), b=(0.0, 1.0), order=2)
HEUN = ButcherTableau(
    "heun", c=(0.0, 1.0), a=((), (1.0,)), b=(0.5, 0.5), order=2, error=(-0.5, 0.5), error_order=1
)
RK4 = ButcherTableau(
    "rk4",
    c=(0.0, 0.5, 0.5, 1.0),
    a=((), (0.5,), (0.0, 0.5), (0.0, 0.0, 1.0)),
    b=(1 / 6, 1 / 3, 1 / 3, 1 / 6),
    order=4,
)
# Bogacki & Shampine, "A 3(2) pair of Runge-Kutta formulas", Appl. Math. Lett. 2(4), 1989.
BOSH3 = ButcherTableau(
    "bosh3",
    c=(0.0, 0.5, 0.75, 1.0),
    a=((), (0.5,), (0.0, 0.75), (2 / 9, 1 / 3, 4 / 9)),
    b=(2 / 9, 1 / 3, 4 / 9, 0.0),
    error=(2 / 9 - 7 / 24, 1 / 3 - 1 / 4, 4 / 9 - 1 / 3, -1 / 8),
    order=3,
    error_order=2,
    fsal=True,
)
# Dormand & Prince, "A family of embedded Runge-Kutta formulae", J. Comput. Appl. Math. 6(1), 1980.
_DP_B = (35 / 384, 0.0, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84, 0.0)
_DP_BHAT = (5179 / 57600, 0.0, 7571 / 16695, 393 / 640, -92097 / 339200, 187 / 2100, 1 / 40)
DOPRI5 = ButcherTableau(
    "dopri5",
    c=(0.0, 1 / 5, 3 / 10, 4 / 5, 8 / 9, 1.0, 1.0),
    a=(
        (),
        (1 / 5,),
        (3 / 40, 9 / 40),
        (44 / 45, -56 / 15, 32 / 9),
        (19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729),
        (9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656),
        _DP_B[:6],
    ),
    b=_DP_B,
    error=tuple(b - bh for b, bh in zip(_DP_B, _DP_BHAT)),
    order=5,
    error_order=4,
    fsal=True,
)
# Tsitouras, "Runge-Kutta pairs of order 5(4) satisfying only the first column simplifying
# assumption", Comput. Math. Appl. 62(2), 2011.
_TS_C = (0.0, 0.161, 0.327, 0.9, 0.9800255409045097, 1.0, 1.0)
_TS_A = (
    (0.3354806554923570,),
    (-6.359448489975075, 4.362295432869581),
    (-11.74888356406283, 7.495539342889836, -0.09249506636175525),
    (-12.92096931784711, 8.159367898576159, -0.071584973281401, -0.02826905039406838),
)
_TS_B = (0.09646076681806523, 0.01, 0.4798896504144996, 1.379008574103742, -3.290069515436081,
         2.324710524099774, 0.0)
TSIT5 = ButcherTableau(
    "tsit5",
    c=_TS_C,
    a=(
        (),
        (_TS_C[1],),
        (_TS_C[2] - sum(_TS_A[0]), *_TS_A[0]),
        (_TS_C[3] - sum(_TS_A[1]), *_TS_A[1]),
        (_TS_C[4] - sum(_TS_A[2]), *_TS_A[2]),
        (_TS_C[5] - sum(_TS_A[3]), *_TS_A[3]),
        _TS_B[:6],
    ),
    b=_TS_B,
    error=(0.001780011052226, 0.000816434459657, -0.007880878010262, 0.144711007173263,
           -0.582357165452555, 0.458082105929187, -1 / 66),
    order=5,
    error_order=4,
    fsal=True,
)


class ExplicitRK(ODESolver):
    """Generic explicit Runge-Kutta stepper for a :class:`ButcherTableau`.

    ``step`` returns ``(y1, error, state)``: ``error`` is ``dt * sum_i e_i k_i`` for embedded pairs
    (``None`` otherwise) and ``state`` the last stage for first-same-as-last tableaus.
    """

    def __init__(self, tableau: ButcherTableau) -> None:
        tableau.validate()
        self.tableau = tableau
        self.name = tableau.name
        self.order = tableau.order
        self.error_order = tableau.error_order

    def __repr__(self) -> str:
        return f"ExplicitRK({self.tableau.name})"

    def step(self, f, t0, t1, y0, state):
        tab = self.tableau
        dt = t1 - t0
        k = [state if (tab.fsal and state is not None and not isinstance(state, tuple)) else f(t0, y0)]
        y1 = None
        for i in range(1, len(tab.b)):
            yi = y0
            for j, aij in enumerate(tab.a[i]):
                if aij:
                    yi = yi + (aij * dt) * k[j]
            if tab.fsal and i == len(tab.b) - 1:
                y1 = yi
            k.append(f(t0 + tab.c[i] * dt, yi))
        if y1 is None:
            y1 = y0
            for bi, ki in zip(tab.b, k):
                if bi:
                    y1 = y1 + (bi * dt) * ki
        error = None
        if tab.error is not None:
            error = sum((ei * dt) * ki for ei, ki in zip(tab.error, k) if ei)
        return y1, error, (k[-1] if tab.fsal else ())
