"""Choosing a decay rate by 5-fold CV: wdax.sweep against sklearn and a JAX loop.

Three ways to run the same job on scikit-learn's digits (half for training,
half held out, stratified; features standardised on the training half):

* ``sklearn``: ``GridSearchCV(MLPClassifier(hidden_layer_sizes=(H,),
  alpha=...))`` over 16 alphas from 1e-5 to 10 (its own defaults otherwise:
  Adam, up to 200 epochs, batches of 200), then its refit;
* ``loop``: what a JAX user writes by hand: one training per (rate, fold), a
  ``jax.jit``-compiled optax step called from a Python loop over epochs and
  minibatches (the rate is an argument, so the step compiles once), then a
  refit at the best rate; with ``--naive`` also the same loop as the Flax
  examples write it, the optimiser in a ``TrainState``, which compiles the
  step anew for every training;
* ``wdax``: one call of :func:`wdax.sweep.select`, which trains all the
  configurations in one vmapped program (:func:`wdax.sweep.grid`), chooses
  the rate and refits it.

``loop`` and ``wdax`` train the same model (an MLP with H hidden units) with
``wdax.adamw`` and Flax's decay mask on the same folds, rates, epochs and
batch size. Each reports wall time, process CPU time, the chosen rate and
its test accuracy; the summary gives the speed-ups of ``wdax``.

  python benchmarks/sweep_vs_sklearn.py                  # everything (minutes)
  python benchmarks/sweep_vs_sklearn.py --quick          # a smoke run
  python benchmarks/sweep_vs_sklearn.py --sklearn-rates 4  # sklearn on 4 alphas
  python benchmarks/sweep_vs_sklearn.py --results benchmarks/RESULTS.md

With ``--sklearn-rates N < 16`` sklearn fits N alphas spread over the same
range and its time is also scaled to the full grid (marked as an estimate).
``--devices N`` shards wdax's configurations over N devices (by default one
per core, as ``wdax sweep`` does); on a CPU-only machine it asks XLA for N
host devices, which must happen before JAX starts, so it is read from the
command line first thing. The loop runs on the first device.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import sys
import time
import warnings


def _parse(argv: list[str] | None = None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n\n'.join(__doc__.split('\n\n')[1:]),
  )
  parser.add_argument('--quick', action='store_true', help='4 rates, 3 epochs, sklearn on 2 alphas with max_iter=20')
  parser.add_argument('--rates', type=int, default=16, help='grid size (default 16)')
  parser.add_argument('--folds', type=int, default=5)
  parser.add_argument('--epochs', type=int, default=20, help='epochs of loop and wdax (default 20)')
  parser.add_argument('--hidden', type=int, default=256)
  parser.add_argument('--batch-size', type=int, default=32)
  parser.add_argument('--lr', type=float, default=3e-3)
  parser.add_argument('--low', type=float, default=1e-3, help='smallest wdax/loop rate (default 1e-3, as wdax sweep)')
  parser.add_argument('--high', type=float, default=10.0, help='largest wdax/loop rate (default 10)')
  parser.add_argument('--sklearn-rates', type=int, default=None, help='alphas sklearn fits (default: --rates)')
  parser.add_argument('--skip', action='append', default=[], choices=['sklearn', 'loop', 'wdax'], help='leave a method out (repeatable)')
  parser.add_argument('--devices', type=int, default=min(os.cpu_count() or 1, 8), help='devices for wdax; on CPU, host devices (default: one per core, as wdax sweep)')
  parser.add_argument('--criterion', choices=['loss', 'accuracy'], default='loss', help='how loop and wdax choose the rate (default: validation loss, as wdax sweep); sklearn scores by accuracy, as GridSearchCV does by default')
  parser.add_argument('--naive', action='store_true', help='also time the loop as often written, with the optimiser in a TrainState, which compiles the step once per training')
  parser.add_argument('--warm', action='store_true', help='also time loop and wdax a second time in the same process (compiled code cached)')
  parser.add_argument('--stability', type=int, default=0, metavar='N', help='also cross-validate with N fold assignments (fold_seed 0..N-1) and report the rate each criterion chooses and its refit test accuracy')
  parser.add_argument('--results', default=None, help='append a section with the figures to this Markdown file')
  return parser.parse_args(argv)


ARGS = _parse() if __name__ == '__main__' else None
if ARGS is not None and ARGS.devices and 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (
      os.environ.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={ARGS.devices}'
  ).strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import wdax  # noqa: E402
from wdax import sweep  # noqa: E402


def _cpu() -> float:
  t = os.times()
  return t.user + t.system


class Timer:
  def __enter__(self):
    self.wall, self.cpu = time.perf_counter(), _cpu()
    return self

  def __exit__(self, *exc):
    self.wall = time.perf_counter() - self.wall
    self.cpu = _cpu() - self.cpu


def digits():
  from sklearn.datasets import load_digits
  from sklearn.model_selection import train_test_split

  x, y = load_digits(return_X_y=True)
  x_train, x_test, y_train, y_test = train_test_split(
      x, y, test_size=0.5, stratify=y, random_state=0
  )
  mean, std = x_train.mean(0), x_train.std(0)
  std[std == 0] = 1.0
  scale = lambda a: ((a - mean) / std).astype(np.float32)  # noqa: E731
  return scale(x_train), scale(x_test), y_train.astype(np.int32), y_test.astype(np.int32)


def run_sklearn(args, data, alphas):
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.model_selection import GridSearchCV
  from sklearn.model_selection import StratifiedKFold
  from sklearn.neural_network import MLPClassifier

  x_train, x_test, y_train, y_test = data
  mlp = MLPClassifier(
      hidden_layer_sizes=(args.hidden,),
      random_state=0,
      max_iter=20 if args.quick else 200,
  )
  search = GridSearchCV(
      mlp, {'alpha': alphas}, cv=StratifiedKFold(args.folds), n_jobs=None
  )
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', ConvergenceWarning)
    with Timer() as t:
      search.fit(x_train, y_train)
  return {
      'wall': t.wall,
      'cpu': t.cpu,
      'rate': float(search.best_params_['alpha']),
      'cv_accuracy': float(search.best_score_),
      'test_accuracy': float(search.score(x_test, y_test)),
  }


# One mask for the run: compiled programs are cached on it, so a second
# (--warm) run of the same settings reuses them.
MASK = wdax.masks.flax_default()


@functools.cache
def _loop_functions(hidden: int, lr: float):
  """The loop's jitted step and accuracy, built once so --warm reuses them."""
  model = sweep.MLP(hidden=(hidden,), outputs=10)
  mask = MASK

  def loss_fn(params, xb, yb):
    logits = model.apply({'params': params}, xb)
    return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

  @jax.jit
  def train_step(params, opt_state, xb, yb, rate):
    tx = wdax.adamw(lr, weight_decay=rate, mask=mask)
    grads = jax.grad(loss_fn)(params, xb, yb)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return model, train_step, _evaluator(model)


