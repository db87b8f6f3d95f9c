"""Diffusion on constrained domains: reflected diffusion on boxes (Lou & Ermon 2023, "Reflected Diffusion
Models", ICML): the box and its reflection map, the reflected heat kernel and its score, score matching
against it, reverse samplers that reflect after every step, the probability-flow ODE with the paper's
boundary treatment, classifier-free guidance and thresholding as the baseline. Dirichlet diffusion on the simplex
(Avdeyev et al. 2023, DDSM, ICML): stick-breaking, the Jacobi process and its transition density and score,
DDSM's score-matching loss and the reverse sampler with time dilation; Sudoku data without downloads (grids,
unique-solution puzzles, a row/column/box check) and a Sudoku score network."""

from ._box import Box
from ._kernel import SWITCH_SIGMA, reflected_kernel_score, reflected_log_kernel, reflected_perturb
from .dirichlet import (
    DIRICHLET_EPS,
    SIMPLEX_ATOL,
    DirichletScoreMatching,
    JacobiDiffusion,
    JacobiReverseSDE,
    JacobiScoreTable,
    dirichlet_reverse_sample,
    inverse_stick_breaking,
    jacobi_density,
    jacobi_log_density,
    jacobi_polynomials,
    jacobi_score,
    one_hot_sticks,
    stick_breaking,
    stick_parameters,
)
from .reflected import (
    ClassifierFreeGuidance,
    LabelDropout,
    ReflectedPFODE,
    ReflectedSampler,
    ReflectedScoreMatching,
    ThresholdedSampler,
)
from .sudoku import (
    SudokuScoreNet,
    SudokuValidity,
    check_sudoku,
    sudoku_from_one_hot,
    sudoku_grids,
    sudoku_one_hot,
    sudoku_puzzles,
    sudoku_solutions,
    sudoku_validity,
)

__all__ = [
    "Box", "SWITCH_SIGMA", "reflected_log_kernel", "reflected_kernel_score", "reflected_perturb",
    "ReflectedScoreMatching", "LabelDropout", "ReflectedSampler", "ThresholdedSampler", "ReflectedPFODE",
    "ClassifierFreeGuidance",
    "SIMPLEX_ATOL", "stick_parameters", "stick_breaking", "inverse_stick_breaking", "JacobiDiffusion",
    "jacobi_polynomials", "jacobi_density", "jacobi_log_density", "jacobi_score", "JacobiScoreTable",
    "DIRICHLET_EPS", "JacobiReverseSDE", "one_hot_sticks", "dirichlet_reverse_sample", "DirichletScoreMatching",
    "SudokuValidity", "sudoku_grids", "sudoku_validity", "check_sudoku", "sudoku_solutions", "sudoku_puzzles",
    "sudoku_one_hot", "sudoku_from_one_hot", "SudokuScoreNet",
]
