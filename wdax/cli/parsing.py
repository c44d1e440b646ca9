"""Parsing the command line: the options, their types and the rate grid.

Every check that needs only the arguments happens here, before any data is
read or any JAX device is started.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Mapping
from collections.abc import Sequence

from wdax.cli.errors import BadInput

DEFAULT_RATES = '1e-3:10:16'
DEFAULT_OUT = 'wdax-out'


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

  sweep = commands.add_parser(
      'sweep',
      help='cross-validate a grid of decay rates, refit the best, test it',
      description='Cross-validate a grid of decay rates for an MLP classifier '
      'in one compiled program, choose one, refit it on the whole training '
      'split and report its held-out accuracy. Without --data: the digits '
      "of scikit-learn's load_digits, half held out. Writes results.json and "
      'sweep.png to --out.',
      epilog='Bad input (an option out of range, a file that cannot be read, '
      'data too small for the folds, a model too large for memory) ends the '
      'run with one line on stderr and exit status 2, and nothing is written; '
      'all of it but running out of memory is found before training starts.',
  )
  sweep.add_argument('--data', metavar='FILE', help='a .npz with arrays x and y, or a .csv with a label column (default: load_digits)')
  sweep.add_argument('--kind', default='adamw', help='decay kind (default adamw): ' + ', '.join(kinds))
  sweep.add_argument('--rates', default=DEFAULT_RATES, help=f'START:STOP:NUM (log-spaced) or a comma list, at most {MAX_RATES} rates (default {DEFAULT_RATES})')
  sweep.add_argument('--folds', type=_folds, default=5, help='stratified folds, at least 2 (default 5)')
  sweep.add_argument('--seeds', type=_positive_int, default=1, help='seeds per rate and fold (default 1)')
  sweep.add_argument('--epochs', type=_positive_int, default=20, help='epochs per training (default 20)')
  sweep.add_argument('--hidden', type=_widths, default=(256,), help='hidden widths, comma-separated; one training must fit in memory (default 256)')
  sweep.add_argument('--batch-size', type=_positive_int, default=32, help='minibatch size; one past the training split is the whole split (default 32)')
  sweep.add_argument('--lr', type=_positive_float, default=3e-3, help="Adam's learning rate (default 3e-3)")
  sweep.add_argument('--criterion', choices=('loss', 'accuracy'), default='loss', help='choose by mean validation loss (default) or accuracy')
  sweep.add_argument('--one-se', action='store_true', help='choose the largest rate within one standard error of the best')
  sweep.add_argument('--test-size', type=_positive_float, default=0.5, help='held-out fraction, stratified (default 0.5)')
  sweep.add_argument('--seed', type=_seed, default=0, help=f'seed of the split and the folds, 0 to {SEED_MAX} (default 0)')
  sweep.add_argument('--devices', type=_positive_int, default=None, help='devices to shard the configurations over; more than are available is refused (default: all; on CPU one per core, at most 8, and never more than the cores)')
  sweep.add_argument('--chunk-size', type=_positive_int, default=None, help='configurations per compiled chunk (default: from a memory estimate)')
  sweep.add_argument('--out', default=DEFAULT_OUT, metavar='DIR', help=f'where results.json and sweep.png go (default {DEFAULT_OUT})')
  sweep.add_argument('--quiet', action='store_true', help='no progress bar')

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


def parse(
    argv: Sequence[str], *, kinds: Sequence[str], masks: Mapping[str, str]
) -> argparse.Namespace:
  """The options of ``wdax`` as a namespace, checked; raises :class:`BadInput`.

  For ``sweep``, ``args.rates`` is the list of rates :func:`parse_rates`
  reads from the option's text.
  """
  args = _parser(kinds, masks).parse_args(argv)
  args.argv = list(argv)
  if args.command == 'sweep':
    args.rates = parse_rates(args.rates)
    if not 0 < args.test_size < 1:
      raise BadInput(f'--test-size {args.test_size}: must be between 0 and 1')
    if args.kind not in kinds:
      raise BadInput(f'--kind {args.kind!r}: unknown; choose from {", ".join(kinds)}')
  elif args.rate < 0 or not math.isfinite(args.rate):
    raise BadInput(f'--rate {args.rate}: must be finite and non-negative')
  return args
