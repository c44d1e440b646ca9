"""Choosing a decay rate by 5-fold CV: wdax.sweep against sklearn and two JAX loops.

The same job on scikit-learn's digits (half for training, half held out,
stratified; features standardised on the training half), done four ways:

* ``sklearn``: ``GridSearchCV(MLPClassifier(hidden_layer_sizes=(H,),
  alpha=...))`` over 16 alphas from 1e-5 to 10 (its own defaults otherwise:
  Adam, up to 200 epochs, batches of 200), then its refit;
* ``loop``: a JAX user's grid search by hand, one training per (rate, fold):
  a ``jax.jit`` optax step called from Python over epochs and minibatches
  (the rate an argument, so the step compiles once), then the refit;
* ``scan``: what a careful JAX user writes: each training one compiled
  ``lax.scan`` over every minibatch of every epoch, the orders of visit drawn
  first on the host, the rate traced (one compilation for all rates and
  folds, one more for the refit). It visits the examples in the sweep's
  documented orders, so it trains exactly what ``wdax`` trains;
* ``wdax``: one call of :func:`wdax.sweep.select`, which trains all the
  configurations in one vmapped program, chooses the rate and refits it.

``loop``, ``scan`` and ``wdax`` train the same MLP with ``wdax.adamw`` and
Flax's decay mask on the same folds, rates, epochs and batch size, and choose
by the same criterion (``benchmarks/baselines.py`` holds the loops). Each
reports wall and CPU time, the chosen rate, its cross-validated and test
accuracy; the summary gives each method's time over wdax's. ``--naive``
adds the step loop as the Flax examples write it (``TrainState``, compiled
per training); ``--warm`` times the JAX methods again in the same process,
their programs compiled.

  python benchmarks/sweep_vs_sklearn.py                  # one run (minutes)
  python benchmarks/sweep_vs_sklearn.py --quick          # a smoke run
  python benchmarks/sweep_vs_sklearn.py --runs 5 --warm --results benchmarks/RESULTS.md

``--runs N`` runs the comparison N times, each in a fresh process with the
order of the methods rotated, and reports medians and ranges (the machine is
shared). With ``--sklearn-rates N < 16`` sklearn fits N alphas spread over
the same range and its time is scaled to the full grid (marked as an
estimate). ``--devices N`` shards wdax's configurations over N devices (by
default one per core, as ``wdax sweep`` does); on a CPU-only machine it asks
XLA for N host devices, which must happen before JAX starts, so it is read
from the command line first thing. The loops run on the first device.
"""

from __future__ import annotations

import argparse

import comparison
import timing


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
  parser = comparison.parser(__doc__, hidden_default=256, rates='grid size (default 16)', epochs='epochs of the loops and wdax (default 20)', low='smallest rate of the loops and wdax (default 1e-3, as wdax sweep)')
  parser.add_argument('--sklearn-rates', type=int, default=None, help='alphas sklearn fits (default: --rates)')
  comparison.add_method_options(parser, 'accuracy', devices_help='devices for wdax; on CPU, host devices (default: one per core, as wdax sweep)', criterion_help='how the loops and wdax choose the rate (default: validation loss, as wdax sweep); sklearn scores by accuracy, as GridSearchCV does by default')
  parser.add_argument('--naive', action='store_true', help='also time the step loop as often written, with the optimiser in a TrainState, which compiles the step once per training')
  parser.add_argument('--warm', action='store_true', help='also time the JAX methods a second time in the same process (compiled code cached)')
  parser.add_argument('--stability', type=int, default=0, metavar='N', help='also cross-validate with N fold assignments (fold_seed 0..N-1) and report the rate each criterion chooses and its refit test accuracy')
  args = comparison.parse(parser, argv)
  if args.quick:
    args.sklearn_rates = args.sklearn_rates or 2
  return args


ARGS = _parse() if __name__ == '__main__' else None
if ARGS is not None:
  timing.host_devices(ARGS.devices)

import baselines  # noqa: E402  (imports JAX: after XLA_FLAGS)
import numpy as np  # noqa: E402

from wdax import sweep  # noqa: E402


def digits():
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  x, y = load_digits(return_X_y=True)
  x_train, x_test, y_train, y_test = train_test_split(
      x, y, test_size=0.5, stratify=y, random_state=0
  )
  x_train, x_test = sweep.standardize(x_train, x_test)
  return x_train, x_test, y_train.astype(np.int32), y_test.astype(np.int32)


def run_sklearn(args, data, alphas):
  from sklearn.model_selection import StratifiedKFold
  from sklearn.neural_network import MLPClassifier

  mlp = MLPClassifier(
      hidden_layer_sizes=(args.hidden,), random_state=0, max_iter=5 if args.quick else 200,
  )
  return comparison.sklearn_search(mlp, alphas, StratifiedKFold(args.folds), args, data)[0]


