"""wdax: weight decay done right, as optax gradient transformations."""

from wdax import diagnostics
from wdax import masks
from wdax import paths
from wdax.decay import DecayState
from wdax.decay import cautious
from wdax.decay import decoupled
from wdax.decay import l1
from wdax.decay import l2
from wdax.decay import toward
from wdax.describe import describe
from wdax.paths import leaf_paths
from wdax.rate import Rates
from wdax.rate import rates

__version__ = '0.1.0'

__all__ = [
    'DecayState',
    'Rates',
    'cautious',
    'decoupled',
    'describe',
    'diagnostics',
    'l1',
    'l2',
    'leaf_paths',
    'masks',
    'paths',
    'rates',
    'toward',
]