@functools.cache
def _evaluator(model):
  """``(params, x, y) -> (accuracy, mean cross-entropy)``, jitted."""

  @jax.jit
  def evaluate(params, x, y):
    logits = model.apply({'params': params}, x)
    loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
    return jnp.mean(jnp.argmax(logits, -1) == y), loss

  return evaluate


def _cross_validate_and_refit(args, data, rates, train, evaluate) -> dict:
  """Times a sequential grid search: one training per (rate, fold), then a
  refit of the rate with the best mean validation ``args.criterion`` (ties
  in accuracy going to the lower loss, as in wdax)."""
  x_train, x_test, y_train, y_test = data
  with Timer() as t:
    ids = sweep.stratified_folds(y_train, args.folds)
    scores = np.zeros((len(rates), args.folds, 2))
    for i, rate in enumerate(rates):
      for k in range(args.folds):
        val = ids == k
        params = train(x_train[~val], y_train[~val], rate, seed=0)
        scores[i, k] = evaluate(params, x_train[val], y_train[val])
    accuracy, loss = scores.mean(1).T
    if args.criterion == 'loss':
      best = int(np.argmin(loss))
    else:
      best = int(np.lexsort((loss, -accuracy))[0])
    params = train(x_train, y_train, rates[best], seed=0)
    test = float(evaluate(params, x_test, y_test)[0])
  return {
      'wall': t.wall,
      'cpu': t.cpu,
      'rate': float(rates[best]),
      'cv_accuracy': float(accuracy[best]),
      'test_accuracy': test,
  }


