"""Choosing a decay rate for a regression: wdax.sweep against sklearn's MLPRegressor.

scikit-learn's bundled diabetes data (442 patients, 10 features, a disease
progression score): a quarter held out at random
(``sweep.shuffled_folds(442, 4) == 0``: 331 training, 111 test examples),
features and target standardised with the training examples' statistics
(``sweep.standardize``). The target is standardised for every method: with
the raw target (mean 152, s.d. 77) sklearn's ``MLPRegressor`` at its
defaults scores a test R^2 of -1.03, its 200 epochs far from enough to
reach that scale. R^2 is the same in standardised and raw units.

* ``sklearn``: ``GridSearchCV(MLPRegressor(hidden_layer_sizes=(H,),
  random_state=0), {'alpha': logspace(-5, 1, 16)})``, its own defaults
  otherwise (Adam, lr 1e-3, batches of 200, up to 200 epochs, scored by
  R^2), on the sweep's folds (``PredefinedSplit``), then its refit;
* ``wdax``: ``sweep.select(sweep.regressor(sweep.MLP(hidden=(H,),
  outputs=1)), ...)`` over 16 rates from 1e-3 to 10 with ``wdax.adamw`` and
  Flax's decay mask, choosing by the validation loss (its default);
* ``scan`` and ``loop``: the same grid search written by hand in JAX, as in
  ``sweep_vs_sklearn.py`` (``benchmarks/baselines.py``).

All use the same hold-out, the same 5 shuffled folds and the same hidden
width (100, sklearn's default). The JAX methods train 20 epochs of batches of
32 at lr 3e-3, ``wdax sweep``'s defaults: ``--tune`` shows why (the
cross-validated R^2 of 27 settings of epochs, batch size and lr lies within
a few thousandths of each other). ``--splits K`` compares the test R^2 of
sklearn's and wdax's choices over K hold-outs, to see how much of a
difference is the hold-out's noise.

  python benchmarks/sweep_regression.py                  # one run
  python benchmarks/sweep_regression.py --quick          # a smoke run
  python benchmarks/sweep_regression.py --runs 7 --warm --results benchmarks/RESULTS.md
  python benchmarks/sweep_regression.py --skip scan --skip loop --splits 10

``--runs N``, ``--devices N`` and ``--warm`` work as in
``sweep_vs_sklearn.py``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import comparison
import timing


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
  parser = comparison.parser(__doc__, hidden_default=100, rates='grid size, sklearn and wdax alike (default 16)', hidden="hidden units of every method's MLP (default 100, sklearn's default)", low='smallest rate of the loops and wdax (default 1e-3)')
  parser.add_argument('--chunk-size', type=int, default=None, help="wdax's chunk_size (default: its own planning)")
  comparison.add_method_options(parser, 'r2', devices_help='devices for wdax; on CPU, host devices (default: one per core)', criterion_help='how the loops and wdax choose (default: validation loss); sklearn scores by R^2, as GridSearchCV does by default')
  parser.add_argument('--warm', action='store_true', help='also time the JAX methods a second time in the same process (compiled code cached)')
  parser.add_argument('--splits', type=int, default=0, metavar='K', help="also compare sklearn's and wdax's test R^2 over K hold-outs (seeds 0..K-1)")
  parser.add_argument('--phases', action='store_true', help="also time the phases of a cold wdax call (tracing, lowering, XLA compilation, training, refit) in a fresh process")
  parser.add_argument('--tune', action='store_true', help="also print wdax's cross-validated R^2 over epochs x batch size x lr")
  return comparison.parse(parser, argv)


ARGS = _parse() if __name__ == '__main__' else None
if ARGS is not None:
  timing.host_devices(ARGS.devices)

import baselines  # noqa: E402  (imports JAX: after XLA_FLAGS)
import numpy as np  # noqa: E402

from wdax import sweep  # noqa: E402


def diabetes(split: int = 0):
  """``(x_train, x_test, y_train, y_test)``, standardised on the training rows."""
  from sklearn.datasets import load_diabetes

  x, y = load_diabetes(return_X_y=True)
  held = sweep.shuffled_folds(len(y), 4, seed=split) == 0
  x_train, x_test = sweep.standardize(x[~held], x[held])
  y_train, y_test = sweep.standardize(y[~held, None], y[held, None])
  return x_train, x_test, y_train[:, 0], y_test[:, 0]


def run_sklearn(args, data, alphas, fold_ids):
  from sklearn.model_selection import PredefinedSplit
  from sklearn.neural_network import MLPRegressor

  mlp = MLPRegressor(
      hidden_layer_sizes=(args.hidden,), random_state=0, max_iter=5 if args.quick else 200
  )
  record, search = comparison.sklearn_search(mlp, alphas, PredefinedSplit(fold_ids), args, data)
  return {**record, 'epochs_run': int(search.best_estimator_.n_iter_)}


def _select(args, data, rates, **overrides):
  x_train, x_test, y_train, y_test = data
  settings = dict(
      optimizer=sweep.kind('adamw', lr=args.lr, mask=baselines.MASK), folds=args.folds,
      epochs=args.epochs, batch_size=args.batch_size, devices=args.devices,
      chunk_size=args.chunk_size, evals=args.evals, **comparison.choice(args.criterion),
  )
  settings.update(overrides)
  return sweep.select(
      sweep.regressor(sweep.MLP(hidden=(args.hidden,), outputs=1)),
      {'x': x_train, 'y': y_train}, {'rate': rates}, test={'x': x_test, 'y': y_test},
      **settings,
  )


def run_wdax(args, data, rates):
  return comparison.timed_select(lambda: _select(args, data, rates), 'r2')


def run_loop(name, args, data, rates, fold_ids):
  problem = baselines.Problem('regress', args.hidden, 1, args.lr, args.epochs, args.batch_size)
  return timing.timed(baselines.LOOPS[name], problem, data, rates, fold_ids, args.criterion)


def _grids(args):
  return comparison.rates(args), np.logspace(-5, 1, args.rates)


LINE = '{name:12s} wall {wall:6.2f} s  cpu {cpu:6.2f} s  rate {rate:.3g}  cv R2 {cv_metric:.4f}  test R2 {test_metric:.4f}'
"""How a method's record is printed as it comes."""


