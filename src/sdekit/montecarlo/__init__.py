"""Monte Carlo with SDEs.

Feynman–Kac estimates of parabolic Cauchy problems with variable-exponent coefficients, checked
against a Crank–Nicolson reference ("Stochastic representation of solutions for the parabolic Cauchy
problem with variable exponent coefficients"), and samplers for unnormalised densities: unadjusted,
underdamped and annealed Langevin, and the training-free multiscale samplers MultALMC / MultCDiff
("Sampling by averaging: A multiscale approach to score estimation"). Every sampler counts the target's
gradient evaluations so that comparisons are at equal budget.
"""

# public names are added module by module below (each import line lists its module's names)

__all__: list[str] = []
