"""Neural SDEs for time series.

So far: control paths over irregular, NaN-holed series (:func:`natural_cubic_spline`,
:func:`hermite_cubic_spline`, :func:`control_path`, evaluated inside an SDE's drift at solver times) and the
stable neural SDEs of Oh, Lim, Kim, "Stable Neural Stochastic Differential Equations in Analyzing
Irregular Time Series Data" (ICLR 2024): :class:`LSDE`, :class:`LNSDE`, :class:`GSDE` as core SDEs solved
by :func:`sdekit.sdeint`, with the baselines :class:`NeuralCDE` (solved by :func:`sdekit.odeint`) and
:class:`NaiveNeuralSDE`, a classification head (:class:`PathClassifier`, trained by
:class:`sdekit.train.Trainer` with :func:`classification_loss`) and sktime's bundled UCR/UEA sets with
seeded missingness (:func:`load_bundled`, :func:`drop_observations`). Fractional-noise latent SDEs and
directed-chain SDE generators (issue 18) will join as their own modules.
"""

from .data import BUNDLED_DATASETS, drop_observations, load_bundled, normalise, stack_series
from .models import PathClassifier, classification_loss
from .splines import CubicPath, check_series, control_path, hermite_cubic_spline, natural_cubic_spline
from .stable import GSDE, LNSDE, LSDE, NaiveNeuralSDE, NeuralCDE, StableSDE

__all__ = [
    "CubicPath", "natural_cubic_spline", "hermite_cubic_spline", "control_path", "check_series",
    "StableSDE", "LSDE", "LNSDE", "GSDE", "NaiveNeuralSDE", "NeuralCDE",
    "PathClassifier", "classification_loss",
    "BUNDLED_DATASETS", "load_bundled", "drop_observations", "stack_series", "normalise",
]
