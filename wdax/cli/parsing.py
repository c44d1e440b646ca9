"""Parsing the command line: the options, their types and the grids.

Every check that needs only the arguments happens here, before any data is
read or any JAX device is started: each option's range, the criterion
against the data set's problem, and the options that depend on each other.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from collections.abc import Sequence

from wdax.cli.errors import BadInput

DEFAULT_OUT = 'wdax-out'
DEFAULT_DATA = 'digits'

# The built-in data sets (wdax.sweep.datasets.NAMES, read here without
# importing JAX) and the problem each poses; a file is a classification.
DATASETS = {
    'digits': 'classification',
    'breast_cancer': 'classification',
    'wine': 'classification',
    'diabetes': 'regression',
    'text': 'language',
}

# What each problem is scored by, besides its loss, and the criteria it takes.
SCORES = {'classification': 'accuracy', 'regression': 'r2', 'language': 'accuracy'}
CRITERIA = {
    'classification': ('loss', 'accuracy'),
    'regression': ('loss', 'r2'),
    'language': ('loss', 'perplexity', 'accuracy'),
}

# The defaults of the options that depend on the problem: the tables train
# an MLP, the text a small transformer, whose sweep is kept short so that it
# stays quick on a CPU.
DEFAULTS = {
    'classification': dict(rates='1e-3:10:16', epochs=20, hidden=(256,), lr=3e-3, test_size=0.5),
    'regression': dict(rates='1e-2:100:16', epochs=40, hidden=(256,), lr=3e-3, test_size=0.5),
    'language': dict(rates='1e-2:10:4', epochs=10, hidden=(32,), lr=3e-3, test_size=0.2),
}
MAX_WIDTH = 4096  # the transformer's width, for --data text


class _Parser(argparse.ArgumentParser):
  def error(self, message: str):
    raise BadInput(message)


# Counts become int32 shapes and step counts in JAX; seeds seed NumPy's and
# JAX's generators; rates and learning rates are float32 in the compiled
# programs. Beyond these, a value would overflow, not train.
INT_MAX = 2**31 - 1
SEED_MAX = 2**32 - 1
FLOAT_MAX = 3.4028234663852886e38  # the largest finite float32
MAX_RATES = 1000


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


def _parser(kinds: Sequence[str], masks: Mapping[str, str]) -> _Parser:
  parser = _Parser(
      prog='wdax',
      description='Weight decay done right for JAX: choose a decay rate by '
      'cross-validation, or show what a mask decays.',
  )
  commands = parser.add_subparsers(dest='command', metavar='{sweep,describe}')
  commands.required = True

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
  sweep.add_argument('--data', default=DEFAULT_DATA, metavar='NAME|FILE', help=f'a built-in data set ({", ".join(DATASETS)}) or a .npz/.csv file (default {DEFAULT_DATA})')
  sweep.add_argument('--kind', type=_comma_list(str), default=['adamw'], help='decay kind, or a comma list of kinds to compare (default adamw)')
  sweep.add_argument('--rates', default=None, help=f'START:STOP:NUM (log-spaced) or a comma list, at most {MAX_RATES} rates; rate 0 is added as the baseline (default {c["rates"]}; diabetes {r["rates"]}; text {lang["rates"]})')
  sweep.add_argument('--folds', type=_folds, default=5, help='folds, at least 2: stratified for classes, shuffled for a regression, contiguous for text (default 5)')
  sweep.add_argument('--seeds', type=_positive_int, default=1, help='seeds per point and fold (default 1)')
  sweep.add_argument('--epochs', type=_positive_int, default=None, help=f'epochs per training (default {c["epochs"]}; diabetes {r["epochs"]}; text {lang["epochs"]})')
  sweep.add_argument('--hidden', type=_widths, default=None, help=f'hidden widths of the MLP, comma-separated; one training must fit in memory (default 256); for text the transformer\'s width, one value divisible by 4, at most {MAX_WIDTH} (default {lang["hidden"][0]})')
  sweep.add_argument('--batch-size', type=_positive_int, default=32, help='minibatch size; one past the training split is the whole split (default 32)')
  sweep.add_argument('--lr', type=_comma_list(_positive_float), default=None, help=f"Adam's learning rate, or a comma list to sweep with the rate (default {c['lr']:g})")
  sweep.add_argument('--dropout', type=_comma_list(_fraction), default=None, help='dropout rates in [0, 1) to sweep with the decay rate, a comma list; not with a list of --lr (default: no dropout)')
  sweep.add_argument('--prune', type=_prune, default=None, metavar='MIN_EPOCHS[:FACTOR]', help='successive halving: train every point MIN_EPOCHS, then only 1/FACTOR (default 2) of them, rung by rung, to --epochs: the best, then the largest rates within one standard error of it (pruning is otherwise biased against decay, whose benefit shows late), then the next best; rate 0 is never pruned. 4:2 measured best on the built-in data sets (default: no pruning)')
  sweep.add_argument('--criterion', choices=('loss', 'accuracy', 'r2', 'perplexity'), default='loss', help='choose by mean validation loss (default), accuracy (classes, text), r2 (diabetes) or perplexity (text; as the loss)')
  sweep.add_argument('--one-se', action='store_true', help='choose the largest rate within one standard error of the best')
  sweep.add_argument('--test-size', type=_positive_float, default=None, help=f'held-out fraction (default {c["test_size"]}; text {lang["test_size"]}, the end of the corpus)')
  sweep.add_argument('--seed', type=_seed, default=0, help=f'seed of the split and the folds, 0 to {SEED_MAX} (default 0)')
  sweep.add_argument('--devices', type=_positive_int, default=None, help='devices to shard the configurations over; more than are available is refused (default: all; on CPU one per core, at most 8, and never more than the cores)')
  sweep.add_argument('--chunk-size', type=_positive_int, default=None, help='configurations per compiled chunk (default: from a memory estimate)')
  sweep.add_argument('--cache', default=None, metavar='DIR', help="keep XLA's compiled programs in DIR, so that a later run of the same shapes loads them (default $WDAX_CACHE, else $XDG_CACHE_HOME/wdax or ~/.cache/wdax; a folder set for JAX itself is kept)")
  sweep.add_argument('--no-cache', action='store_true', help='compile every program, and keep none')
  sweep.add_argument('--out', default=DEFAULT_OUT, metavar='DIR', help=f'where results.json and sweep.png go (default {DEFAULT_OUT})')
  sweep.add_argument('--quiet', action='store_true', help='no progress bar')
  sweep.add_argument('--save-every', type=_seconds, default=60.0, metavar='SECONDS', help='save the progress into --out at most this often between evaluations, besides at the end of every chunk and when SIGINT or SIGTERM stops the run (default 60; 0 after every evaluation)')
  sweep.add_argument('--restart', action='store_true', help='discard the unfinished run of another command that --out holds (by default the same command resumes it, and another is refused)')

  describe = commands.add_parser(
      'describe',
      help='show which parameters of a built-in model a mask decays',
      description='Print, leaf by leaf, which parameters of a built-in Flax '
      'model a decay mask selects (wdax.describe).',
  )
  describe.add_argument('--model', choices=('mlp', 'transformer'), default='transformer', help='built-in model (default transformer)')
  describe.add_argument('--mask', choices=tuple(masks), default='flax', help='mask (default flax: kernels only)')
  describe.add_argument('--rate', type=float, default=1e-4, help='decay rate to show (default 1e-4)')
  describe.add_argument('--hidden', type=_widths, default=(256,), help='hidden widths of the mlp (default 256)')
  return parser


def _seconds(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not a number of seconds') from None
  if not math.isfinite(value) or value < 0:
    raise argparse.ArgumentTypeError(f'{text!r}: give a number of seconds >= 0')
  return value


def problem(data: str) -> str:
  """The problem ``--data`` poses: a built-in set's, or classification for a
  file."""
  return DATASETS.get(data, 'classification')


def _sweep(args: argparse.Namespace, kinds: Sequence[str]) -> None:
  """Fills the problem's defaults into ``args`` and checks the options
  against each other."""
  args.problem = problem(args.data)
  for name, value in DEFAULTS[args.problem].items():
    if getattr(args, name) is None:
      setattr(args, name, [value] if name == 'lr' else value)
  args.rates = parse_rates(args.rates)
  # No decay is always trained: the baseline every rate is compared with.
  args.grid = sorted({0.0, *args.rates})
  if not 0 < args.test_size < 1:
    raise BadInput(f'--test-size {args.test_size}: must be between 0 and 1')
  for kind in args.kind:
    if kind not in kinds:
      raise BadInput(f'--kind {kind!r}: unknown; choose from {", ".join(kinds)}')
  allowed = CRITERIA[args.problem]
  if args.criterion not in allowed:
    what = f'--data {args.data}' if args.data in DATASETS else 'a data file (classes)'
    raise BadInput(
        f'--criterion {args.criterion}: {what} is a {args.problem} problem; choose '
        f'from {", ".join(allowed)}'
    )
  if len(args.lr) > 1 and args.dropout is not None and len(args.dropout) > 1:
    raise BadInput(
        '--lr and --dropout: sweep one of them with the rate, not both (a grid of '
        'three names has no plot)'
    )
  if args.problem == 'language':
    if len(args.hidden) != 1 or args.hidden[0] % 4 or args.hidden[0] > MAX_WIDTH:
      raise BadInput(
          f'--hidden {",".join(map(str, args.hidden))}: for --data text, the '
          f"transformer's width: one value, divisible by 4 (its heads), at most {MAX_WIDTH}"
      )
  if args.cache is not None and args.no_cache:
    raise BadInput('--cache and --no-cache: give one of them')
  if args.prune is not None and args.prune[0] > args.epochs:
    raise BadInput(
        f'--prune {args.prune[0]}:{args.prune[1]}: the first rung ({args.prune[0]} '
        f'epochs) must end by the last epoch (--epochs {args.epochs})'
    )


def parse(
    argv: Sequence[str], *, kinds: Sequence[str], masks: Mapping[str, str]
) -> argparse.Namespace:
  """The options of ``wdax`` as a namespace, checked; raises :class:`BadInput`.

  For ``sweep``, ``args.rates`` is the list of rates :func:`parse_rates`
  reads from the option's text, ``args.grid`` the same with the baseline,
  rate 0, and ``args.problem`` the problem of ``--data``; the options left
  to their problem's default (:data:`DEFAULTS`) are filled in.
  """
  args = _parser(kinds, masks).parse_args(argv)
  args.argv = list(argv)
  if args.command == 'sweep':
    _sweep(args, kinds)
  elif args.rate < 0 or not math.isfinite(args.rate):
    raise BadInput(f'--rate {args.rate}: must be finite and non-negative')
  return args
