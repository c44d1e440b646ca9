"""Drawing sweep.png from the content of results.json.

Two kinds of picture, each readable on its own (title, axes named with
units, the choice and the baseline marked):

- the rate alone swept: the validation score against the decay rate, one
  curve per decay kind, no decay (rate 0) as a horizontal band, and below
  it each rate's difference from no decay, paired over folds and seeds;
- the rate and the learning rate or the dropout rate: a heatmap of the
  validation score over the two, one panel per kind, the baseline column
  and the choice marked.

Pruned points are drawn grey, at the score of their last rung.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np

from wdax.cli.labels import LABELS
from wdax.cli.labels import UNITS
from wdax.cli.labels import shown
from wdax.sweep import analysis
from wdax.sweep import datasets

_NAMES = {
    'lr': 'learning rate lr (Adam step size)',
    'dropout': 'dropout rate (fraction of hidden units dropped)',
}


def _shown_metric(results: dict[str, Any]) -> tuple[str, str]:
  """The metric drawn (``val_loss``, ``val_accuracy``, ``val_r2``,
  ``val_perplexity``) and its axis label with units."""
  settings = results['settings']
  problem = settings['problem']
  criterion = settings['criterion']
  name = 'perplexity' if criterion == 'perplexity' else settings['metric'][len('val_'):]
  label = f'validation {LABELS[name]}\n({UNITS[problem][name]})'
  return f'val_{name}', label


def _value(row: dict[str, Any], metric: str) -> tuple[float, float]:
  """A row's mean and s.e. of ``metric``; perplexity from the loss."""
  if metric == 'val_perplexity':
    mean, se = row['val_loss'], row['val_loss_se']
    if mean is None:
      return math.nan, math.nan
    se = 0.0 if se is None else se
    return analysis.perplexity(mean), analysis.perplexity_se(mean, se)
  mean, se = row.get(metric), row.get(f'{metric}_se')
  return (math.nan if mean is None else mean), (math.nan if se is None else se)


def _difference(row: dict[str, Any], metric: str) -> tuple[float, float]:
  key = 'val_loss' if metric == 'val_perplexity' else metric
  d = row['vs_baseline'][key]
  return (math.nan if d['mean'] is None else d['mean']), (math.nan if d['se'] is None else d['se'])


def _title(results: dict[str, Any]) -> str:
  settings, data = results['settings'], results['data']
  source = settings['data']
  if source not in datasets.NAMES:
    source = shown(os.path.basename(source))
  prune = settings['prune']
  pruned = f', pruned from epoch {prune["min_epochs"]}' if prune else ''
  return (
      f'wdax sweep: {source} ({data["train"]} training {"rows" if data["problem"] == "language" else "examples"}), '
      f'{settings["model"]},\n{settings["epochs"]} epochs, {settings["folds"]}-fold CV{pruned}; '
      f'chosen by validation {settings["criterion"]}'
  )


def _test_text(results: dict[str, Any]) -> str:
  refit, problem = results['refit'], results['settings']['problem']
  if problem == 'language':
    return f'test perplexity {refit["test_perplexity"]:.3f}'
  if problem == 'regression':
    return f'test R² {refit["test_r2"]:.4f}'
  return f'test accuracy {refit["test_accuracy"]:.4f}'


