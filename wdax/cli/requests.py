"""What a command asks for: :class:`SweepRequest` and
:class:`DescribeRequest`, frozen, made once (by :mod:`~wdax.cli.parsing` from
the command line, or by :meth:`SweepRequest.of` from Python) and never
changed.

A sweep's options that depend on its problem (classification, regression,
language) take that problem's default (:data:`DEFAULTS`) when not given;
every check that needs only the options happens in :meth:`SweepRequest.of`,
before any data is read or any JAX device is started.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

from wdax import sweep
from wdax.cli.errors import BadInput
from wdax.sweep import datasets

DEFAULT_OUT = 'wdax-out'
DEFAULT_DATA = 'digits'
MAX_WIDTH = 4096  # the transformer's width, for --data text

# Counts become int32 shapes and step counts in JAX; seeds seed NumPy's and
# JAX's generators; rates and learning rates are float32 in the compiled
# programs. Beyond these, a value would overflow, not train.
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1
FLOAT_MAX = 3.4028234663852886e38  # the largest finite float32
MAX_RATES = 1000

# What each problem is scored by, besides its loss, and the criteria it takes.
SCORES = {'classification': 'accuracy', 'regression': 'r2', 'language': 'accuracy'}
CRITERIA = {
    'classification': ('loss', 'accuracy'),
    'regression': ('loss', 'r2'),
    'language': ('loss', 'perplexity', 'accuracy'),
}


@dataclasses.dataclass(frozen=True)
class Defaults:
  """The defaults of the options that depend on the problem."""

  rates: str
  epochs: int
  hidden: tuple[int, ...]
  lr: float
  test_size: float


# The tables train an MLP, the text a small transformer, whose sweep is kept
# short so that it stays quick on a CPU.
DEFAULTS = {
    'classification': Defaults('1e-3:10:16', 20, (256,), 3e-3, 0.5),
    'regression': Defaults('1e-2:100:16', 40, (256,), 3e-3, 0.5),
    'language': Defaults('1e-2:10:4', 10, (32,), 3e-3, 0.2),
}


def parse_rates(text: str) -> list[float]:
  """``START:STOP:NUM`` (log-spaced, inclusive) or a comma list of rates.

  Examples:
    >>> parse_rates('1e-3:1e-1:3')
    [0.001, 0.01, 0.1]
    >>> parse_rates('0, 1e-4')
    [0.0, 0.0001]
  """
  text = text.strip()
  if ':' in text:
    parts = text.split(':')
    if len(parts) != 3:
      raise BadInput(f'--rates {text!r}: expected START:STOP:NUM')
    try:
      start, stop, num = float(parts[0]), float(parts[1]), int(parts[2])
    except ValueError:
      raise BadInput(f'--rates {text!r}: expected START:STOP:NUM, e.g. 1e-4:10:16') from None
    if num < 1:
      raise BadInput(f'--rates {text!r}: the grid is empty (NUM must be at least 1)')
    if num > MAX_RATES:
      raise BadInput(f'--rates {text!r}: at most {MAX_RATES} rates (NUM is {num})')
    if not (start > 0 and stop > 0 and math.isfinite(start) and math.isfinite(stop)):
      raise BadInput(f'--rates {text!r}: START and STOP of a log grid must be positive')
    if max(start, stop) > FLOAT_MAX:
      raise BadInput(f'--rates {text!r}: rates must be at most {FLOAT_MAX:.7g} (float32)')
    if num == 1:
      return [start]
    step = (math.log10(stop) - math.log10(start)) / (num - 1)
    return [float(f'{10 ** (math.log10(start) + i * step):.6g}') for i in range(num)]
  rates = []
  for item in text.split(','):
    if not item.strip():
      continue
    try:
      rate = float(item)
    except ValueError:
      raise BadInput(f'--rates: {item.strip()!r} is not a number') from None
    if not math.isfinite(rate) or rate < 0:
      raise BadInput(f'--rates: {item.strip()!r} must be finite and non-negative')
    if rate > FLOAT_MAX:
      raise BadInput(f'--rates: {item.strip()!r} must be at most {FLOAT_MAX:.7g} (float32)')
    rates.append(rate)
  if not rates:
    raise BadInput('--rates: the grid is empty')
  if len(set(rates)) > MAX_RATES:
    raise BadInput(f'--rates: at most {MAX_RATES} rates (the list has {len(set(rates))})')
  return sorted(set(rates))


def problem_of(data: str) -> str:
  """The problem ``--data`` poses: a built-in set's
  (:data:`wdax.sweep.datasets.NAMES`), or classification for a file."""
  return datasets.NAMES.get(data, 'classification')


@dataclasses.dataclass(frozen=True)
class SweepRequest:
  """``wdax sweep``'s options, checked, with the problem's defaults filled
  in; ``wdax sweep --help`` says what each means.

  Attributes:
    data: a built-in data set's name or a file's path.
    problem: ``'classification'``, ``'regression'`` or ``'language'``.
    kinds: the decay kinds, in order, without repeats.
    rates: the rates asked for, sorted; :attr:`grid` adds rate 0.
    argv: the command line it came from (empty from Python).
  """

  data: str
  problem: str
  kinds: tuple[str, ...]
  rates: tuple[float, ...]
  folds: int
  seeds: int
  epochs: int
  hidden: tuple[int, ...]
  batch_size: int
  lr: tuple[float, ...]
  dropout: tuple[float, ...] | None
  prune: tuple[int, int] | None
  criterion: str
  one_se: bool
  test_size: float
  seed: int
  devices: int | None
  chunk_size: int | None
  cache: str | None
  no_cache: bool
  out: str
  quiet: bool
  argv: tuple[str, ...] = ()

  @classmethod
  def of(
      cls,
      data: str = DEFAULT_DATA,
      *,
      kinds: Sequence[str] = ('adamw',),
      rates: str | Sequence[float] | None = None,
      folds: int = 5,
      seeds: int = 1,
      epochs: int | None = None,
      hidden: Sequence[int] | None = None,
      batch_size: int = 32,
      lr: Sequence[float] | None = None,
      dropout: Sequence[float] | None = None,
      prune: tuple[int, int] | None = None,
      criterion: str = 'loss',
      one_se: bool = False,
      test_size: float | None = None,
      seed: int = 0,
      devices: int | None = None,
      chunk_size: int | None = None,
      cache: str | None = None,
      no_cache: bool = False,
      out: str = DEFAULT_OUT,
      quiet: bool = False,
      argv: Sequence[str] = (),
  ) -> SweepRequest:
    """The request of these options, the problem's defaults for those left
    ``None``; raises :class:`~wdax.cli.errors.BadInput`.

    Examples:
      >>> from wdax.cli.requests import SweepRequest
      >>> request = SweepRequest.of('wine', rates='0.1,1', folds=3)
      >>> request.problem, request.grid, request.epochs, request.metric
      ('classification', (0.0, 0.1, 1.0), 20, ('val_loss', 'min'))
    """
    problem = problem_of(data)
    default = DEFAULTS[problem]
    if rates is None or isinstance(rates, str):
      rates = parse_rates(default.rates if rates is None else rates)
    request = cls(
        data=data, problem=problem, kinds=tuple(dict.fromkeys(kinds)),
        rates=tuple(sorted({float(r) for r in rates})), folds=folds, seeds=seeds,
        epochs=default.epochs if epochs is None else epochs,
        hidden=default.hidden if hidden is None else tuple(hidden),
        batch_size=batch_size, lr=(default.lr,) if lr is None else tuple(lr),
        dropout=None if dropout is None else tuple(dropout), prune=prune,
        criterion=criterion, one_se=one_se,
        test_size=default.test_size if test_size is None else test_size, seed=seed,
        devices=devices, chunk_size=chunk_size, cache=cache, no_cache=no_cache, out=out,
        quiet=quiet, argv=tuple(argv),
    )
    request._check()
    return request

  def _check(self) -> None:
    """Refuses options that do not go together."""
    if not 0 < self.test_size < 1:
      raise BadInput(f'--test-size {self.test_size}: must be between 0 and 1')
    if not self.rates or len(self.rates) > MAX_RATES:
      raise BadInput(f'--rates: give 1 to {MAX_RATES} rates')
    for kind in self.kinds:
      if kind not in sweep.KINDS:
        raise BadInput(f'--kind {kind!r}: unknown; choose from {", ".join(sorted(sweep.KINDS))}')
    allowed = CRITERIA[self.problem]
    if self.criterion not in allowed:
      what = f'--data {self.data}' if self.data in datasets.NAMES else 'a data file (classes)'
      raise BadInput(
          f'--criterion {self.criterion}: {what} is a {self.problem} problem; choose '
          f'from {", ".join(allowed)}'
      )
    if len(self.lr) > 1 and self.dropout is not None and len(self.dropout) > 1:
      raise BadInput(
          '--lr and --dropout: sweep one of them with the rate, not both (a grid of '
          'three names has no plot)'
      )
    width = self.hidden[0]
    if self.problem == 'language' and (len(self.hidden) != 1 or width % 4 or width > MAX_WIDTH):
      raise BadInput(
          f'--hidden {",".join(map(str, self.hidden))}: for --data text, the '
          f"transformer's width: one value, divisible by 4 (its heads), at most {MAX_WIDTH}"
      )
    if self.cache is not None and self.no_cache:
      raise BadInput('--cache and --no-cache: give one of them')
    if self.prune is not None and self.prune[0] > self.epochs:
      raise BadInput(
          f'--prune {self.prune[0]}:{self.prune[1]}: the first rung ({self.prune[0]} '
          f'epochs) must end by the last epoch (--epochs {self.epochs})'
      )

  @property
  def grid(self) -> tuple[float, ...]:
    """The rates swept: :attr:`rates` and rate 0, no decay, always trained as
    the baseline every rate is compared with."""
    return tuple(sorted({0.0, *self.rates}))

  @property
  def space(self) -> dict[str, list[float]]:
    """The names the sweep varies: the rate (with 0), and the learning rate
    or the dropout rate when given as lists."""
    space = {'rate': list(self.grid)}
    if len(self.lr) > 1:
      space['lr'] = sorted(self.lr)
    if self.dropout is not None:
      space['dropout'] = sorted(self.dropout)
    return space

  @property
  def trainings(self) -> int:
    """The trainings of the sweep: points x folds x seeds x kinds."""
    points = math.prod(len(v) for v in self.space.values())
    return points * self.folds * self.seeds * len(self.kinds)

  @property
  def score(self) -> str:
    """The metric besides the loss: ``accuracy`` or ``r2``."""
    return SCORES[self.problem]

  @property
  def metric(self) -> tuple[str, str]:
    """The validation metric and mode the sweep chooses by: perplexity is
    chosen as the loss, which it grows with."""
    if self.criterion in ('loss', 'perplexity'):
      return 'val_loss', 'min'
    return f'val_{self.criterion}', 'max'

  @property
  def halving(self) -> sweep.Halving | None:
    """The successive halving of ``--prune``, or None: no decay is never
    pruned, so it stays the baseline at every rung, and the
    one-standard-error rule keeps the strongest decay that a rung cannot
    tell from its best (decay's benefit shows late)."""
    if self.prune is None:
      return None
    return sweep.Halving(
        min_epochs=self.prune[0], reduction_factor=self.prune[1], keep={'rate': 0.0},
        one_se='rate',
    )


@dataclasses.dataclass(frozen=True)
class DescribeRequest:
  """``wdax describe``'s options: the built-in ``model`` (``'mlp'`` or
  ``'transformer'``), the ``mask``'s name, the ``rate`` shown, and the
  ``hidden`` widths of the MLP."""

  model: str
  mask: str
  rate: float
  hidden: tuple[int, ...]

  def __post_init__(self):
    if self.rate < 0 or not math.isfinite(self.rate):
      raise BadInput(f'--rate {self.rate}: must be finite and non-negative')


Request = SweepRequest | DescribeRequest
