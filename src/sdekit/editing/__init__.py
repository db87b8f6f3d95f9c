"""Editing and restoration with a trained diffusion model (layer 3, above :mod:`sdekit.diffusion`).

* SDEdit (Meng et al. 2022), inpainting by replacement, Cycle-SDE inversion and reconstruction and SDE-Drag
  (Nie et al. 2024, "The Blessing of Randomness: SDE Beats ODE in General Diffusion-based Image Editing").
* Inpainting by twisted sequential Monte Carlo (``inpaint(method="tds")``; Wu et al. 2023, the Twisted Diffusion
  Sampler), asymptotically exact in the number of particles.
* Multiplicative-noise removal in the log domain (see :mod:`sdekit.editing.speckle`).

Every function runs the diffusion layer's samplers through :func:`sdekit.diffusion.sample`; none has a time
loop of its own.
"""

from .cycle import Inversion, RecordedNoise, invert, reconstruct
from .drag import DragInfo, drag
from .inpaint import inpaint
from .sdedit import sdedit
from .speckle import GammaSpeckle, GBMSchedule, LogNormalSpeckle, Speckle, despeckle

__all__: list[str] = ["sdedit", "inpaint", "invert", "reconstruct", "Inversion", "RecordedNoise", "drag",
                      "DragInfo", "despeckle", "GBMSchedule", "Speckle", "GammaSpeckle", "LogNormalSpeckle"]
