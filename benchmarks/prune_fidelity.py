"""How faithful a pruned sweep is: its choice and test score against the full grid's.

For each data set and each of ``--assignments`` fold assignments (``fold_seed``
0, 1, ...), ``wdax sweep``'s default job is run by :func:`wdax.sweep.select`
twice in one process: the full grid, and the grid pruned by successive
halving (``sweep.Halving(MIN, FACTOR, keep={'rate': 0.0})``, no decay never
pruned, as ``wdax sweep --prune``). Both refit their choice on the training
split and score it on the same held-out split. Reported per data set: how
often the two choose the same rate, the held-out test score of the pruned
choice minus the full grid's (mean and spread over assignments), the
configuration-epochs each trained, and their wall times (warm: every program
is compiled by a first, unmeasured run of each).

  python benchmarks/prune_fidelity.py
  python benchmarks/prune_fidelity.py --prune 4:3 --assignments 5 --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def _parse(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n\n'.join(__doc__.split('\n\n')[1:]),
  )
  parser.add_argument('--data', default='digits,breast_cancer,diabetes', help='built-in data sets, a comma list (default digits,breast_cancer,diabetes)')
  parser.add_argument('--assignments', type=int, default=5, help='fold assignments per data set (default 5)')
  parser.add_argument('--prune', default='2:3', help='MIN_EPOCHS:FACTOR (default 2:3)')
  parser.add_argument('--devices', type=int, default=min(os.cpu_count() or 1, 8), help='host devices on CPU (default: one per core, as wdax sweep)')
  parser.add_argument('--results', default=None, help='append the figures to this Markdown file')
  return parser.parse_args(argv)


ARGS = _parse() if __name__ == '__main__' else None
if ARGS is not None and 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={ARGS.devices}'
  ).strip()

import numpy as np  # noqa: E402

import wdax  # noqa: E402
from wdax import sweep  # noqa: E402
from wdax.sweep import datasets  # noqa: E402

# wdax sweep's defaults for the tables.
RATES = {'classification': (1e-3, 10.0), 'regression': (1e-2, 100.0)}
EPOCHS = {'classification': 20, 'regression': 40}


def _job(name: str):
  found = datasets.load(name)
  x, y = found.data['x'], found.data['y']
  if found.problem == 'classification':
    train, test = sweep.stratified_split(y, 0.5, seed=0)
    task = sweep.classifier(sweep.MLP(hidden=(256,), outputs=int(y.max()) + 1))
    y_train, y_test = y[train].astype(np.int32), y[test].astype(np.int32)
    score = ('val_loss', 'accuracy')
  else:
    train, test = sweep.shuffled_split(len(y), 0.5, seed=0)
    task = sweep.regressor(sweep.MLP(hidden=(256,), outputs=1))
    y_train, y_test = (a[:, 0] for a in sweep.standardize(y[train, None], y[test, None]))
    score = ('val_loss', 'r2')
  x_train, x_test = sweep.standardize(x[train], x[test])
  low, high = RATES[found.problem]
  rates = [0.0, *np.geomspace(low, high, 16).tolist()]
  return found.problem, task, {'x': x_train, 'y': y_train}, {'x': x_test, 'y': y_test}, rates, score


def _run(task, train, test, rates, problem, fold_seed, prune):
  start = time.perf_counter()
  found = sweep.select(
      task, train, {'rate': rates},
      optimizer=sweep.kind('adamw', lr=3e-3, mask=wdax.masks.flax_default()),
      test=test, metric='val_loss', folds=5, fold_seed=fold_seed,
      epochs=EPOCHS[problem], batch_size=32, prune=prune,
  )
  return found, time.perf_counter() - start


def main(args: argparse.Namespace) -> int:
  first, factor = (int(v) for v in args.prune.split(':'))
  halving = sweep.Halving(first, factor, keep={'rate': 0.0})
  lines = [
      f'Pruned ({args.prune}, no decay kept) against the full grid: 17 rates (0 and 16 '
      f'log-spaced) x 5 folds, wdax sweep\'s defaults, {args.assignments} fold assignments '
      f'each, {args.devices} CPU device(s), warm.',
      '',
      '| data | same choice | test score, pruned − full (mean ± sd) | configuration-epochs, pruned / full | wall, full (s) | wall, pruned (s) | speed-up |',
      '|---|---:|---:|---:|---:|---:|---:|',
  ]
  for name in args.data.split(','):
    problem, task, train, test, rates, (_, metric) = _job(name)
    for prune in (None, halving):  # compile both programs, unmeasured
      _run(task, train, test, rates, problem, 99, prune)
    same, deltas, walls, epochs = 0, [], {'full': [], 'pruned': []}, {}
    for seed in range(args.assignments):
      full, t_full = _run(task, train, test, rates, problem, seed, None)
      pruned, t_pruned = _run(task, train, test, rates, problem, seed, halving)
      same += full.choice.point == pruned.choice.point
      deltas.append(pruned.refit.test[metric] - full.refit.test[metric])
      walls['full'].append(t_full)
      walls['pruned'].append(t_pruned)
      epochs = {'full': full.result.configuration_epochs, 'pruned': pruned.result.configuration_epochs}
      print(
          f'{name} fold_seed {seed}: full {full.choice.point["rate"]:.3g} '
          f'(test {metric} {full.refit.test[metric]:.4f}, {t_full:.2f} s), pruned '
          f'{pruned.choice.point["rate"]:.3g} (test {metric} {pruned.refit.test[metric]:.4f}, '
          f'{t_pruned:.2f} s)', flush=True,
      )
    spread = statistics.stdev(deltas) if len(deltas) > 1 else float('nan')
    full_wall, pruned_wall = statistics.median(walls['full']), statistics.median(walls['pruned'])
    lines.append(
        f'| {name} ({metric}) | {same} of {args.assignments} | {statistics.mean(deltas):+.4f} ± '
        f'{spread:.4f} | {epochs["pruned"]} / {epochs["full"]} = '
        f'{epochs["pruned"] / epochs["full"]:.2f} | {full_wall:.2f} | {pruned_wall:.2f} | '
        f'{full_wall / pruned_wall:.2f}x |'
    )
  text = '\n'.join(lines)
  print(text)
  if args.results:
    with open(args.results, 'a') as f:
      f.write('\n' + text + '\n')
  return 0


if __name__ == '__main__':
  sys.exit(main(ARGS))
