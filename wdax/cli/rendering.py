"""Rendering a sweep: the progress bar, the tables, the summary, and
results.json (:mod:`~wdax.cli.plotting` draws sweep.png).

What is rendered here is plain data (numbers, lists, arrays) handed over by
:mod:`wdax.cli.summary`; nothing here knows the sweep's own types.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import statistics
import sys
import tempfile
from typing import Any

from wdax.cli import folders
from wdax.cli import summary as _summary
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


def data_line(about: dict[str, Any]) -> str:
  """The first line of a sweep: the data, its split and its shape."""
  source = shown(about['source'])
  held = f'{about["train"]} training / {about["test"]} held-out'
  if about['problem'] == 'language':
    return (
        f'{source}: {held} rows of {about["tokens_per_row"]} character tokens '
        f'(vocabulary {about["vocabulary"]}), in order'
    )
  if about['problem'] == 'regression':
    return f'{source}: {held} examples, {about["features"]} features, one target'
  return f'{source}: {held} examples, {about["features"]} features, {len(about["classes"])} classes'


# How each metric is named in the table, the summary and the plot.
LABELS = {'accuracy': 'accuracy', 'r2': 'R²', 'loss': 'loss', 'perplexity': 'perplexity'}
UNITS = {
    'classification': {'loss': 'cross-entropy, nats', 'accuracy': 'fraction correct'},
    'regression': {'loss': 'mean squared error, standardised target', 'r2': 'R², 1 is perfect'},
    'language': {
        'loss': 'cross-entropy, nats per token', 'accuracy': 'next tokens predicted',
        'perplexity': 'exp(loss)',
    },
}


def _versions() -> dict[str, str]:
  import platform

  import flax
  import jax
  import numpy as np
  import optax

  import wdax

  return {
      'wdax': wdax.__version__, 'jax': jax.__version__, 'optax': optax.__version__,
      'flax': flax.__version__, 'numpy': np.__version__,
      'python': platform.python_version(),
  }


def _floats(a) -> Any:
  import numpy as np

  return np.round(np.asarray(a, np.float64), 6).tolist()


def _refit(refit: dict[str, Any], kind: str) -> dict[str, Any]:
  out: dict[str, Any] = {'kind': kind, 'point': refit['point'], 'rate': refit['rate']}
  for m, value in refit['test'].items():
    out[f'test_{m}'] = value
    if m in refit['test_per_seed']:
      out[f'test_{m}_per_seed'] = _floats(refit['test_per_seed'][m])
  for m, value in refit['train'].items():
    out[f'train_{m}'] = value
  return out


def results(args, about: dict[str, Any], report: dict[str, Any]) -> dict[str, Any]:
  """The content of results.json: every point of every kind with its
  hyperparameters, each metric's mean and s.e., its rung and its
  difference from no decay; the choice and its refit; and what it takes to
  run the job again (the command, the settings, the versions).

  Args:
    args: the parsed options.
    about: what :mod:`wdax.cli.problems` says of the data.
    report: what :mod:`wdax.cli.summary` made of the sweeps.
  """
  from wdax.cli import problems

  choice = report['choice']
  kinds = {}
  for kind, entry in report['kinds'].items():
    kinds[kind] = {
        'choice': entry['choice'],
        'refit': _refit(entry['refit'], kind),
        'curves': {
            'epochs': report['epochs'],
            **{m: _floats(v) for m, v in entry['curves'].items()},
        },
        'final': {m: _floats(v) for m, v in entry['final'].items()},
        'configuration_epochs': entry['configuration_epochs'],
        **{k: entry[k] for k in ('by_lr', 'stability') if k in entry},
    }
  return {
      **_versions(),
      'command': ['wdax', *args.argv],
      'data': about,
      'settings': {
          'data': args.data,
          'problem': args.problem,
          'kinds': list(args.kind),
          'rates': [float(r) for r in args.rates],
          'grid': [float(r) for r in args.grid],
          'names': report['names'],
          'lr': [float(lr) for lr in args.lr],
          'dropout': None if args.dropout is None else [float(d) for d in args.dropout],
          'folds': args.folds,
          'seeds': list(report['seeds']),
          'epochs': args.epochs,
          'rungs': report['rungs'],
          'prune': _summary.halving(args),
          'model': problems.model_name(args),
          'hidden': list(args.hidden),
          'batch_size': args.batch_size,
          'mask': 'flax_default',
          'criterion': args.criterion,
          'metric': report['metric'],
          'mode': report['mode'],
          'one_se': args.one_se,
          'test_size': args.test_size,
          'seed': args.seed,
          'devices': args.devices,
          'chunk_size': args.chunk_size,
      },
      'table': [row for entry in report['kinds'].values() for row in entry['rows']],
      'choice': choice,
      'refit': _refit(report['refit'], choice['kind']),
      'kinds': kinds,
      'run': report['run'],
  }


def _pm(mean: float, se: float, signed: bool = False) -> str:
  return f'{mean:{"+" if signed else ""}.4f} ± {se:.4f}'


def _value(row: dict[str, Any], name: str) -> str:
  return f'{row[name]:.3g}'


def print_tables(args, report: dict[str, Any]) -> None:
  """Prints one table per decay kind: a row per point, its difference from
  no decay, the chosen row in bold and pruned rows dimmed."""
  from rich.console import Console
  from rich.table import Table

  from wdax.cli import problems

  score = problems.score(args)
  metric = report['metric']
  criterion = 'perplexity' if args.criterion == 'perplexity' else metric[len('val_'):]
  console = Console(width=max(150, shutil.get_terminal_size().columns))
  rungs = report['rungs']
  for kind, entry in report['kinds'].items():
    out = Table(
        title=f'{kind}: validation by point (mean ± s.e. over {report["folds"]} folds x '
        f'{len(report["seeds"])} seed(s); the difference from no decay paired over them)'
    )
    for name in report['names']:
      out.add_column(name, justify='right', no_wrap=True)
    out.add_column(f'val {LABELS[score]}', justify='right', no_wrap=True)
    out.add_column(f'train {LABELS[score]}', justify='right', no_wrap=True)
    out.add_column('gap', justify='right', no_wrap=True)
    out.add_column('val loss', justify='right', no_wrap=True)
    if args.problem == 'language':
      out.add_column('val perplexity', justify='right', no_wrap=True)
    out.add_column(f'Δ {LABELS[criterion if criterion != "perplexity" else "loss"]} vs no decay', justify='right', no_wrap=True)
    if len(rungs) > 1:
      out.add_column('trained', justify='right', no_wrap=True)
    out.add_column('')
    chosen = report['choice']['kind'] == kind
    for i, row in enumerate(entry['rows']):
      d = row['vs_baseline'][metric]
      cells = [_value(row, n) for n in report['names']]
      cells += [
          _pm(row[f'val_{score}'], row[f'val_{score}_se']),
          f'{row[f"train_{score}"]:.4f}',
          _pm(row['gap'], row['gap_se'], signed=True),
          _pm(row['val_loss'], row['val_loss_se']),
      ]
      if args.problem == 'language':
        cells.append(f'{row["val_perplexity"]:.3f}')
      cells.append('baseline' if row['rate'] == 0 else _pm(d['mean'], d['se'], signed=True))
      if len(rungs) > 1:
        cells.append(
            f'pruned at {row["epochs_trained"]} ep.' if row['pruned'] else f'{row["epochs_trained"]} ep.'
        )
      is_choice = i == entry['choice']['index']
      mark = ('<- chosen' if chosen else '<- best of kind') if is_choice else ''
      if row['diverged']:
        mark = f'diverged ({row["diverged"]})'
      style = 'bold' if is_choice and chosen else 'dim' if row['pruned'] else None
      out.add_row(*cells, mark, style=style)
    console.print(out)


def _baseline_line(args, choice: dict[str, Any], report: dict[str, Any]) -> str:
  metric = choice['metric']
  what = f'validation {LABELS[metric[len("val_"):]]}'
  if choice['rate'] == 0:
    return 'against no decay: the choice is no decay itself; no rate beat it'
  d = choice['vs_baseline']
  paired = f'paired over {report["folds"]} folds x {len(report["seeds"])} seed(s)'
  verdict = (
      'beats no decay by more than its standard error' if choice['beats_baseline']
      else 'does not beat no decay by more than its standard error'
  )
  return f'against no decay (rate 0): {what} {_pm(d["mean"], d["se"], signed=True)}, {paired}: it {verdict}'


def _stability_lines(kind: str, entry: dict[str, Any]) -> list[str]:
  parts = []
  for row in entry['by_lr']:
    if row['rate'] is None:
      parts.append(f'lr {row["lr"]:g}: diverged')
    else:
      parts.append(f'lr {row["lr"]:g}: rate {row["rate"]:.3g} (lr·rate {row["product"]:.3g})')
  s = entry['stability']
  lines = [f'best rate per learning rate ({kind}): ' + ', '.join(parts)]
  if s['stable'] is None:
    lines.append(
        f'  lr·rate: only {s["with_decay"]} of {s["learning_rates"]} learning rates chose a '
        'rate above 0; nothing to compare'
    )
  else:
    verdict = 'stable' if s['stable'] else 'not stable'
    lines.append(
        f'  lr·rate spans x{s["products_span"]:.3g} across learning rates, the best rate '
        f'x{s["rates_span"]:.3g}: the product is {verdict} (one step of the rate grid is '
        f'x{s["grid_step"]:.3g})'
    )
  return lines


def print_choice(args, report: dict[str, Any], refit_seconds: float, about: dict[str, Any]) -> None:
  """Prints the choice, how it compares with no decay, the learning rates'
  best products when swept, and the refit's held-out score."""
  choice, refit = report['choice'], report['refit']
  rule = ' (one-standard-error rule)' if args.one_se else ''
  others = ''.join(f', {n} {v:.3g}' for n, v in choice['point'].items() if n != 'rate')
  among = f' among {", ".join(report["kinds"])}' if len(report['kinds']) > 1 else ''
  metric = LABELS[choice['metric'][len('val_'):]]
  print(
      f'chosen rate: {choice["rate"]:.3g}{others} with {choice["kind"]}{among}{rule}, '
      f'validation {metric} {_pm(choice["mean"], choice["se"])}'
  )
  print(_baseline_line(args, choice, report))
  for kind, entry in report['kinds'].items():
    if 'stability' in entry:
      for line in _stability_lines(kind, entry):
        print(line)
  test = refit['test']
  seeds = refit['test_per_seed']
  if args.problem == 'language':
    scored = (
        f'held-out test perplexity {test["perplexity"]:.4f} (loss {test["loss"]:.4f} nats per '
        f'token, next-token accuracy {test["accuracy"]:.4f})'
    )
  else:
    from wdax.cli import problems

    score = problems.score(args)
    values = seeds[score]
    spread = ''
    if len(values) > 1:
      spread = f' ± {statistics.stdev(values) / math.sqrt(len(values)):.4f}'
    scored = f'held-out test {LABELS[score]} {test[score]:.4f}{spread}'
  print(
      f'refit on all {about["train"]} training {"rows" if args.problem == "language" else "examples"}: '
      f'{scored} ({about["test"]} {"rows" if args.problem == "language" else "examples"}, '
      f'{refit_seconds:.1f} s)'
  )


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
  from wdax.cli import plotting

  del args
  folders.check('--out', out)
  try:
    staging = tempfile.mkdtemp(prefix='.wdax-', dir=folders.nearest(out))
    try:
      with open(os.path.join(staging, 'results.json'), 'w') as f:
        json.dump(_finite(report), f, indent=1, allow_nan=False)
        f.write('\n')
      plotting.plot(os.path.join(staging, 'sweep.png'), report)
      os.makedirs(out, exist_ok=True)
      for name in ('results.json', 'sweep.png'):
        os.replace(os.path.join(staging, name), os.path.join(out, name))
    finally:
      shutil.rmtree(staging, ignore_errors=True)
  except OSError as e:
    raise BadInput(f'--out {out}: cannot write the results ({e.strerror or e})') from None
