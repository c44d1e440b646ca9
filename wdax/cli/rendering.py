"""Rendering a sweep on the terminal: the progress bar, the first lines, the
tables and the summary of the choice.

What is rendered is the :class:`~wdax.cli.report.Report`; results.json and
sweep.png are written by :mod:`~wdax.cli.writing`.
"""

from __future__ import annotations

import math
import shutil
import sys
from collections.abc import Callable
from typing import Any

from wdax.cli.labels import LABELS
from wdax.cli.labels import shown
from wdax.cli.report import KindReport
from wdax.cli.report import Report
from wdax.cli.requests import SweepRequest


class Progress:
  """A rich progress bar on stderr, or nothing with ``--quiet`` or when
  stderr is not a terminal (where the bar would leave only a blank line)."""

  def __init__(self, quiet: bool):
    self.quiet = quiet or not sys.stderr.isatty()

  def __enter__(self) -> Progress:
    if self.quiet:
      return self
    # rich is imported only where it draws: a quiet run never loads it.
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

  def __exit__(self, *exc: Any) -> None:
    if not self.quiet:
      self.bar.__exit__(*exc)

  def task(self, description: str, waiting: str) -> Callable[[int, int], None] | None:
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


def _pm(mean: float, se: float, signed: bool = False) -> str:
  return f'{mean:{"+" if signed else ""}.4f} ± {se:.4f}'


def grid_line(request: SweepRequest, model: str, batch_size: int) -> str:
  """The second line of a sweep: the grid and what trains on it."""
  others = ''.join(f' x {len(v)} {n}' for n, v in request.space.items() if n != 'rate')
  return (
      f'{len(request.grid)} rates (0 the baseline){others} x {request.folds} folds x '
      f'{request.seeds} seed(s) x {len(request.kinds)} kind(s) = {request.trainings} trainings of '
      f'{model} with {", ".join(request.kinds)}, {request.epochs} epochs, '
      f'batch {batch_size}, lr {", ".join(f"{lr:g}" for lr in request.lr)}'
      + (f', pruned from epoch {request.prune[0]} by {request.prune[1]}' if request.prune else '')
  )


def _columns(report: Report) -> list[str]:
  score = LABELS[report.request.score]
  criterion = 'loss' if report.request.criterion == 'perplexity' else report.metric[len('val_'):]
  columns = [*report.names, f'val {score}', f'train {score}', 'gap', 'val loss']
  if report.request.problem == 'language':
    columns.append('val perplexity')
  columns.append(f'Δ {LABELS[criterion]} vs no decay')
  if len(report.rungs) > 1:
    columns.append('trained')
  return columns


def _cells(report: Report, entry: KindReport, i: int) -> tuple[list[str], str | None]:
  """Row ``i``'s cells, and its style: the chosen row bold, pruned rows dim."""
  row, score = entry.rows[i], report.request.score
  v = row.values
  d = row.vs_baseline[report.metric]
  cells = [f'{v[n]:.3g}' for n in report.names]
  cells += [
      _pm(v[f'val_{score}'], v[f'val_{score}_se']), f'{v[f"train_{score}"]:.4f}',
      _pm(row.gap, row.gap_se, signed=True), _pm(v['val_loss'], v['val_loss_se']),
  ]
  if row.perplexity is not None:
    cells.append(f'{row.perplexity[0]:.3f}')
  cells.append('baseline' if v['rate'] == 0 else _pm(d.mean, d.se, signed=True))
  if len(report.rungs) > 1:
    trained = v['epochs_trained']
    cells.append(f'pruned at {trained} ep.' if row.pruned else f'{trained} ep.')
  chosen = report.best == entry.kind
  is_choice = i == entry.choice.index
  mark = ('<- chosen' if chosen else '<- best of kind') if is_choice else ''
  if v['diverged']:
    mark = f'diverged ({v["diverged"]})'
  return [*cells, mark], 'bold' if is_choice and chosen else 'dim' if row.pruned else None


def print_tables(report: Report) -> None:
  """Prints one table per decay kind: a row per point, its difference from
  no decay, the chosen row in bold and pruned rows dimmed."""
  # rich is imported where it draws, as in Progress.
  from rich.console import Console
  from rich.table import Table

  console = Console(width=max(150, shutil.get_terminal_size().columns))
  for kind, entry in report.kinds.items():
    out = Table(
        title=f'{kind}: validation by point (mean ± s.e. over {report.folds} folds x '
        f'{len(report.seeds)} seed(s); the difference from no decay paired over them)'
    )
    for column in _columns(report):
      out.add_column(column, justify='right', no_wrap=True)
    out.add_column('')  # the mark of the choice, or of a divergence
    for i in range(len(entry.rows)):
      cells, style = _cells(report, entry, i)
      out.add_row(*cells, style=style)
    console.print(out)


