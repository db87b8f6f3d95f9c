"""Neural SDEs for time series.

So far: control paths over irregular, NaN-holed series (:func:`natural_cubic_spline`,
:func:`hermite_cubic_spline`, :func:`control_path`, evaluated inside an SDE's drift at solver times) and the
stable neural SDEs of Oh, Lim, Kim, "Stable Neural Stochastic Differential Equations in Analyzing
Irregular Time Series Data" (ICLR 2024): :class:`LSDE`, :class:`LNSDE`, :class:`GSDE` as core SDEs solved
by :func:`sdekit.sdeint`, with the baselines :class:`NeuralCDE` (solved by :func:`sdekit.odeint`) and
:class:`NaiveNeuralSDE`, a classification head (:class:`PathClassifier`, trained by
:class:`sdekit.train.Trainer` with :func:`classification_loss`) and sktime's bundled UCR/UEA sets with
seeded missingness (:func:`load_bundled`, :func:`drop_observations`). Directed-chain SDE generators of Min, Hu,
Ichiba, "Directed Chain Generative Adversarial Networks" (ICML 2023): :class:`DirectedChainSDE` (generation by
chaining) and the plain :class:`NeuralSDEGenerator`, trained by the signature MMD (:class:`SignatureMMDLoss`;
:func:`signature`, :func:`signature_kernel`, :func:`signature_mmd` in torch), on the opinion-dynamics data
(:func:`opinion_dynamics`). Fractional-noise latent SDEs (issue 18) join as their own module.
"""

from .data import BUNDLED_DATASETS, drop_observations, load_bundled, normalise, stack_series
from .dc_sde import DirectedChainSDE, NeuralSDEGenerator, OpinionDynamics, SignatureMMDLoss, opinion_dynamics
from .fbm import (
    FractionalLatentSDE,
    FractionalNoise,
    MarkovFBM,
    exact_fbm,
    fbm_covariance,
    fbm_weights,
    fractional_ou,
    gamma_grid,
    markov_fou_log_likelihood,
)
from .models import PathClassifier, classification_loss
from .signature import (
    signature,
    signature_channels,
    signature_kernel,
    signature_kernel_gram,
    signature_mmd,
    time_augment,
)
from .splines import CubicPath, check_series, control_path, hermite_cubic_spline, natural_cubic_spline
from .stable import GSDE, LNSDE, LSDE, NaiveNeuralSDE, NeuralCDE, StableSDE

__all__ = [
    "CubicPath", "natural_cubic_spline", "hermite_cubic_spline", "control_path", "check_series",
    "StableSDE", "LSDE", "LNSDE", "GSDE", "NaiveNeuralSDE", "NeuralCDE",
    "PathClassifier", "classification_loss",
    "BUNDLED_DATASETS", "load_bundled", "drop_observations", "stack_series", "normalise",
    "MarkovFBM", "FractionalNoise", "FractionalLatentSDE", "fbm_weights", "gamma_grid", "fbm_covariance",
    "exact_fbm", "fractional_ou", "markov_fou_log_likelihood",
    "signature", "signature_channels", "signature_kernel", "signature_kernel_gram", "signature_mmd", "time_augment",
    "NeuralSDEGenerator", "DirectedChainSDE", "SignatureMMDLoss", "OpinionDynamics", "opinion_dynamics",
]
