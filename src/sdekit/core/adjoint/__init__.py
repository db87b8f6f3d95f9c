"""Gradients through SDE and ODE solves: the ``adjoint=`` strategies of :func:`sdeint` and :func:`odeint`.

A strategy is an object passed as ``sdeint(..., adjoint=...)`` or ``odeint(..., adjoint=...)``; the
entry points stay the same. Four strategies:

==========================  ===========================================  ==========================
strategy                    gradient                                     memory in the step count n
==========================  ===========================================  ==========================
:class:`Backprop`           exact for the discretisation (autograd)      O(n)
:class:`Checkpointed`       exact for the discretisation (recomputed)    O(sqrt(n)) by default
:class:`ContinuousAdjoint`  the adjoint SDE/ODE solved backwards         O(1) (plus the outputs)
:class:`ReversibleAdjoint`  exact for reversible Heun (steps inverted)   O(1) (plus the outputs)
==========================  ===========================================  ==========================

**Continuous adjoint of an SDE** (Li, Wong, Chen & Duvenaud, "Scalable gradients for stochastic
differential equations", AISTATS 2020). For a Stratonovich SDE ``dy = f dt + g o dW`` and a loss on
``y(t_i)``, the adjoint ``a = dL/dy`` and the parameter adjoint ``a_theta`` satisfy, along the *same*
Brownian path solved backwards in time,

    dy       =  f dt + g o dW
    da       = -a^T (df/dy) dt - a^T d(g dW)/dy
    da_theta = -a^T (df/dtheta) dt - a^T d(g dW)/dtheta

from ``(y(T), dL/dy(T), 0)``, adding ``dL/dy(t_i)`` to ``a`` at every output time (where ``y`` is also
reset to the stored forward value). The augmented system is itself a Stratonovich SDE, defined here
through ``f`` and ``g_prod`` only, and is solved by the core solvers (``midpoint`` by default, or
``heun``; ``euler`` for additive noise, where Ito and Stratonovich coincide) in the one time loop.

*Ito SDEs.* The forward Ito SDE is first rewritten in Stratonovich form,
``f_strat = f - 1/2 sum_j (dg_j/dy) g_j`` (columns ``g_j`` of ``g``; for diagonal noise the
elementwise ``1/2 g dg/dy``, which assumes, as Milstein's method does, that ``g_i`` depends on
``y_i`` only), and the adjoint of that Stratonovich SDE is solved with a Stratonovich solver. Both
forms have the same pathwise solution, so the gradients agree with backpropagation through an Ito
solver as the steps shrink. The correction is differentiated in ``y`` and ``theta`` (second
derivatives of ``g``), by double vector-Jacobian products.

**Continuous adjoint of an ODE** (Chen, Rubanova, Bettencourt & Duvenaud, "Neural ordinary
differential equations", NeurIPS 2018): the same system without noise, solved by the same (or a
chosen) ODE solver with error control on the whole augmented state.

**Reversible adjoint** (Kidger, Foster, Li & Lyons, "Efficient and accurate gradients for neural
SDEs", NeurIPS 2021). The reversible Heun step ``(y, z, f(z), g(z)) -> (y', z', f(z'), g(z'))`` can be
inverted in closed form, ``z = 2 y' - z' - f(z') dt - g(z') dW`` (the solver's ``inverse_step``, used
here); the backward pass reconstructs
every step from the end state and backpropagates through it locally, so the gradient is the exact
gradient of the discrete forward solve (up to floating-point rounding) with one drift and one
diffusion evaluation (plus their vector-Jacobian product) per step and memory independent of n.

**Parameters.** The gradient is taken with respect to ``y0`` and to ``params``. By default these are
the tensors with ``requires_grad=True`` that the SDE (or the ODE function) reaches: the parameters of
the SDE when it is a ``torch.nn.Module`` (or a bound method of one), and the tensors its functions
capture, found by inspecting them: closure cells, default arguments, the globals their code names,
and the parameters of modules among these (so ``SDE(lambda t, y: -w * y, ...)`` or
``odeint(lambda t, y: net(y), ...)`` get the same gradient as with ``Backprop``). Tensors reached any
other way (e.g. through an attribute of a captured object) are not found: pass them explicitly,
``ContinuousAdjoint(params=(w, b))``, which replaces the search. A plain callable in which the search
finds nothing gets a warning (``params=()`` silences it).

**Layout.** The base class and the contract with the loop live in :mod:`sdekit.core.strategy` (the loop
imports no strategy); one private module per strategy here (``_backprop``, ``_checkpointed``,
``_continuous``, ``_reversible``), each implementing ``solve_sde`` and ``solve_ode``; shared pieces in
``_params`` (the ``params=`` check and the captured-tensor search), ``_adjoint_sde`` (the augmented
adjoint SDE) and ``_autograd``.
"""

from __future__ import annotations

from ..strategy import AdjointStrategy
from ._backprop import Backprop
from ._checkpointed import Checkpointed
from ._continuous import ContinuousAdjoint
from ._params import check_params as check_params
from ._params import resolve_params as resolve_params
from ._reversible import ReversibleAdjoint

__all__ = ["AdjointStrategy", "Backprop", "Checkpointed", "ContinuousAdjoint", "ReversibleAdjoint"]

# check_params and resolve_params are the core's internal interface to the diffusion layer
# (AdjointDEIS): importable from here, not exported from sdekit.
