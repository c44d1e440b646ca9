"""wdax: weight decay done right, as optax gradient transformations."""

from wdax import diagnostics
from wdax import masks
from wdax.decay import DecayState, decoupled, l2
from wdax.describe import describe
from wdax.paths import paths
from wdax.rates import Rates, rates

__version__ = '0.1.0'

__all__ = [
    'DecayState',
    'Rates',
    'decoupled',
    'describe',
    'diagnostics',
    'l2',
    'masks',
    'paths',
    'rates',
]
