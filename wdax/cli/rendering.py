"""Rendering a sweep: the progress bar, the table, results.json and sweep.png.

What is rendered here is plain data (numbers, lists, arrays) handed over by
:mod:`wdax.cli.running`; nothing here knows the sweep's own types.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import tempfile
from typing import Any

from wdax.cli.errors import BadInput


def shown(path: str) -> str:
  r"""``path`` as text any output can hold: a byte that is not UTF-8 (which
  Python keeps in a path as a lone surrogate) is shown as ``\xff``.

  Examples:
    >>> print(shown('data-\udcff.csv'))
    data-\xff.csv
  """
  return os.fsencode(path).decode('utf-8', 'backslashreplace')


class Progress:
  """A rich progress bar on stderr, or nothing with ``--quiet`` or when
  stderr is not a terminal (where the bar would leave only a blank line)."""

  def __init__(self, quiet: bool):
    self.quiet = quiet or not sys.stderr.isatty()

  def __enter__(self):
    if self.quiet:
      return self
    from rich.console import Console
    from rich.progress import BarColumn
    from rich.progress import MofNCompleteColumn
    from rich.progress import Progress as Bar
    from rich.progress import TextColumn
    from rich.progress import TimeElapsedColumn

    self.bar = Bar(
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


def report(args, data: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
  """The content of results.json.

  Args:
    args: the parsed options.
    data: ``source``, ``train``, ``test``, ``features`` and ``classes``.
    summary: what :mod:`wdax.cli.running` made of the sweep's result.
  """
  import jax
  import numpy as np

  import wdax

  def floats(a):
    return np.round(np.asarray(a, np.float64), 6).tolist()

  refit = summary['refit']
  return {
      'wdax': wdax.__version__,
      'jax': jax.__version__,
      'command': ['wdax', *args.argv],
      'data': data,
      'settings': {
          'kind': args.kind,
          'rates': [float(r) for r in args.rates],
          'folds': args.folds,
          'seeds': list(summary['seeds']),
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
      'table': summary['table'],
      'choice': summary['choice'],
      'refit': {
          'rate': refit['rate'],
          'test_accuracy': float(np.mean(refit['test_accuracy'])),
          'test_accuracy_per_seed': floats(refit['test_accuracy']),
          'test_loss': refit['test_loss'],
          'train_accuracy': refit['train_accuracy'],
      },
      'curves': {
          'epochs': [int(e) for e in summary['epochs']],
          **{name: floats(values) for name, values in summary['curves'].items()},
      },
      'final': {name: floats(values) for name, values in summary['final'].items()},
      'run': summary['run'],
  }


def print_table(table: list[dict[str, float]], chosen: int) -> None:
  """Prints one row per rate, the ``chosen`` row in bold."""
  from rich.console import Console
  from rich.table import Table

  out = Table(title='validation by rate (mean ± s.e. over folds and seeds)')
  out.add_column('rate', justify='right')
  out.add_column('val accuracy', justify='right')
  out.add_column('train accuracy', justify='right')
  out.add_column('gap', justify='right')
  out.add_column('val loss', justify='right')
  out.add_column('')
  for i, row in enumerate(table):
    is_chosen = i == chosen
    out.add_row(
        f'{row["rate"]:.3g}',
        f'{row["val_accuracy"]:.4f} ± {row["val_accuracy_se"]:.4f}',
        f'{row["train_accuracy"]:.4f}',
        f'{row["gap"]:+.4f} ± {row["gap_se"]:.4f}',
        f'{row["val_loss"]:.4f} ± {row["val_loss_se"]:.4f}',
        '<- chosen' if is_chosen else '',
        style='bold' if is_chosen else None,
    )
  Console(width=max(100, shutil.get_terminal_size().columns)).print(out)


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
    source = shown(os.path.basename(args.data))
  hidden = ', '.join(map(str, args.hidden))
  ax.set_title(
      f'wdax sweep: {source}, MLP({hidden}), {args.epochs} epochs, '
      f'{args.folds}-fold CV',
      fontsize=11,
  )
  ax.grid(True, which='major', alpha=0.3)
  ax.legend(loc='lower left', fontsize=9, frameon=False)
  fig.savefig(path, dpi=130)


def _nearest_folder(path: str) -> str:
  """The closest ancestor of ``path`` (or ``path`` itself) that exists."""
  path = os.path.abspath(path)
  while not os.path.exists(path):
    path = os.path.dirname(path)
  return path


def check_out(out: str) -> None:
  """Refuses an ``--out`` that cannot become a folder of results.

  It creates nothing under ``out``: writing is tried in a folder made and
  removed at once in the closest existing ancestor.
  """
  if not out:
    raise BadInput('--out: give a folder')
  if '\0' in out:
    raise BadInput(f'--out {out!r}: a path cannot hold a NUL character')
  if os.path.exists(out) and not os.path.isdir(out):
    raise BadInput(f'--out {out}: exists and is not a folder')
  parent = _nearest_folder(out)
  if not os.path.isdir(parent):
    raise BadInput(f'--out {out}: {parent} is not a folder')
  longest = os.pathconf(parent, 'PC_NAME_MAX') if hasattr(os, 'pathconf') else 255
  for name in os.path.abspath(out).split(os.sep):
    if len(os.fsencode(name)) > longest:
      raise BadInput(f'--out {out}: a name in it is longer than {longest} bytes')
  try:
    os.rmdir(tempfile.mkdtemp(prefix='.wdax-', dir=parent))
  except OSError as e:
    raise BadInput(f'--out {out}: cannot write in {parent} ({e.strerror or e})') from None


def _finite(value: Any) -> Any:
  """``value`` with NaN and infinities as ``None``: JSON has no such numbers."""
  if isinstance(value, float):
    return value if math.isfinite(value) else None
  if isinstance(value, dict):
    return {k: _finite(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_finite(v) for v in value]
  return value


def write(out: str, report: dict[str, Any], args) -> None:
  """Writes results.json and sweep.png into ``out``, each file whole or not
  at all.

  Both are made in a staging folder on the same file system, then renamed
  into ``out``; NaN or infinite numbers (a diverged training) are written as
  ``null``.
  """
  check_out(out)
  try:
    staging = tempfile.mkdtemp(prefix='.wdax-', dir=_nearest_folder(out))
    try:
      with open(os.path.join(staging, 'results.json'), 'w') as f:
        json.dump(_finite(report), f, indent=1, allow_nan=False)
        f.write('\n')
      _plot(os.path.join(staging, 'sweep.png'), report, args)
      os.makedirs(out, exist_ok=True)
      for name in ('results.json', 'sweep.png'):
        os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
      shutil.rmtree(staging, ignore_errors=True)
  except OSError as e:
    raise BadInput(f'--out {out}: cannot write the results ({e.strerror or e})') from None