def plot(path: str, results: dict[str, Any]) -> None:
  """Draws sweep.png at ``path`` from ``results`` (results.json's content,
  NaN still as NaN)."""
  # matplotlib takes a second to import: only the run that draws pays it.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  from matplotlib.figure import Figure

  names = results['settings']['names']
  other = next((n for n in names if n != 'rate'), None)
  table = results['table']
  if other is not None and len({row[other] for row in table}) > 1:
    kinds = results['settings']['kinds']
    columns = min(len(kinds), 2)
    rows = -(-len(kinds) // columns)
    fig = Figure(figsize=(6.4 * columns + 0.8, 4.8 * rows + 0.9), layout='constrained')
    FigureCanvasAgg(fig)
    _heatmaps(fig, results, other, rows, columns)
  else:
    fig = Figure(figsize=(7.8, 7.2), layout='constrained')
    FigureCanvasAgg(fig)
    _curves(fig, results)
  fig.suptitle(_title(results), fontsize=10.5)
  fig.savefig(path, dpi=120)


def _curves(fig, results: dict[str, Any]) -> None:
  metric, label = _shown_metric(results)
  choice = results['choice']
  ax, ax_diff = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
  kinds = results['settings']['kinds']
  rows_of = {k: [r for r in results['table'] if r['kind'] == k] for k in kinds}
  # The rates drawn: above 0, and not diverged at every training.
  positive = sorted({
      r['rate'] for r in results['table'] if r['rate'] > 0 and math.isfinite(_value(r, metric)[0])
  })
  _baselines(ax, rows_of, metric)
  for i, k in enumerate(kinds):
    rows = [r for r in rows_of[k] if r['rate'] > 0]
    if not rows:
      continue
    rates = np.array([r['rate'] for r in rows])
    values = np.array([_value(r, metric) for r in rows])
    diffs = np.array([_difference(r, metric) for r in rows])
    done = np.array([not r['pruned'] for r in rows])
    colour = f'C{i}'
    ax.fill_between(rates[done], *(values[done, 0] + s * values[done, 1] for s in (-1, 1)),
                    color=colour, alpha=0.18, lw=0)
    ax.plot(rates[done], values[done, 0], 'o-', color=colour, ms=4, label=f'{k} (mean ± s.e.)')
    ax_diff.errorbar(rates[done], diffs[done, 0], yerr=diffs[done, 1], fmt='o-', color=colour,
                     ms=3.5, capsize=2, lw=1.2, label=k)
    if (~done).any():
      ax.plot(rates[~done], values[~done, 0], 'x', color='0.55', ms=6,
              label='pruned (at its last rung)' if i == 0 else None)
      ax_diff.plot(rates[~done], diffs[~done, 0], 'x', color='0.55', ms=6)
  chosen = _value(results['table'][_row_index(results, choice)], metric)[0]
  note = f'chosen: {choice["kind"]}, rate {choice["rate"]:.3g}; {_test_text(results)}'
  if choice['rate'] > 0:
    ax.plot([choice['rate']], [chosen], 'o', color='k', ms=12, mfc='none', mew=2, label=note)
    for a in (ax, ax_diff):
      a.axvline(choice['rate'], color='k', ls=':', lw=1.2)
  else:
    ax.plot([], [], 'o', color='k', mfc='none', mew=2, label=f'{note} (no decay)')
  ax_diff.axhline(0.0, color='0.45', ls='--', lw=1.0)
  fit_difference_axis(ax_diff, results, metric)
  # Limits first: one rate, or none, would leave a log axis without a range.
  if not positive:
    ax.set_xlim(1e-3, 1.0)
  elif len(positive) == 1:
    ax.set_xlim(positive[0] / 3, positive[0] * 3)
  ax.set_xscale('log')
  ax.set_ylabel(label)
  what = 'loss' if metric == 'val_perplexity' else metric[len('val_'):]
  better = 'below' if results['settings']['mode'] == 'min' else 'above'
  ax_diff.set_ylabel(
      f'Δ validation {LABELS[what]} vs no decay\n(paired over folds, ± s.e.; {better} 0 is better)'
  )
  ax_diff.set_xlabel('decay rate λ (log scale; adamw decays the weights by lr·λ a step)')
  for a in (ax, ax_diff):
    a.grid(True, which='major', alpha=0.3)
  ax.legend(fontsize=8, frameon=False, loc='best')
  if len(kinds) > 1:
    ax_diff.legend(fontsize=8, frameon=False, loc='best')


def _baselines(ax, rows_of: dict[str, list[dict[str, Any]]], metric: str) -> None:
  """No decay as a horizontal band: one for every kind, or one per kind
  where their numbers differ."""
  kinds = list(rows_of)
  bases = []
  for k in kinds:
    base = next(r for r in rows_of[k] if r['rate'] == 0)
    bases.append(_value(base, metric))
  # The kinds' baselines are the same optimiser (Adam, no decay): one band
  # unless their numbers differ by more than float rounding.
  distinct = not np.allclose(bases, bases[0], rtol=1e-4, atol=1e-7, equal_nan=True)
  for i, k in enumerate(kinds if distinct else kinds[:1]):
    mean, se = bases[i]
    colour = f'C{i}' if distinct else '0.45'
    ax.axhspan(mean - se, mean + se, color=colour, alpha=0.15, lw=0)
    ax.axhline(mean, color=colour, ls='--', lw=1.2, label=(
        f'no decay (rate 0){f" {k}" if distinct else ""}: {mean:.4f} ± {se:.4f}'
    ))


def fit_difference_axis(ax, results: dict[str, Any], metric: str) -> None:
  """A symmetric-log axis when the largest difference dwarfs the chosen
  one's, so that both the gains near the choice and the losses of too much
  decay can be read."""
  diffs = np.array([_difference(r, metric) for r in results['table'] if r['rate'] > 0])
  if not diffs.size or results['choice']['rate'] == 0:
    return
  largest = np.nanmax(np.abs(diffs[:, 0]), initial=0.0)
  d = _difference(results['table'][_row_index(results, results['choice'])], metric)
  small = abs(d[0]) + (d[1] if np.isfinite(d[1]) else 0.0)
  if np.isfinite(largest) and small > 0 and largest > 20 * small:
    ax.set_yscale('symlog', linthresh=small)
    # Ticks at 0 and the decades past the linear part only: the decades
    # inside it would sit on top of 0's label.
    low, high = ax.get_ylim()
    decades = range(math.ceil(math.log10(small)), math.floor(math.log10(max(-low, high))) + 1)
    ticks = [0.0, *(sign * 10.0**k for k in decades for sign in (-1, 1))]
    ax.set_yticks(sorted(t for t in ticks if low <= t <= high))
    ax.set_ylim(low, high)


def _row_index(results: dict[str, Any], choice: dict[str, Any]) -> int:
  """The chosen point's row in the table of every kind."""
  for i, row in enumerate(results['table']):
    if row['kind'] == choice['kind'] and all(row[n] == v for n, v in choice['point'].items()):
      return i
  raise ValueError(f'the choice {choice["point"]} is not in the table')


def _grids(
    results: dict[str, Any], other: str, metric: str, rates: list[float], values: list[float]
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], dict[str, np.ndarray]]:
  """Each kind's ``(scores, pruned)`` over ``values`` of ``other`` (rows)
  and ``rates`` (columns), and the epochs each cell trained."""
  grids, epochs_of = {}, {}
  for k in results['settings']['kinds']:
    grid = np.full((len(values), len(rates)), np.nan)
    pruned = np.zeros(grid.shape, bool)
    trained = np.zeros(grid.shape, int)
    for r in results['table']:
      if r['kind'] == k:
        i, j = values.index(r[other]), rates.index(r['rate'])
        grid[i, j] = _value(r, metric)[0]
        pruned[i, j] = r['pruned']
        trained[i, j] = r['epochs_trained']
    grids[k] = grid, pruned
    epochs_of[k] = trained
  return grids, epochs_of