def run_wdax(args, data, rates):
  x_train, x_test, y_train, y_test = data
  task = sweep.classifier(sweep.MLP(hidden=(args.hidden,), outputs=10))
  return comparison.timed_select(
      lambda: sweep.select(
          task, {'x': x_train, 'y': y_train}, {'rate': rates},
          optimizer=sweep.kind('adamw', lr=args.lr, mask=baselines.MASK),
          test={'x': x_test, 'y': y_test}, folds=args.folds, epochs=args.epochs,
          batch_size=args.batch_size, devices=args.devices, evals=args.evals,
          **comparison.choice(args.criterion),
      ),
      'accuracy',
  )


def run_loop(name, args, data, rates):
  problem = baselines.Problem(
      'classify', args.hidden, 10, args.lr, args.epochs, args.batch_size
  )
  folds = sweep.stratified_folds(data[2], args.folds)
  return timing.timed(baselines.LOOPS[name], problem, data, rates, folds, args.criterion)


def run_stability(args, data, rates) -> list[str]:
  """The rate each criterion chooses under ``args.stability`` fold
  assignments, and the test accuracy of its refit."""
  x_train, x_test, y_train, y_test = data
  task = sweep.classifier(sweep.MLP(hidden=(args.hidden,), outputs=10))
  train, test = {'x': x_train, 'y': y_train}, {'x': x_test, 'y': y_test}
  settings = dict(
      optimizer=sweep.kind('adamw', lr=args.lr, mask=baselines.MASK), epochs=args.epochs,
      batch_size=args.batch_size, devices=args.devices,
  )
  tested = {}

  def test_accuracy(rate):
    if rate not in tested:
      tested[rate] = sweep.fit(task, train, {'rate': rate}, test=test, **settings).test['accuracy']
    return tested[rate]

  lines = ['| fold_seed | loss: rate | test accuracy | accuracy: rate | test accuracy |',
           '| ---: | ---: | ---: | ---: | ---: |']
  for fold_seed in range(args.stability):
    result = sweep.grid(
        task, train, {'rate': rates}, folds=args.folds, fold_seed=fold_seed, **settings
    )
    row = [str(fold_seed)]
    for criterion in ('loss', 'accuracy'):
      rate = result.best(**comparison.choice(criterion))['rate']
      row += [f'{rate:.3g}', f'{test_accuracy(rate):.4f}']
    lines.append('| ' + ' | '.join(row) + ' |')
    print(lines[-1], flush=True)
  return lines


LINE = '{name:13s} wall {wall:7.2f} s  cpu {cpu:7.2f} s  rate {rate:.3g}  cv {cv_metric:.4f}  test {test_metric:.4f}'
"""How a method's record is printed as it comes."""


def run_once(args) -> dict:
  data = digits()
  rates = comparison.rates(args)
  n_sk = args.sklearn_rates or args.rates
  alphas = np.logspace(-5, 1, n_sk)
  print(comparison.header('digits', data, args), flush=True)

  def measure(method):
    if method == 'sklearn':
      r = run_sklearn(args, data, alphas)
      if n_sk < args.rates:
        r['measured_wall'], r['wall'] = r['wall'], r['wall'] * args.rates / n_sk
      return r
    if method == 'wdax':
      return run_wdax(args, data, rates)
    return run_loop(method, args, data, rates)

  order = comparison.methods(args, ['loop (naive)'] if args.naive else [])
  return comparison.run(order, measure, LINE)


PAIRS = [
    ('wdax', 'sklearn'), ('wdax', 'scan'), ('wdax', 'loop'), ('wdax', 'loop (naive)'),
    ('wdax (warm)', 'scan (warm)'), ('wdax (warm)', 'loop (warm)'),
]


def main() -> None:
  args = ARGS or _parse()
  runs = comparison.runs(__file__, args, run_once)
  if runs is None:  # a child of --runs: its run went to --json
    return
  lines = timing.summarise(runs, PAIRS, 'accuracy') + comparison.agreement(runs[0])
  if any('measured_wall' in r['methods'].get('sklearn', {}) for r in runs):
    lines.append(f'- sklearn fitted {args.sklearn_rates} alphas; its times are scaled to {args.rates}')
  print('\n'.join(lines))
  stability = []
  if args.stability:
    stability = ['', 'Choices under other fold assignments:', '', *run_stability(args, digits(), comparison.rates(args))]
  if args.results:
    comparison.append_results(__file__, 'Digits', args, lines + stability)


if __name__ == '__main__':
  main()