def run_loop(args, data, rates):
  """One jitted-step training per (rate, fold), as written by hand."""
  model, train_step, evaluate = _loop_functions(args.hidden, args.lr)

  def train(x, y, rate, seed):
    rng = np.random.default_rng(seed)
    params = model.init(jax.random.key(seed), x[:1])['params']
    opt_state = wdax.adamw(args.lr, weight_decay=float(rate), mask=MASK).init(params)
    rate = jnp.float32(rate)
    for _ in range(args.epochs):
      order = rng.permutation(len(y))
      for start in range(0, len(y), args.batch_size):
        batch = order[start : start + args.batch_size]
        params, opt_state = train_step(params, opt_state, x[batch], y[batch], rate)
    return params

  return _cross_validate_and_refit(args, data, rates, train, evaluate)


def run_naive_loop(args, data, rates):
  """The loop as the Flax examples write it: the optimiser lives in a
  ``TrainState``, a static field, so each training compiles the step anew."""
  from flax.training import train_state

  model = sweep.MLP(hidden=(args.hidden,), outputs=10)
  mask = MASK

  @jax.jit
  def train_step(state, xb, yb):
    def loss_fn(params):
      logits = state.apply_fn({'params': params}, xb)
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    return state.apply_gradients(grads=jax.grad(loss_fn)(state.params))

  def train(x, y, rate, seed):
    rng = np.random.default_rng(seed)
    state = train_state.TrainState.create(
        apply_fn=model.apply,
        params=model.init(jax.random.key(seed), x[:1])['params'],
        tx=wdax.adamw(args.lr, weight_decay=float(rate), mask=mask),
    )
    for _ in range(args.epochs):
      order = rng.permutation(len(y))
      for start in range(0, len(y), args.batch_size):
        batch = order[start : start + args.batch_size]
        state = train_step(state, x[batch], y[batch])
    return state.params

  return _cross_validate_and_refit(args, data, rates, train, _evaluator(model))


def _choice(criterion: str) -> dict:
  """``select``'s metric and mode for a --criterion."""
  if criterion == 'loss':
    return {'metric': 'val_loss', 'mode': 'min'}
  return {'metric': 'val_accuracy', 'mode': 'max'}


def run_wdax(args, data, rates):
  x_train, x_test, y_train, y_test = data
  task = sweep.classifier(sweep.MLP(hidden=(args.hidden,), outputs=10))
  with Timer() as t:
    found = sweep.select(
        task, {'x': x_train, 'y': y_train}, {'rate': rates},
        optimizer=sweep.kind('adamw', lr=args.lr, mask=MASK),
        test={'x': x_test, 'y': y_test}, folds=args.folds, epochs=args.epochs,
        batch_size=args.batch_size, devices=args.devices, **_choice(args.criterion),
    )
  return {
      'wall': t.wall,
      'cpu': t.cpu,
      'rate': found.choice.point['rate'],
      'cv_accuracy': float(found.result.summary('val_accuracy')[0][found.choice.index]),
      'test_accuracy': found.refit.test['accuracy'],
      'chunk_size': found.result.chunk_size,
      'devices': found.result.devices,
  }


def run_stability(args, data, rates) -> list[str]:
  """The rate each criterion chooses under ``args.stability`` fold
  assignments, and the test accuracy of its refit."""
  x_train, x_test, y_train, y_test = data
  task = sweep.classifier(sweep.MLP(hidden=(args.hidden,), outputs=10))
  train, test = {'x': x_train, 'y': y_train}, {'x': x_test, 'y': y_test}
  settings = dict(
      optimizer=sweep.kind('adamw', lr=args.lr, mask=MASK), epochs=args.epochs,
      batch_size=args.batch_size, devices=args.devices,
  )
  tested = {}

  def test_accuracy(rate):
    if rate not in tested:
      refit = sweep.fit(task, train, {'rate': rate}, test=test, **settings)
      tested[rate] = refit.test['accuracy']
    return tested[rate]

  lines = ['| fold_seed | loss: rate | test accuracy | accuracy: rate | test accuracy |',
           '| ---: | ---: | ---: | ---: | ---: |']
  for fold_seed in range(args.stability):
    result = sweep.grid(
        task, train, {'rate': rates}, folds=args.folds, fold_seed=fold_seed, **settings
    )
    row = [str(fold_seed)]
    for criterion in ('loss', 'accuracy'):
      choice = _choice(criterion)
      rate = result.best(choice['metric'], choice['mode'])['rate']
      row += [f'{rate:.3g}', f'{test_accuracy(rate):.4f}']
    lines.append('| ' + ' | '.join(row) + ' |')
    print(lines[-1], flush=True)
  return lines


