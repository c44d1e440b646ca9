"""The ``wdax`` command line.

``wdax sweep`` chooses a decay rate by cross-validation (:func:`wdax.sweep.grid`),
refits it on the whole training split (:func:`wdax.sweep.fit`) and reports the
held-out accuracy; ``wdax describe`` prints which parameters of a built-in
model a mask decays. This is the only part of wdax that prints, draws or
touches files. ``wdax <command> --help`` lists the options.

Bad input (a missing file or column, NaNs, a class with fewer examples than
folds, an empty grid, a malformed option) ends the run with one line on
stderr, ``wdax: error: ...``, and exit status 2; nothing is written.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

DEFAULT_RATES = '1e-3:10:16'
DEFAULT_OUT = 'wdax-out'


class BadInput(Exception):
  """Input the user can fix; reported as one line with exit status 2."""


class _Parser(argparse.ArgumentParser):
  def error(self, message: str):
    raise BadInput(message)


def _positive_int(text: str) -> int:
  try:
    value = int(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not an integer') from None
  if value < 1:
    raise argparse.ArgumentTypeError(f'{text!r} must be at least 1')
  return value


def _positive_float(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f'{text!r} is not a number') from None
  if not math.isfinite(value) or value <= 0:
    raise argparse.ArgumentTypeError(f'{text!r} must be a positive number')
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
    if not (start > 0 and stop > 0 and math.isfinite(start) and math.isfinite(stop)):
      raise BadInput(f'--rates {text!r}: START and STOP of a log grid must be positive')
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
    rates.append(rate)
  if not rates:
    raise BadInput('--rates: the grid is empty')
  return sorted(set(rates))


def _parser() -> _Parser:
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
  )
  sweep.add_argument('--data', metavar='FILE', help='a .npz with arrays x and y, or a .csv with a label column (default: load_digits)')
  sweep.add_argument('--kind', default='adamw', help='decay kind (default adamw): ' + ', '.join(_kinds()))
  sweep.add_argument('--rates', default=DEFAULT_RATES, help=f'START:STOP:NUM (log-spaced) or a comma list (default {DEFAULT_RATES})')
  sweep.add_argument('--folds', type=_positive_int, default=5, help='stratified folds (default 5)')
  sweep.add_argument('--seeds', type=_positive_int, default=1, help='seeds per rate and fold (default 1)')
  sweep.add_argument('--epochs', type=_positive_int, default=20, help='epochs per training (default 20)')
  sweep.add_argument('--hidden', type=_widths, default=(256,), help='hidden widths, comma-separated (default 256)')
  sweep.add_argument('--batch-size', type=_positive_int, default=32, help='minibatch size (default 32)')
  sweep.add_argument('--lr', type=_positive_float, default=3e-3, help="Adam's learning rate (default 3e-3)")
  sweep.add_argument('--criterion', choices=('loss', 'accuracy'), default='loss', help='choose by mean validation loss (default) or accuracy')
  sweep.add_argument('--one-se', action='store_true', help='choose the largest rate within one standard error of the best')
  sweep.add_argument('--test-size', type=_positive_float, default=0.5, help='held-out fraction, stratified (default 0.5)')
  sweep.add_argument('--seed', type=int, default=0, help='seed of the split and the folds (default 0)')
  sweep.add_argument('--devices', type=_positive_int, default=None, help='devices to shard the configurations over (default: all; on CPU one per core)')
  sweep.add_argument('--chunk-size', type=_positive_int, default=None, help='configurations per compiled chunk (default: from a memory estimate)')
  sweep.add_argument('--out', default=DEFAULT_OUT, metavar='DIR', help=f'where results.json and sweep.png go (default {DEFAULT_OUT})')
  sweep.add_argument('--quiet', action='store_true', help='no progress bar')
  sweep.set_defaults(run=_sweep)

  describe = commands.add_parser(
      'describe',
      help='show which parameters of a built-in model a mask decays',
      description='Print, leaf by leaf, which parameters of a built-in Flax '
      'model a decay mask selects (wdax.describe).',
  )
  describe.add_argument('--model', choices=('mlp', 'transformer'), default='transformer', help='built-in model (default transformer)')
  describe.add_argument('--mask', choices=tuple(_MASKS), default='flax', help='mask (default flax: kernels only)')
  describe.add_argument('--rate', type=float, default=1e-4, help='decay rate to show (default 1e-4)')
  describe.add_argument('--hidden', type=_widths, default=(256,), help='hidden widths of the mlp (default 256)')
  describe.set_defaults(run=_describe)
  return parser


def _kinds() -> list[str]:
  # The sweep module imports Flax; its kind names are listed lazily for --help.
  from wdax import sweep

  return sorted(sweep.KINDS)


_MASKS = {
    'flax': 'kernels only (wdax.masks.flax_default())',
    'flax+embeddings': 'kernels and embeddings',
    'matrices': 'every leaf of rank >= 2 (wdax.masks.min_ndim(2))',
    'all': 'every floating leaf',
}


def _mask(name: str) -> Any:
  from wdax import masks

  return {
      'flax': masks.flax_default(),
      'flax+embeddings': masks.flax_default(embeddings=True),
      'matrices': masks.min_ndim(2),
      'all': None,
  }[name]


def main(argv: Sequence[str] | None = None) -> int:
  """Runs the command line; returns the exit status."""
  argv = list(sys.argv[1:] if argv is None else argv)
  try:
    args = _parser().parse_args(argv)
    args.argv = argv
    return args.run(args)
  except BadInput as e:
    print(f'wdax: error: {e}', file=sys.stderr)
    return 2


# --- data -----------------------------------------------------------------


def _load_npz(path: str):
  import numpy as np

  try:
    with np.load(path, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
    raise BadInput(f'{path}: not a readable .npz file ({type(e).__name__}: {e})') from None
  missing = [k for k in ('x', 'y') if k not in arrays]
  if missing:
    raise BadInput(
        f'{path}: missing array {" and ".join(map(repr, missing))}; it has '
        f'{", ".join(map(repr, sorted(arrays))) or "no arrays"}'
    )
  x, y = arrays['x'], arrays['y']
  if not np.issubdtype(x.dtype, np.number):
    raise BadInput(f'{path}: x must be numeric; it has dtype {x.dtype}')
  if x.ndim < 2:
    raise BadInput(f'{path}: x must have one row per example; it has shape {x.shape}')
  if y.ndim != 1 or len(y) != len(x):
    raise BadInput(
        f'{path}: y must be a vector with one label per row of x ({len(x)}); it '
        f'has shape {y.shape}'
    )
  if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
    raise BadInput(f'{path}: y has NaN or infinite labels')
  return x.reshape(len(x), -1).astype(np.float64), y


def _load_csv(path: str):
  import numpy as np

  with open(path, newline='') as f:
    rows = list(csv.reader(f))
  if not rows:
    raise BadInput(f'{path}: the file is empty')
  header = [h.strip() for h in rows[0]]
  if 'label' not in header:
    raise BadInput(
        f"{path}: no 'label' column; the columns are "
        f'{", ".join(map(repr, header[:10]))}{" ..." if len(header) > 10 else ""}'
    )
  at = header.index('label')
  features = [i for i in range(len(header)) if i != at]
  if not features:
    raise BadInput(f"{path}: no feature columns besides 'label'")
  x, y = [], []
  for line, row in enumerate(rows[1:], start=2):
    if not any(cell.strip() for cell in row):
      continue
    if len(row) != len(header):
      raise BadInput(f'{path}, line {line}: {len(row)} fields, expected {len(header)}')
    values = []
    for i in features:
      cell = row[i].strip()
      try:
        value = float(cell)
      except ValueError:
        raise BadInput(
            f'{path}, line {line}, column {header[i]!r}: {cell!r} is not a number'
        ) from None
      if not math.isfinite(value):
        raise BadInput(
            f'{path}, line {line}, column {header[i]!r}: {cell!r} is NaN or '
            'infinite'
        )
      values.append(value)
    x.append(values)
    y.append(row[at].strip())
  if not x:
    raise BadInput(f'{path}: no data rows')
  labels = np.asarray(y)
  try:
    labels = labels.astype(np.int64)
  except ValueError:
    pass
  return np.asarray(x, np.float64), labels


def _load(args):
  """``(x, labels, source)``: the features as float64 and the raw labels."""
  import numpy as np

  if args.data is None:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x.astype(np.float64), y, 'sklearn.datasets.load_digits'
  path = args.data
  if not os.path.isfile(path):
    raise BadInput(f'--data {path}: no such file')
  suffix = os.path.splitext(path)[1].lower()
  if suffix == '.npz':
    x, y = _load_npz(path)
  elif suffix == '.csv':
    x, y = _load_csv(path)
  else:
    raise BadInput(
        f'--data {path}: expected a .npz file (arrays x and y) or a .csv file '
        "(with a 'label' column)"
    )
  bad = ~np.isfinite(x).all(axis=1)
  if bad.any():
    raise BadInput(
        f'{path}: x has NaN or infinite values in {int(bad.sum())} rows (first: '
        f'row {int(np.argmax(bad))})'
    )
  return x, y, os.path.abspath(path)


def _label(value: Any) -> str:
  """A class label for a message: ``2`` or ``'cat'``."""
  value = value.item() if hasattr(value, 'item') else value
  return repr(value) if isinstance(value, str) else str(value)


def _holdout(codes, fraction: float, seed: int):
  """Stratified split: about ``fraction`` of each class is held out."""
  import numpy as np

  rng = np.random.default_rng(seed)
  test = []
  for c in np.unique(codes):
    members = rng.permutation(np.flatnonzero(codes == c))
    k = int(round(fraction * len(members)))
    k = min(max(k, 1), len(members) - 1) if len(members) > 1 else 0
    test.extend(members[:k].tolist())
  is_test = np.zeros(len(codes), bool)
  is_test[test] = True
  return np.flatnonzero(~is_test), np.flatnonzero(is_test)


# --- sweep ----------------------------------------------------------------


_MASK: list[Any] = []


def _flax_mask() -> Any:
  # One mask object for the process: compiled programs are cached on the
  # settings, and a mask compares by identity.
  if not _MASK:
    from wdax import masks

    _MASK.append(masks.flax_default())
  return _MASK[0]


def _ask_for_devices(count: int | None) -> None:
  """Asks XLA for one host device per core (or ``count``) before JAX starts.

  Only the CPU backend reads the flag, so on a machine with accelerators it
  changes nothing. It must be set before the first computation.
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_force_host_platform_device_count' in flags:
    return
  from jax._src import xla_bridge

  if xla_bridge.backends_are_initialized():
    return
  count = count or min(os.cpu_count() or 1, 8)
  os.environ['XLA_FLAGS'] = f'{flags} --xla_force_host_platform_device_count={count}'.strip()


