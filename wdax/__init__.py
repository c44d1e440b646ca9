"""wdax: weight decay done right, as optax gradient transformations."""

from wdax import diagnostics
from wdax import layerwise
from wdax import learning_rates
from wdax import masks
from wdax import param_labels
from wdax import paths
from wdax import precision
from wdax import rate
from wdax import report
from wdax import rounding
from wdax import schedules
from wdax.decay import DecayState
from wdax.decay import cautious
from wdax.decay import decoupled
from wdax.decay import l1
from wdax.decay import l2
from wdax.layerwise import layerwise_lr
from wdax.layerwise import layerwise_rates
from wdax.learning_rates import scale_by_learning_rate
from wdax.masks import Mask
from wdax.masks import MaskLike
from wdax.optimizers import adams
from wdax.optimizers import adamw
from wdax.optimizers import sgdw
from wdax.param_labels import Labels
from wdax.param_labels import labels
from wdax.paths import leaf_paths
from wdax.precision import LostDecayWarning
from wdax.rate import LrLike
from wdax.rate import RateLike
from wdax.rate import Rates
from wdax.rate import rates
from wdax.reference import TowardState
from wdax.reference import toward
from wdax.report import Report
from wdax.report import describe
from wdax.rounding import RoundingState
from wdax.rounding import stochastic_rounding

__version__ = '0.1.0'

# Flax and Orbax load only when these are first touched, so `import wdax` stays
# light: `from wdax import training` or `wdax.training` both work.
_LAZY_SUBMODULES = ('checkpoint', 'sharding', 'sweep', 'training')


def __getattr__(name: str):
  if name in _LAZY_SUBMODULES:
    import importlib

    return importlib.import_module(f'wdax.{name}')
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')

__all__ = [
    'DecayState',
    'LostDecayWarning',
    'Labels',
    'LrLike',
    'Mask',
    'MaskLike',
    'RateLike',
    'Rates',
    'Report',
    'RoundingState',
    'TowardState',
    'adams',
    'adamw',
    'cautious',
    'decoupled',
    'describe',
    'diagnostics',
    'l1',
    'l2',
    'labels',
    'layerwise',
    'layerwise_lr',
    'layerwise_rates',
    'learning_rates',
    'leaf_paths',
    'masks',
    'param_labels',
    'paths',
    'precision',
    'rate',
    'rates',
    'report',
    'rounding',
    'scale_by_learning_rate',
    'schedules',
    'sgdw',
    'stochastic_rounding',
    'toward',
]