def run_once(args) -> dict:
  data = diabetes()
  rates, alphas = _grids(args)
  fold_ids = sweep.shuffled_folds(len(data[2]), args.folds)
  print(comparison.header('diabetes', data, args), flush=True)

  def measure(method):
    if method == 'sklearn':
      return run_sklearn(args, data, alphas, fold_ids)
    if method == 'wdax':
      return run_wdax(args, data, rates)
    return run_loop(method, args, data, rates, fold_ids)

  return comparison.run(comparison.methods(args), measure, LINE)


PAIRS = [
    ('wdax', 'sklearn'), ('wdax', 'scan'), ('wdax', 'loop'),
    ('wdax (warm)', 'sklearn'), ('wdax (warm)', 'scan (warm)'), ('wdax (warm)', 'loop (warm)'),
]


def run_splits(args) -> list[str]:
  """The test R^2 of sklearn's and wdax's choices over ``args.splits`` hold-outs."""
  rates, alphas = _grids(args)
  lines = [
      '| hold-out seed | sklearn alpha | sklearn test R^2 | wdax rate | wdax test R^2 | difference |',
      '| ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  differences = []
  for split in range(args.splits):
    data = diabetes(split)
    sk = run_sklearn(args, data, alphas, sweep.shuffled_folds(len(data[2]), args.folds))
    wd = run_wdax(args, data, rates)
    differences.append(wd['test_metric'] - sk['test_metric'])
    lines.append(
        f'| {split} | {sk["rate"]:.3g} | {sk["test_metric"]:.4f} | {wd["rate"]:.3g} | '
        f'{wd["test_metric"]:.4f} | {differences[-1]:+.4f} |'
    )
    print(lines[-1], flush=True)
  lines += [
      '',
      f'- wdax minus sklearn, test R^2: median {np.median(differences):+.4f}, range '
      f'{min(differences):+.4f} to {max(differences):+.4f}, mean {np.mean(differences):+.4f}',
  ]
  return lines


def run_phases(args) -> list[str]:
  """Where a cold ``select`` spends its time, in a fresh process."""
  if args.child is None:
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
      path = os.path.join(tmp, 'phases.json')
      argv = timing.without(sys.argv[1:], ('--runs', '--results'))
      subprocess.run(
          [sys.executable, __file__, *argv, '--child', '0', '--json', path], check=True
      )
      with open(path) as f:
        return json.load(f)['phases']
  import collections

  import jax.monitoring

  spent = collections.Counter()
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, seconds, **_: spent.update({event.rsplit('/', 1)[-1]: seconds})
  )
  marks = []
  data, (rates, _) = diabetes(), _grids(args)

  def mark(name):
    return lambda done, total: marks.append((name, time.perf_counter() - start))

  start = time.perf_counter()
  with timing.Timer() as t:
    found = _select(args, data, rates, progress=mark('grid'), refit_progress=mark('refit'))
  grid = [m for n, m in marks if n == 'grid']
  refit = [m for n, m in marks if n == 'refit']
  return [
      f'A cold `select` (chunks of {found.result.chunk_size}, {found.result.chunks} '
      f'chunk(s)), {t.wall:.2f} s of wall and {t.cpu:.2f} s of CPU time, load '
      f'{timing.load():.1f}:',
      '',
      '| phase | seconds |',
      '| --- | ---: |',
      f'| to the end of the first compiled call (checks, tracing, compilation) | {grid[0]:.2f} |',
      f'| the rest of the grid (training and evaluation) | {grid[-1] - grid[0]:.2f} |',
      f'| the refit, with its test evaluation | {refit[-1] - grid[-1]:.2f} |',
      f'| of which the refit\'s first call | {refit[0] - grid[-1]:.2f} |',
      f'| summed over threads: tracing to jaxprs | {spent["jaxpr_trace_duration"]:.2f} |',
      f'| summed over threads: lowering to MLIR | {spent["jaxpr_to_mlir_module_duration"]:.2f} |',
      f'| summed over threads: XLA compilation | {spent["backend_compile_duration"]:.2f} |',
  ]