def _heatmaps(fig, results: dict[str, Any], other: str, rows: int, columns: int) -> None:
  from matplotlib.patches import Rectangle  # imported where it draws, as in plot

  metric, label = _shown_metric(results)
  choice = results['choice']
  mode = results['settings']['mode']
  kinds = results['settings']['kinds']
  rates = sorted({r['rate'] for r in results['table']})
  values = sorted({r[other] for r in results['table']})
  grids, epochs_of = _grids(results, other, metric, rates, values)
  finite = np.concatenate([g[np.isfinite(g)] for g, _ in grids.values()])
  # The colours span the best quarter of the range and more: a few points of
  # far too much decay would otherwise leave every good one the same colour.
  # Past the scale the colour saturates; every cell shows its number.
  if not finite.size:
    low, high = 0.0, 1.0
  elif mode == 'min':
    low, high = finite.min(), np.quantile(finite, 0.75)
  else:
    low, high = np.quantile(finite, 0.25), finite.max()
  if high <= low:
    high = low + 1e-9
  axes = np.atleast_1d(fig.subplots(rows, columns, squeeze=False)).ravel()
  cmap = 'viridis_r' if mode == 'min' else 'viridis'
  image = None
  for ax, k in zip(axes, kinds):
    grid, pruned = grids[k]
    epochs = epochs_of[k]
    image = ax.imshow(grid, cmap=cmap, vmin=low, vmax=high, aspect='auto', origin='lower')
    if grid.size <= 160:
      for (i, j), v in np.ndenumerate(grid):
        text = 'div.' if not np.isfinite(v) else f'{v:.3g}'
        if pruned[i, j]:
          text += f'\n({epochs[i, j]} ep.)'
        bright = np.clip((v - low) / (high - low), 0, 1)
        bright = 1 - bright if mode == 'min' else bright
        ax.text(j, i, text, ha='center', va='center', fontsize=7,
                color='k' if bright > 0.5 else 'w', style='italic' if pruned[i, j] else 'normal')
    for i, j in zip(*np.nonzero(pruned)):
      ax.add_patch(Rectangle((j - 0.5, i - 0.5), 1, 1, fill=False, hatch='///', ec='0.6', lw=0))
    ax.axvline(0.5, color='w', lw=2.5)
    ax.set_xticks(range(len(rates)), ['0\n(none)' if r == 0 else f'{r:.2g}' for r in rates],
                  fontsize=7, rotation=0 if len(rates) <= 8 else 60)
    ax.set_yticks(range(len(values)), [f'{v:g}' for v in values], fontsize=8)
    ax.set_xlabel('decay rate λ (column 0: no decay, the baseline)')
    ax.set_ylabel(_NAMES.get(other, other))
    best = results['kinds'][k]['choice']
    title = f'{k}: best rate {best["rate"]:.3g}, {other} {best["point"][other]:g}'
    if k == choice['kind']:
      i, j = values.index(choice['point'][other]), rates.index(choice['rate'])
      ax.add_patch(Rectangle((j - 0.45, i - 0.45), 0.9, 0.9, fill=False, ec='red', lw=2.5))
      title = f'{k}: chosen rate {choice["rate"]:.3g}, {other} {choice["point"][other]:g} (red box); {_test_text(results)}'
    ax.set_title(title, fontsize=9)
  for ax in axes[len(kinds):]:
    ax.set_visible(False)
  bar = fig.colorbar(image, ax=axes[: len(kinds)].tolist(), shrink=0.9)
  bar.set_label(f'{label}\nbrighter is better; saturates past the scale', fontsize=8)
  if any(p.any() for _, p in grids.values()):
    fig.supxlabel('hatched, numbers in italics: pruned points, at the score of their last rung',
                  fontsize=8, color='0.3')
