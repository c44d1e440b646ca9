"""Parsing the command line into a request (:mod:`wdax.cli.requests`): the
options, their types and their ranges.

Each option's range is checked here, the options that depend on each other
and on the data set's problem by :meth:`~wdax.cli.requests.SweepRequest.of`:
all before any data is read or any JAX device is started.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from wdax.cli.describing import MASKS
from wdax.cli.errors import BadInput
from wdax.cli.requests import DEFAULT_DATA
from wdax.cli.requests import DEFAULT_OUT
from wdax.cli.requests import DEFAULTS
from wdax.cli.requests import FLOAT_MAX
from wdax.cli.requests import INT_MAX
from wdax.cli.requests import MAX_RATES
from wdax.cli.requests import MAX_WIDTH
from wdax.cli.requests import SEED_MAX
from wdax.cli.requests import DescribeRequest
from wdax.cli.requests import Request
from wdax.cli.requests import SweepRequest
from wdax.sweep import KINDS
from wdax.sweep import datasets


class _Parser(argparse.ArgumentParser):
  def error(self, message: str):
    raise BadInput(message)


def _integer(text: str, low: int, high: int) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
  if value < low:
    raise argparse.ArgumentTypeError(f'{text!r} must be at least {low}')
  if value > high:
    raise argparse.ArgumentTypeError(f'{text!r} must be at most {high}')
  return value


def _positive_int(text: str) -> int:
  return _integer(text, 1, INT_MAX)


def _folds(text: str) -> int:
  return _integer(text, 2, INT_MAX)


def _seed(text: str) -> int:
  return _integer(text, 0, SEED_MAX)


def _positive_float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
  if not math.isfinite(value) or value <= 0:
    raise argparse.ArgumentTypeError(f'{text!r} must be a positive number')
  if value > FLOAT_MAX:
    raise argparse.ArgumentTypeError(f'{text!r} must be at most {FLOAT_MAX:.7g} (float32)')
  return value


def _fraction(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
  if not 0 <= value < 1:
    raise argparse.ArgumentTypeError(f'{text!r} must be in [0, 1)')
  return value


def _comma_list(kind):
  """A comma list of ``kind`` values, at least one, in order, repeats
  dropped."""

  def parse(text: str) -> list:
    values = []
    for item in text.split(','):
      if item.strip():
        value = kind(item.strip())
        if value not in values:
          values.append(value)
    if not values:
      raise argparse.ArgumentTypeError('give at least one value')
    if len(values) > MAX_RATES:
      raise argparse.ArgumentTypeError(f'at most {MAX_RATES} values')
    return values

  return parse


def _prune(text: str) -> tuple[int, int]:
  """``MIN_EPOCHS`` or ``MIN_EPOCHS:FACTOR``."""
  parts = text.split(':')
  if len(parts) > 2:
    raise argparse.ArgumentTypeError(f'{text!r}: expected MIN_EPOCHS or MIN_EPOCHS:FACTOR')
  first = _integer(parts[0].strip(), 1, INT_MAX)
  factor = _integer(parts[1].strip(), 2, INT_MAX) if len(parts) == 2 else 2
  return first, factor


def _widths(text: str) -> tuple[int, ...]:
  widths = tuple(_positive_int(w) for w in text.split(',') if w.strip())
  if not widths:
    raise argparse.ArgumentTypeError('give at least one hidden width')
  return widths


def _parser() -> _Parser:
  parser = _Parser(
      prog='wdax',
      description='Weight decay done right for JAX: choose a decay rate by '
      'cross-validation, or show what a mask decays.',
  )
  commands = parser.add_subparsers(dest='command', metavar='{sweep,describe}')
  commands.required = True
  _sweep_options(commands)
  _describe_options(commands)
  return parser


def _sweep_options(commands: Any) -> None:
  kinds = sorted(KINDS)
  c, r, lang = (DEFAULTS[p] for p in ('classification', 'regression', 'language'))
  sweep = commands.add_parser(
      'sweep',
      help='cross-validate a grid of decay rates, refit the best, test it',
      formatter_class=argparse.RawDescriptionHelpFormatter,
      description='Cross-validate a grid of decay rates in one compiled program per\n'
      'decay kind, against no decay (rate 0, always trained), choose one, refit\n'
      'it on the whole training split and report its held-out score. Writes\n'
      'results.json and sweep.png to --out.\n\n'
      'built-in data sets (--data NAME):\n'
      '  digits         images, 10 classes (default): an MLP, accuracy, stratified split\n'
      '  breast_cancer  table, 2 classes: an MLP, accuracy, stratified split\n'
      '  wine           table, 3 classes: an MLP, accuracy, stratified split\n'
      '  diabetes       table, regression: an MLP, R^2, shuffled split\n'
      '  text           the standard library\'s source, characters: a small causal\n'
      '                 transformer, next-token loss and perplexity, contiguous split\n'
      'or a file: a .npz with arrays x and y, or a .csv with a label column\n'
      '(classification). Use ./NAME for a file named like a built-in set.\n\n'
      'decay kinds (--kind, a comma list sweeps several):\n  ' + ', '.join(kinds),
      epilog='Bad input (an option out of range, a file that cannot be read, '
      'data too small for the folds, a model too large for memory, a criterion '
      'the data set has not) ends the run with one line on stderr and exit '
      'status 2, and nothing is written; all of it but running out of memory is '
      'found before training starts.',
  )
  sweep.add_argument('--data', default=DEFAULT_DATA, metavar='NAME|FILE', help=f'a built-in data set ({", ".join(datasets.NAMES)}) or a .npz/.csv file (default {DEFAULT_DATA})')
  sweep.add_argument('--kind', type=_comma_list(str), default=['adamw'], help='decay kind, or a comma list of kinds to compare (default adamw)')
  sweep.add_argument('--rates', default=None, help=f'START:STOP:NUM (log-spaced) or a comma list, at most {MAX_RATES} rates; rate 0 is added as the baseline (default {c.rates}; diabetes {r.rates}; text {lang.rates})')
  sweep.add_argument('--folds', type=_folds, default=5, help='folds, at least 2: stratified for classes, shuffled for a regression, contiguous for text (default 5)')
  sweep.add_argument('--seeds', type=_positive_int, default=1, help='seeds per point and fold (default 1)')
  sweep.add_argument('--epochs', type=_positive_int, default=None, help=f'epochs per training (default {c.epochs}; diabetes {r.epochs}; text {lang.epochs})')
  sweep.add_argument('--hidden', type=_widths, default=None, help=f'hidden widths of the MLP, comma-separated; one training must fit in memory (default 256); for text the transformer\'s width, one value divisible by 4, at most {MAX_WIDTH} (default {lang.hidden[0]})')
  sweep.add_argument('--batch-size', type=_positive_int, default=32, help='minibatch size; one past the training split is the whole split (default 32)')
  sweep.add_argument('--lr', type=_comma_list(_positive_float), default=None, help=f"Adam's learning rate, or a comma list to sweep with the rate (default {c.lr:g})")
  sweep.add_argument('--dropout', type=_comma_list(_fraction), default=None, help='dropout rates in [0, 1) to sweep with the decay rate, a comma list; not with a list of --lr (default: no dropout)')
  sweep.add_argument('--prune', type=_prune, default=None, metavar='MIN_EPOCHS[:FACTOR]', help='successive halving: train every point MIN_EPOCHS, then only 1/FACTOR (default 2) of them, rung by rung, to --epochs: the best, then the largest rates within one standard error of it (pruning is otherwise biased against decay, whose benefit shows late), then the next best; rate 0 is never pruned. 4:2 measured best on the built-in data sets (default: no pruning)')
  sweep.add_argument('--criterion', choices=('loss', 'accuracy', 'r2', 'perplexity'), default='loss', help='choose by mean validation loss (default), accuracy (classes, text), r2 (diabetes) or perplexity (text; as the loss)')
  sweep.add_argument('--one-se', action='store_true', help='choose the largest rate within one standard error of the best')
  sweep.add_argument('--test-size', type=_positive_float, default=None, help=f'held-out fraction (default {c.test_size}; text {lang.test_size}, the end of the corpus)')
  sweep.add_argument('--seed', type=_seed, default=0, help=f'seed of the split and the folds, 0 to {SEED_MAX} (default 0)')
  sweep.add_argument('--devices', type=_positive_int, default=None, help='devices to shard the configurations over; more than are available is refused (default: all; on CPU one per core, at most 8, and never more than the cores)')
  sweep.add_argument('--chunk-size', type=_positive_int, default=None, help='configurations per compiled chunk (default: from a memory estimate)')
  sweep.add_argument('--cache', default=None, metavar='DIR', help="keep XLA's compiled programs in DIR, so that a later run of the same shapes loads them (default $WDAX_CACHE, else $XDG_CACHE_HOME/wdax or ~/.cache/wdax; a folder set for JAX itself is kept)")
  sweep.add_argument('--no-cache', action='store_true', help='compile every program, and keep none')
  sweep.add_argument('--out', default=DEFAULT_OUT, metavar='DIR', help=f'where results.json and sweep.png go (default {DEFAULT_OUT})')
  sweep.add_argument('--quiet', action='store_true', help='no progress bar')


def _describe_options(commands: Any) -> None:
  describe = commands.add_parser(
      'describe',
      help='show which parameters of a built-in model a mask decays',
      description='Print, leaf by leaf, which parameters of a built-in Flax '
      'model a decay mask selects (wdax.describe).',
  )
  describe.add_argument('--model', choices=('mlp', 'transformer'), default='transformer', help='built-in model (default transformer)')
  describe.add_argument('--mask', choices=tuple(MASKS), default='flax', help='mask (default flax: kernels only)')
  describe.add_argument('--rate', type=float, default=1e-4, help='decay rate to show (default 1e-4)')
  describe.add_argument('--hidden', type=_widths, default=(256,), help='hidden widths of the mlp (default 256)')


def parse(argv: Sequence[str]) -> Request:
  """The request of the command line ``argv`` (without the program's name),
  checked; raises :class:`~wdax.cli.errors.BadInput`, or ``SystemExit`` for
  ``--help``.

  Examples:
    >>> from wdax.cli import parsing
    >>> request = parsing.parse(['sweep', '--data', 'diabetes', '--rates', '1,10'])
    >>> request.problem, request.grid, request.epochs
    ('regression', (0.0, 1.0, 10.0), 40)
  """
  args = _parser().parse_args(argv)
  if args.command == 'describe':
    return DescribeRequest(model=args.model, mask=args.mask, rate=args.rate, hidden=args.hidden)
  return SweepRequest.of(
      args.data, kinds=args.kind, rates=args.rates, folds=args.folds, seeds=args.seeds,
      epochs=args.epochs, hidden=args.hidden, batch_size=args.batch_size, lr=args.lr,
      dropout=args.dropout, prune=args.prune, criterion=args.criterion, one_se=args.one_se,
      test_size=args.test_size, seed=args.seed, devices=args.devices,
      chunk_size=args.chunk_size, cache=args.cache, no_cache=args.no_cache, out=args.out,
      quiet=args.quiet, argv=argv,
  )
