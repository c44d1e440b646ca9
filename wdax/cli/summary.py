"""What the command line reads of the sweep's results, as plain data.

:func:`summarise` turns the :class:`wdax.sweep.Selection` of each decay kind
into numbers, lists and arrays: the rows of the table with each point's
difference from no decay (:meth:`wdax.sweep.Result.difference`), the choices
and refits, and, when the learning rate is swept, the best rate at each
learning rate (:meth:`wdax.sweep.Result.choose` with ``where``). Nothing
after this module knows the sweep's own types.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

BASELINE = {'rate': 0.0}


def halving(args) -> dict[str, Any] | None:
  """The successive halving of ``--prune``, as the arguments of
  :class:`wdax.sweep.Halving`, or None: no decay is never pruned, so it stays
  the baseline at every rung, and the one-standard-error rule keeps the
  strongest decay that a rung cannot tell from its best (decay's benefit
  shows late)."""
  if args.prune is None:
    return None
  return {
      'min_epochs': args.prune[0], 'reduction_factor': args.prune[1],
      'keep': dict(BASELINE), 'one_se': 'rate',
  }


def _rows(kind: str, result, perplexity: bool) -> list[dict[str, Any]]:
  """The result's table, each row with its kind, its generalisation gap
  (training minus validation score, paired over trainings), whether it was
  pruned, and its difference from no decay in every metric."""
  from wdax.sweep import results

  rows = result.table()
  score = next(m[len('val_'):] for m in result.metrics if m.startswith('val_') and m != 'val_loss')
  gap, gap_se = results.mean_se(result.final(f'train_{score}') - result.final(f'val_{score}'))
  differences = {m: result.difference(m, BASELINE) for m in result.metrics}
  last = len(result.rungs) - 1
  out = []
  for i, row in enumerate(rows):
    row = {'kind': kind, **row}
    row['pruned'] = bool(row['rung'] < last)
    row['gap'], row['gap_se'] = float(gap[i]), float(gap_se[i])
    if perplexity:
      row['val_perplexity'] = _exp(row['val_loss'])
      row['train_perplexity'] = _exp(row['train_loss'])
    row['vs_baseline'] = {
        m: {'mean': float(mean[i]), 'se': float(se[i])} for m, (mean, se) in differences.items()
    }
    out.append(row)
  return out


def _mean_curve(values):
  """``(P, F, S, E)`` values as ``(P, E)`` means over the finite trainings."""
  import numpy as np

  from wdax.sweep import results

  p, f, s, e = values.shape
  return results.mean_se(np.moveaxis(values, -1, 1).reshape(p, e, f * s))[0]


def _exp(value: float) -> float:
  return math.exp(value) if math.isfinite(value) and value < 700 else math.inf


def _beats(mode: str, mean: float, se: float) -> bool:
  """Whether a difference from no decay is a gain by more than its s.e."""
  if not (math.isfinite(mean) and math.isfinite(se)):
    return False
  return mean < -se if mode == 'min' else mean > se


def _refit(fit, perplexity: bool) -> dict[str, Any]:
  import numpy as np

  test = {m[len('test_'):]: fit.final(m) for m in fit.curves if m.startswith('test_')}
  train = {m[len('train_'):]: float(np.mean(fit.final(m))) for m in fit.curves if m.startswith('train_')}
  out = {
      'point': dict(fit.point),
      'rate': fit.point['rate'],
      'test': {m: float(np.mean(v)) for m, v in test.items()},
      'test_per_seed': {m: [float(x) for x in v] for m, v in test.items()},
      'train': train,
  }
  if perplexity:
    out['test']['perplexity'] = _exp(out['test']['loss'])
  return out


def _by_lr(result, metric: str, mode: str, one_se: bool) -> list[dict[str, Any]]:
  """The best rate at each learning rate, and the product lr * rate."""
  lrs = sorted({p['lr'] for p in result.points})
  out = []
  for lr in lrs:
    try:
      choice = result.choose(metric, mode, one_se, where={'lr': lr})
    except ValueError:  # every rate diverged at this learning rate
      out.append({'lr': lr, 'rate': None, 'product': None, 'mean': None, 'se': None})
      continue
    rate = choice.point['rate']
    out.append({'lr': lr, 'rate': rate, 'product': lr * rate, 'mean': choice.mean, 'se': choice.se})
  return out


def stability(by_lr: list[dict[str, Any]], grid: list[float]) -> dict[str, Any]:
  """Whether the best ``lr * rate`` is stable across learning rates.

  AdamW decays by :math:`\\eta\\lambda` a step, so if the product is what
  matters the best rate :math:`\\lambda^*` moves as :math:`1/\\eta`, and the
  products :math:`\\eta\\lambda^*` agree. They are called stable when they
  span no more than one step of the rate grid (the largest ratio of
  neighbouring positive rates), the resolution the grid can show.

  Examples:
    >>> rows = [{'lr': 1e-3, 'rate': 1.0, 'product': 1e-3},
    ...         {'lr': 1e-2, 'rate': 0.1, 'product': 1e-3}]
    >>> s = stability(rows, [0.0, 0.1, 1.0])
    >>> s['stable'], round(s['products_span'], 6), round(s['rates_span'], 6)
    (True, 1.0, 10.0)
  """
  positive = sorted(r for r in grid if r > 0)
  step = max((b / a for a, b in zip(positive, positive[1:])), default=math.inf)
  products = [r['product'] for r in by_lr if r['rate']]
  rates = [r['rate'] for r in by_lr if r['rate']]
  out: dict[str, Any] = {'grid_step': step, 'with_decay': len(products), 'learning_rates': len(by_lr)}
  if len(products) < 2:
    out.update(stable=None, products_span=None, rates_span=None)
    return out
  out['products_span'] = max(products) / min(products)
  out['rates_span'] = max(rates) / min(rates)
  out['stable'] = bool(out['products_span'] <= step * (1 + 1e-9))
  return out


def summarise(args, found: Mapping[str, Any], metric: str, mode: str) -> dict[str, Any]:
  """The plain data of the sweeps of every kind in ``found`` (a kind's
  name to its :class:`wdax.sweep.Selection`), and the choice among them:
  the kind whose chosen point has the best mean ``metric``, the first on a
  tie."""

  perplexity = args.problem == 'language'
  kinds = {}
  for kind, selection in found.items():
    result, choice = selection.result, selection.choice
    rows = _rows(kind, result, perplexity)
    chosen = rows[choice.index]['vs_baseline'][metric]
    entry = {
        'rows': rows,
        'choice': {
            'kind': kind, 'index': choice.index, 'point': dict(choice.point),
            'rate': choice.point['rate'], 'criterion': args.criterion, 'metric': metric,
            'mode': mode, 'mean': choice.mean, 'se': choice.se,
            'vs_baseline': chosen,
            'beats_baseline': _beats(mode, chosen['mean'], chosen['se']),
        },
        'refit': _refit(selection.refit, perplexity),
        'curves': {m: _mean_curve(v) for m, v in result.curves.items()},
        'final': {m: result.final(m) for m in result.metrics},
        'configuration_epochs': int(result.configuration_epochs),
        'run': {
            'devices': result.devices, 'chunk_size': result.chunk_size,
            'chunks': result.chunks, 'bytes_per_configuration': result.bytes_per_configuration,
        },
    }
    if 'lr' in result.points[0]:
      entry['by_lr'] = _by_lr(result, metric, mode, args.one_se)
      entry['stability'] = stability(entry['by_lr'], args.grid)
    kinds[kind] = entry
  sign = 1.0 if mode == 'max' else -1.0
  best = max(kinds, key=lambda k: (sign * kinds[k]['choice']['mean'], -list(kinds).index(k)))
  return {
      'names': list(found[best].result.points[0]),
      'metric': metric,
      'mode': mode,
      'epochs': [int(e) for e in found[best].result.epochs],
      'rungs': [int(e) for e in found[best].result.rungs],
      'folds': found[best].result.folds,
      'seeds': list(found[best].result.seeds),
      'kinds': kinds,
      'choice': kinds[best]['choice'],
      'refit': kinds[best]['refit'],
  }