def main() -> None:
  args = ARGS or _parse()
  if args.quick:
    args.rates, args.epochs = 4, 3
    args.sklearn_rates = args.sklearn_rates or 2
  data = digits()
  rates = np.logspace(np.log10(args.low), np.log10(args.high), args.rates)
  alphas_full = np.logspace(-5, 1, args.rates)
  n_sk = args.sklearn_rates or args.rates
  alphas = np.logspace(-5, 1, n_sk)
  print(
      f'digits: {len(data[2])} train / {len(data[3])} test; {args.rates} rates x '
      f'{args.folds} folds; MLP({args.hidden}); {args.epochs} epochs, batch '
      f'{args.batch_size}, lr {args.lr}; JAX on {jax.devices()[0].platform} x '
      f'{jax.device_count()}; {os.cpu_count()} CPUs ({platform.processor() or platform.machine()})',
      flush=True,
  )
  out = {}
  order = ['wdax', 'loop', 'sklearn']
  if args.naive:
    order.append('loop (naive)')
  if args.warm:
    order += ['wdax (warm)', 'loop (warm)']
  for name in order:
    if name.split()[0] in args.skip:
      continue
    if name == 'sklearn':
      out[name] = run_sklearn(args, data, alphas)
      if n_sk < len(alphas_full):
        out[name]['wall_full_estimate'] = out[name]['wall'] * len(alphas_full) / n_sk
    elif name == 'loop (naive)':
      out[name] = run_naive_loop(args, data, rates)
    elif name.startswith('loop'):
      out[name] = run_loop(args, data, rates)
    else:
      out[name] = run_wdax(args, data, rates)
    r = out[name]
    print(
        f'{name:12s} wall {r["wall"]:7.1f} s  cpu {r["cpu"]:7.1f} s  rate {r["rate"]:.3g}  '
        f'cv {r["cv_accuracy"]:.4f}  test {r["test_accuracy"]:.4f}',
        flush=True,
    )
  lines = _summary(args, out, n_sk)
  print('\n'.join(lines))
  stability = []
  if args.stability:
    stability = ['Choices under other fold assignments:', '', *run_stability(args, data, rates), '']
  if args.results:
    _append(args.results, args, out, n_sk, lines, stability)


def _summary(args, out, n_sk) -> list[str]:
  lines = []
  if 'wdax' not in out:
    return lines
  pairs = [
      ('wdax', 'sklearn'),
      ('wdax', 'loop'),
      ('wdax', 'loop (naive)'),
      ('wdax (warm)', 'loop (warm)'),
  ]
  for mine, theirs in pairs:
    if mine not in out or theirs not in out:
      continue
    w, r = out[mine], out[theirs]
    wall = r.get('wall_full_estimate', r['wall'])
    note = f' (sklearn time scaled from {n_sk} alphas)' if 'wall_full_estimate' in r else ''
    lines.append(
        f'{mine} vs {theirs}: {wall / w["wall"]:.1f}x faster in wall time, '
        f'{r["cpu"] / w["cpu"]:.1f}x in CPU time{note}; test accuracy '
        f'{100 * (w["test_accuracy"] - r["test_accuracy"]):+.2f} points'
    )
  return lines


def _append(path, args, out, n_sk, lines, stability) -> None:
  rows = [
      '| method | wall (s) | CPU (s) | chosen rate | CV accuracy | test accuracy |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
  ]
  for name, r in out.items():
    wall = f'{r["wall"]:.1f}'
    if 'wall_full_estimate' in r:
      wall += f' ({n_sk} alphas; ~{r["wall_full_estimate"]:.0f} for 16)'
    rows.append(
        f'| {name} | {wall} | {r["cpu"]:.1f} | {r["rate"]:.3g} | '
        f'{r["cv_accuracy"]:.4f} | {r["test_accuracy"]:.4f} |'
    )
  text = '\n'.join([
      '',
      '## Choosing the decay rate: `wdax.sweep` vs scikit-learn vs a JAX loop',
      '',
      f'`python benchmarks/sweep_vs_sklearn.py {" ".join(sys.argv[1:])}` on '
      f'{os.cpu_count()} CPUs, JAX {jax.__version__} ({jax.devices()[0].platform} x '
      f'{jax.device_count()}). Digits, {args.rates} rates x {args.folds} folds, '
      f'MLP({args.hidden}), {args.epochs} epochs, batch {args.batch_size}, lr '
      f'{args.lr}; wall time includes compilation and the refit.',
      '',
      *rows,
      '',
      *[f'- {line}' for line in lines],
      '',
      *stability,
  ])
  with open(path, 'a') as f:
    f.write(text)


if __name__ == '__main__':
  main()