def _baseline_line(report: Report) -> str:
  choice = report.choice
  what = f'validation {LABELS[choice.metric[len("val_"):]]}'
  if choice.rate == 0:
    return 'against no decay: the choice is no decay itself; no rate beat it'
  d = choice.vs_baseline
  paired = f'paired over {report.folds} folds x {len(report.seeds)} seed(s)'
  verdict = (
      'beats no decay by more than its standard error' if choice.beats_baseline
      else 'does not beat no decay by more than its standard error'
  )
  return f'against no decay (rate 0): {what} {_pm(d.mean, d.se, signed=True)}, {paired}: it {verdict}'


def _stability_lines(entry: KindReport) -> list[str]:
  parts = []
  for row in entry.by_lr or []:
    if row.rate is None:
      parts.append(f'lr {row.lr:g}: diverged')
    else:
      parts.append(f'lr {row.lr:g}: rate {row.rate:.3g} (lr·rate {row.product:.3g})')
  s = entry.stability
  lines = [f'best rate per learning rate ({entry.kind}): ' + ', '.join(parts)]
  if s is None or s.stable is None:
    with_decay, learning_rates = (0, 0) if s is None else (s.with_decay, s.learning_rates)
    lines.append(
        f'  lr·rate: only {with_decay} of {learning_rates} learning rates chose a '
        'rate above 0; nothing to compare'
    )
  else:
    verdict = 'stable' if s.stable else 'not stable'
    lines.append(
        f'  lr·rate spans x{s.products_span:.3g} across learning rates, the best rate '
        f'x{s.rates_span:.3g}: the product is {verdict} (one step of the rate grid is '
        f'x{s.grid_step:.3g})'
    )
  return lines


def _refit_line(report: Report) -> str:
  request, refit, about = report.request, report.refit, report.about
  test = refit.test
  if request.problem == 'language':
    scored = (
        f'held-out test perplexity {test["perplexity"]:.4f} (loss {test["loss"]:.4f} nats per '
        f'token, next-token accuracy {test["accuracy"]:.4f})'
    )
  else:
    score = request.score
    se = refit.test_se[score]
    spread = f' ± {se:.4f}' if math.isfinite(se) else ''
    scored = f'held-out test {LABELS[score]} {test[score]:.4f}{spread}'
  what = 'rows' if request.problem == 'language' else 'examples'
  return (
      f'refit on all {about["train"]} training {what}: {scored} ({about["test"]} {what}, '
      f'{report.timing.refit:.1f} s)'
  )


def print_choice(report: Report) -> None:
  """Prints the choice, how it compares with no decay, the learning rates'
  best products when swept, and the refit's held-out score."""
  choice = report.choice
  rule = ' (one-standard-error rule)' if report.request.one_se else ''
  others = ''.join(f', {n} {v:.3g}' for n, v in choice.point.items() if n != 'rate')
  among = f' among {", ".join(report.kinds)}' if len(report.kinds) > 1 else ''
  metric = LABELS[choice.metric[len('val_'):]]
  print(
      f'chosen rate: {choice.rate:.3g}{others} with {choice.kind}{among}{rule}, '
      f'validation {metric} {_pm(choice.mean, choice.se)}'
  )
  print(_baseline_line(report))
  for entry in report.kinds.values():
    if entry.by_lr is not None:
      for line in _stability_lines(entry):
        print(line)
  print(_refit_line(report))


def warn_diverged(report: Report) -> None:
  """Warns on stderr of the rates at which a training diverged."""
  for kind, entry in report.kinds.items():
    diverged = sorted({row.values['rate'] for row in entry.rows if row.values['diverged']})
    if diverged:
      rates = len({row.values['rate'] for row in entry.rows})
      print(
          f'wdax: warning: the training diverged (NaN or infinite loss) with {kind} at '
          f'{len(diverged)} of {rates} rates, from {min(diverged):.3g}; those are never '
          'chosen; try a smaller --lr',
          file=sys.stderr,
      )