def run_tune(args) -> list[str]:
  """wdax's cross-validated R^2 at its chosen rate, over epochs x batch x lr."""
  data, (rates, _) = diabetes(), _grids(args)
  lines = ['| epochs | batch | lr | chosen rate | CV R^2 |', '| ---: | ---: | ---: | ---: | ---: |']
  for epochs, batch, lr in itertools.product((10, 20, 50), (16, 32, 64), (1e-3, 3e-3, 1e-2)):
    trial = argparse.Namespace(**{**vars(args), 'lr': lr})
    found = _select(trial, data, rates, epochs=epochs, batch_size=batch, evals=1)
    r2 = found.result.summary('val_r2')[0][found.choice.index]
    lines.append(f'| {epochs} | {batch} | {lr:g} | {found.choice.point["rate"]:.3g} | {r2:.4f} |')
    print(lines[-1], flush=True)
  return lines


def main() -> None:
  args = ARGS or _parse()
  if args.phases and args.child is not None:
    with open(args.json, 'w') as f:
      json.dump({'phases': run_phases(args)}, f)
    return
  runs = comparison.runs(__file__, args, run_once, flags=('--phases',))
  if runs is None:  # a child of --runs: its run went to --json
    return
  lines = timing.summarise(runs, PAIRS, 'R^2') + comparison.agreement(runs[0])
  print('\n'.join(lines))
  if args.phases:
    phases = run_phases(args)
    print('\n'.join(phases))
    lines += ['', *phases]
  if args.splits:
    lines += ['', f'Test R^2 over {args.splits} hold-outs:', '', *run_splits(args)]
  if args.tune:
    lines += ['', "wdax's settings, by cross-validated R^2:", '', *run_tune(args)]
  if args.results:
    comparison.append_results(__file__, 'Diabetes', args, lines)


if __name__ == '__main__':
  main()
