"""The diffusion layer: schedules, the denoiser contract and its adapters, exact oracles, losses,
time grids and samplers (see ``docs/architecture.md``).

``__all__`` lists what a user needs. The one-line conversions between parameterisations
(``x0_from_eps``, ...) live in :mod:`sdekit.diffusion.prediction` (``convert`` reaches all of them), the
time helpers (``as_time``, ...) in the layer's private ``_utils``."""

from .adjoint import AdjointDEIS, AdjointStats, Backprop
from .fokker_planck import (
    FokkerPlanckLoss,
    ODESDEGap,
    PotentialMLP,
    PotentialScore,
    log_density_residual,
    ode_sde_gap,
    score_residual,
)
from .forward import CLD, MatrixLinearSDE
from .geometry import annealed_mean_shift, mean_shift, ode_jump, score_deviation, trajectory_convergence
from .gits import GITS, gits_path
from .interop import DiffusersModel, from_diffusers
from .likelihood import ELBOEstimate, LikelihoodInfo, bits_per_dim, dequantize, elbo, log_likelihood
from .losses import (
    TIME_SAMPLINGS,
    WEIGHTINGS,
    DenoisingScoreMatching,
    EDMWeighting,
    FlowMatchingLoss,
    LikelihoodWeighting,
    LogNormalSampling,
    MinSNRWeighting,
    ScoreWeighting,
    SNRWeighting,
    TimeSampling,
    UniformTimeSampling,
    VWeighting,
    Weighting,
    X0Weighting,
)
from .oracles import EmpiricalData, GaussianMixture
from .prediction import (
    PREDICTIONS,
    Denoiser,
    EDMPrediction,
    EpsPrediction,
    KarrasPrediction,
    Prediction,
    ScorePrediction,
    VelocityPrediction,
    VPrediction,
    X0Prediction,
    as_denoiser,
    convert,
    get_prediction,
)
from .samplers import (
    DDIM,
    DEIS,
    ERSDE,
    IPNDM,
    PFODE,
    SAMPLERS,
    DPMSolverPP,
    EDMHeun,
    EulerMaruyama,
    PredictorCorrector,
    SampleInfo,
    Sampler,
    SamplerContext,
    SASolver,
    SDEDPMSolverPP,
    UniPC,
    get_sampler,
    sample,
)
from .schedules import EDM, VE, VP, CosineVP, DiscreteVP, LinearFlow, Schedule, SubVP
from .sde import ForwardSDE, ProbabilityFlowODE, ReverseSDE
from .sharded import Shard, gather_shards, sample_sharded
from .timesteps import (
    TIME_GRIDS,
    Karras,
    TimeGrid,
    TimeTensor,
    UniformLogSNR,
    UniformTime,
    VPTime,
    get_time_grid,
)

__all__ = [
    # schedules
    "Schedule", "VP", "CosineVP", "DiscreteVP", "SubVP", "VE", "EDM", "LinearFlow",
    "ForwardSDE", "ReverseSDE", "ProbabilityFlowODE",
    # predictions and the denoiser contract
    "Prediction", "X0Prediction", "EpsPrediction", "VPrediction", "ScorePrediction", "VelocityPrediction",
    "KarrasPrediction", "EDMPrediction", "PREDICTIONS", "get_prediction", "Denoiser", "as_denoiser",
    "convert",
    # oracles
    "GaussianMixture", "EmpiricalData",
    # losses
    "DenoisingScoreMatching", "FlowMatchingLoss", "Weighting", "X0Weighting", "SNRWeighting", "VWeighting",
    "ScoreWeighting", "LikelihoodWeighting", "EDMWeighting", "MinSNRWeighting", "WEIGHTINGS", "TimeSampling",
    "UniformTimeSampling", "LogNormalSampling", "TIME_SAMPLINGS",
    # time grids and samplers
    "TimeGrid", "UniformTime", "UniformLogSNR", "Karras", "VPTime", "TimeTensor", "TIME_GRIDS", "get_time_grid",
    "sample", "Sampler", "SamplerContext", "SampleInfo", "DDIM", "EulerMaruyama", "PFODE", "SAMPLERS",
    "get_sampler", "DPMSolverPP", "SDEDPMSolverPP", "DEIS", "IPNDM", "UniPC", "EDMHeun", "PredictorCorrector",
    "SASolver", "ERSDE",
    # Fokker-Planck residual and the ODE-SDE gap
    "PotentialScore", "PotentialMLP", "log_density_residual", "score_residual", "FokkerPlanckLoss", "ode_sde_gap",
    "ODESDEGap",
    # likelihoods
    "log_likelihood", "LikelihoodInfo", "elbo", "ELBOEstimate", "bits_per_dim", "dequantize",
    # gradients through sampling
    "AdjointDEIS", "AdjointStats", "Backprop",
    # trajectory geometry
    "mean_shift", "annealed_mean_shift", "trajectory_convergence", "ode_jump", "score_deviation",
    # fitted grids, sharded sampling, diffusers models
    "GITS", "gits_path", "sample_sharded", "gather_shards", "Shard", "from_diffusers", "DiffusersModel",
    # forward processes
    "MatrixLinearSDE", "CLD",
]