class _Progress:
  """A rich progress bar on stderr, or nothing with ``--quiet``."""

  def __init__(self, quiet: bool):
    self.quiet = quiet

  def __enter__(self):
    if self.quiet:
      return self
    from rich.console import Console
    from rich.progress import BarColumn
    from rich.progress import MofNCompleteColumn
    from rich.progress import Progress
    from rich.progress import TextColumn
    from rich.progress import TimeElapsedColumn

    self.bar = Progress(
        TextColumn('{task.description}'),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    self.bar.__enter__()
    return self

  def __exit__(self, *exc):
    if not self.quiet:
      self.bar.__exit__(*exc)

  def task(self, description: str, waiting: str):
    """A ``progress(done, total)`` callback for one stage."""
    if self.quiet:
      return None
    task = self.bar.add_task(f'{description} ({waiting})', total=None)

    def update(done: int, total: int) -> None:
      self.bar.update(task, completed=done, total=total, description=description)

    return update


def _sweep(args) -> int:
  rates = parse_rates(args.rates)
  if not 0 < args.test_size < 1:
    raise BadInput(f'--test-size {args.test_size}: must be between 0 and 1')
  _ask_for_devices(args.devices)

  import jax
  import numpy as np

  from wdax import sweep

  if args.kind not in sweep.KINDS:
    raise BadInput(
        f'--kind {args.kind!r}: unknown; choose from {", ".join(sorted(sweep.KINDS))}'
    )
  available = jax.local_devices()
  if args.devices is not None and args.devices > len(available):
    raise BadInput(
        f'--devices {args.devices}: only {len(available)} '
        f'{available[0].platform} device(s) are available'
    )
  devices = available[: args.devices] if args.devices else available

  x, labels, source = _load(args)
  names, codes = np.unique(labels, return_inverse=True)
  if len(names) < 2:
    raise BadInput(f'{source}: the labels have a single class, {_label(names[0])}')
  train, test = _holdout(codes, args.test_size, args.seed)
  x_train, x_test = x[train], x[test]
  y_train, y_test = codes[train].astype(np.int32), codes[test].astype(np.int32)
  counts = np.bincount(y_train, minlength=len(names))
  if counts.min() < args.folds:
    c = int(np.argmin(counts))
    raise BadInput(
        f'{source}: class {_label(names[c])} has {counts[c]} training '
        f'example{"" if counts[c] == 1 else "s"}, fewer than --folds {args.folds}'
    )
  # Standardise with the training split's statistics only.
  mean, std = x_train.mean(axis=0), x_train.std(axis=0)
  std[std == 0] = 1.0
  x_train = ((x_train - mean) / std).astype(np.float32)
  x_test = ((x_test - mean) / std).astype(np.float32)

  model = sweep.MLP(hidden=args.hidden, classes=len(names))
  settings = dict(
      kind=args.kind,
      lr=args.lr,
      mask=_flax_mask(),
      epochs=args.epochs,
      batch_size=args.batch_size,
      devices=devices,
  )
  configurations = len(rates) * args.folds * args.seeds
  print(
      f'data: {source}: {len(y_train)} training / {len(y_test)} held-out '
      f'examples, {x.shape[1]} features, {len(names)} classes'
  )
  print(
      f'grid: {len(rates)} rates x {args.folds} folds x {args.seeds} seed(s) = '
      f'{configurations} trainings of MLP({", ".join(map(str, args.hidden))}) with {args.kind}, '
      f'{args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}'
  )
  times = [time.perf_counter()]

  def timed(callback):
    def update(done, total):
      if callback is not None:
        callback(done, total)
      if done == total:
        times.append(time.perf_counter())

    return update

  with _Progress(args.quiet) as progress:
    found = sweep.select(
        model, x_train, y_train, rates,
        test=(x_test, y_test),
        criterion=args.criterion,
        one_se=args.one_se,
        folds=args.folds,
        seeds=args.seeds,
        fold_seed=args.seed,
        chunk_size=args.chunk_size,
        progress=timed(progress.task('cross-validating', 'compiling')),
        refit_progress=timed(progress.task('refitting', 'waiting')),
        **settings,
    )
  result, choice, refit = found.result, found.choice, found.refit
  swept, refitted = times[1] - times[0], times[2] - times[1]
  print(
      f'{configurations} trainings in {result.chunks} chunk(s) of '
      f'{result.chunk_size} on {result.devices} {devices[0].platform} '
      f'device(s): {swept:.1f} s (compilation included)'
  )
  test_accuracy = refit.curves['test_accuracy'][:, -1]
  report = _report(args, source, names, x, y_train, y_test, rates, result, choice, refit, swept, refitted)
  _print_table(result, choice, args)
  rule = ' (one-standard-error rule)' if args.one_se else ''
  print(
      f'chosen rate: {choice.rate:.3g}{rule}, validation {args.criterion} '
      f'{choice.mean:.4f} ± {choice.se:.4f}'
  )
  spread = ''
  if len(test_accuracy) > 1:
    spread = f' ± {test_accuracy.std(ddof=1) / math.sqrt(len(test_accuracy)):.4f}'
  print(
      f'refit on all {len(y_train)} training examples: held-out test accuracy '
      f'{test_accuracy.mean():.4f}{spread} ({len(y_test)} examples, '
      f'{refitted:.1f} s)'
  )
  _write(args.out, report, result, choice, args)
  print(f'wrote {os.path.join(args.out, "results.json")} and {os.path.join(args.out, "sweep.png")}')
  return 0


def _report(args, source, names, x, y_train, y_test, rates, result, choice, refit, swept, refitted):
  import jax
  import numpy as np

  import wdax

  def floats(a):
    return np.round(np.asarray(a, np.float64), 6).tolist()

  test = refit.curves['test_accuracy'][:, -1]
  return {
      'wdax': wdax.__version__,
      'jax': jax.__version__,
      'command': ['wdax', *args.argv],
      'data': {
          'source': source,
          'train': int(len(y_train)),
          'test': int(len(y_test)),
          'features': int(x.shape[1]),
          'classes': [str(n) for n in names],
      },
      'settings': {
          'kind': args.kind,
          'rates': [float(r) for r in rates],
          'folds': args.folds,
          'seeds': list(result.seeds),
          'epochs': args.epochs,
          'hidden': list(args.hidden),
          'batch_size': args.batch_size,
          'lr': args.lr,
          'mask': 'flax_default',
          'criterion': args.criterion,
          'one_se': args.one_se,
          'test_size': args.test_size,
          'seed': args.seed,
      },
      'table': result.table(),
      'choice': {
          'rate': choice.rate,
          'criterion': choice.criterion,
          'mean': choice.mean,
          'se': choice.se,
      },
      'refit': {
          'rate': refit.rate,
          'test_accuracy': float(test.mean()),
          'test_accuracy_per_seed': floats(test),
          'test_loss': float(refit.curves['test_loss'][:, -1].mean()),
          'train_accuracy': float(refit.curves['train_accuracy'][:, -1].mean()),
      },
      'curves': {
          'epochs': [int(e) for e in result.epochs],
          **{
              name: floats(values.mean(axis=(1, 2)))
              for name, values in result.curves.items()
          },
      },
      'final': {name: floats(result.final(name)) for name in result.curves},
      'run': {
          'devices': result.devices,
          'chunk_size': result.chunk_size,
          'chunks': result.chunks,
          'bytes_per_configuration': result.bytes_per_configuration,
          'sweep_seconds': round(swept, 3),
          'refit_seconds': round(refitted, 3),
      },
  }


def _print_table(result, choice, args) -> None:
  from rich.console import Console
  from rich.table import Table

  table = Table(title='validation by rate (mean ± s.e. over folds and seeds)')
  table.add_column('rate', justify='right')
  table.add_column('val accuracy', justify='right')
  table.add_column('train accuracy', justify='right')
  table.add_column('gap', justify='right')
  table.add_column('val loss', justify='right')
  table.add_column('')
  for i, row in enumerate(result.table()):
    chosen = i == choice.index
    table.add_row(
        f'{row["rate"]:.3g}',
        f'{row["val_accuracy"]:.4f} ± {row["val_accuracy_se"]:.4f}',
        f'{row["train_accuracy"]:.4f}',
        f'{row["gap"]:+.4f} ± {row["gap_se"]:.4f}',
        f'{row["val_loss"]:.4f} ± {row["val_loss_se"]:.4f}',
        '<- chosen' if chosen else '',
        style='bold' if chosen else None,
    )
  Console(width=max(100, shutil.get_terminal_size().columns)).print(table)


def _plot(path: str, report: dict[str, Any], args) -> None:
  import numpy as np
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  rows = report['table']
  rates = np.array([r['rate'] for r in rows])
  val = np.array([r['val_accuracy'] for r in rows])
  val_se = np.array([r['val_accuracy_se'] for r in rows])
  train = np.array([r['train_accuracy'] for r in rows])
  loss = np.array([r['val_loss'] for r in rows])
  loss_se = np.array([r['val_loss_se'] for r in rows])
  chosen = report['choice']['rate']
  test = report['refit']['test_accuracy']

  # Accuracy above, the validation loss below: the criterion may be either.
  fig = Figure(figsize=(7.5, 6.4), layout='constrained')
  FigureCanvasAgg(fig)
  ax, ax_loss = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
  ax.fill_between(rates, val - val_se, val + val_se, color='C0', alpha=0.2, lw=0)
  ax.plot(rates, val, 'o-', color='C0', ms=4, label=f'validation (mean ± s.e., {args.folds} folds)')
  ax.plot(rates, train, 's--', color='C1', ms=3.5, label='training')
  ax.axvline(chosen, color='C3', ls=':', lw=1.5)
  ax.plot([chosen], [val[rates == chosen][0]], 'o', color='C3', ms=8, mfc='none', mew=1.8,
          label=f'chosen {chosen:.3g}: test accuracy {test:.4f}')
  ax_loss.fill_between(rates, loss - loss_se, loss + loss_se, color='C0', alpha=0.2, lw=0)
  ax_loss.plot(rates, loss, 'o-', color='C0', ms=4, label='validation loss (mean ± s.e.)')
  ax_loss.axvline(chosen, color='C3', ls=':', lw=1.5)
  ax_loss.plot([chosen], [loss[rates == chosen][0]], 'o', color='C3', ms=8, mfc='none', mew=1.8)
  positive = rates[rates > 0]
  if (rates == 0).any():
    ax.set_xscale('symlog', linthresh=positive.min() if positive.size else 1.0)
  else:
    ax.set_xscale('log')
  ax_loss.set_xlabel(f'decay rate ({args.kind}); chosen by validation {args.criterion}')
  ax.set_ylabel('accuracy')
  ax_loss.set_ylabel('cross-entropy')
  ax_loss.grid(True, which='major', alpha=0.3)
  ax_loss.legend(loc='upper left', fontsize=9, frameon=False)
  source = os.path.basename(report['data']['source']).rsplit('.', 1)[-1]
  if args.data:
    source = os.path.basename(args.data)
  hidden = ', '.join(map(str, args.hidden))
  ax.set_title(
      f'wdax sweep: {source}, MLP({hidden}), {args.epochs} epochs, '
      f'{args.folds}-fold CV',
      fontsize=11,
  )
  ax.grid(True, which='major', alpha=0.3)
  ax.legend(loc='lower left', fontsize=9, frameon=False)
  fig.savefig(path, dpi=130)


def _write(out: str, report: dict[str, Any], result, choice, args) -> None:
  """Writes into a temporary folder, then moves the files into ``out``."""
  if os.path.exists(out) and not os.path.isdir(out):
    raise BadInput(f'--out {out}: exists and is not a folder')
  staging = tempfile.mkdtemp(prefix='wdax-')
  try:
    with open(os.path.join(staging, 'results.json'), 'w') as f:
      json.dump(report, f, indent=1)
      f.write('\n')
    _plot(os.path.join(staging, 'sweep.png'), report, args)
    os.makedirs(out, exist_ok=True)
    for name in ('results.json', 'sweep.png'):
      shutil.move(os.path.join(staging, name), os.path.join(out, name))
  finally:
    shutil.rmtree(staging, ignore_errors=True)


# --- describe -------------------------------------------------------------


def _transformer():
  import flax.linen as nn

  class TinyTransformer(nn.Module):
    """Two pre-norm encoder blocks over token embeddings, then a classifier."""

    vocab: int = 1000
    width: int = 64
    heads: int = 4
    blocks: int = 2
    classes: int = 10

    @nn.compact
    def __call__(self, tokens):
      h = nn.Embed(self.vocab, self.width)(tokens)
      for _ in range(self.blocks):
        h = h + nn.MultiHeadDotProductAttention(self.heads)(nn.LayerNorm()(h))
        z = nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(h)))
        h = h + nn.Dense(self.width)(z)
      return nn.Dense(self.classes)(nn.LayerNorm()(h).mean(axis=1))

  return TinyTransformer()


def _describe(args) -> int:
  import jax
  import jax.numpy as jnp

  import wdax
  from wdax import sweep

  if args.rate < 0 or not math.isfinite(args.rate):
    raise BadInput(f'--rate {args.rate}: must be finite and non-negative')
  if args.model == 'mlp':
    model, example = sweep.MLP(hidden=args.hidden, classes=10), jnp.zeros((1, 64))
  else:
    model, example = _transformer(), jnp.zeros((1, 16), jnp.int32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), example))['params']
  report = wdax.describe(params, rate=args.rate, mask=_mask(args.mask))
  print(f'{args.model}, mask {args.mask}: {_MASKS[args.mask]}')
  if sys.stdout.isatty():
    from rich.console import Console

    Console().print(report)
  else:
    print(report)
  return 0
