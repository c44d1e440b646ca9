"""How faithful and how fast is a pruned sweep (``prune=sweep.Halving``)?

Two measurements:

* fidelity: on scikit-learn's digits, breast_cancer and wine (held out as
  ``wdax sweep`` does: ``sweep.stratified_split`` half, ``sweep.standardize``),
  for each fold assignment (``fold_seed``) the full grid of decay rates (0 and
  log-spaced rates, MLP, ``adamw`` with the Flax mask) and each candidate
  ``Halving(min_epochs, reduction_factor)`` choose a rate by mean validation
  loss. Per candidate: how often it chooses the full grid's rate, the rank of
  its choice in the full grid, the held-out test accuracy of its choice's
  refit against the full choice's (difference, mean and spread over the
  assignments), and its configuration-epochs as a fraction of the full
  grid's;
* speed: the default job (digits, ``sweep.select`` with refit and test)
  pruned with ``--prune``, against the per-step loop and the ``lax.scan`` loop
  of ``baselines.py`` over the full grid (what a user writes), and the
  unpruned ``select``. Every method runs cold (compilation included) in one
  fresh process per run, the order rotated from run to run; wall and process
  CPU seconds.

Usage::

  python benchmarks/sweep_pruning.py --fidelity
  python benchmarks/sweep_pruning.py --speed --runs 3 --prune 4,2
  python benchmarks/sweep_pruning.py --quick --fidelity --speed

``--devices N`` asks XLA for N host devices before JAX starts (default: one
per core, as ``wdax sweep``); the loops run on the first.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

import timing


def _halving(text: str) -> tuple[int, int]:
  r, eta = text.split(',')
  return int(r), int(eta)


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--fidelity', action='store_true', help='measure the pruned choices against the full grid')
  p.add_argument('--speed', action='store_true', help='time the pruned default job against the loops')
  p.add_argument('--quick', action='store_true', help='a smoke run: 4 rates plus 0, 3 folds, 4 epochs, Halving(1, 2); fidelity on wine with 2 fold seeds, speed on digits')
  p.add_argument('--datasets', default='digits,breast_cancer,wine', help='comma-separated (default all three)')
  p.add_argument('--fold-seeds', type=int, default=5, help='fold assignments 0..N-1 (default 5)')
  p.add_argument('--candidates', type=_halving, nargs='+', default=[(2, 3), (3, 2), (4, 2), (4, 3), (5, 3), (5, 2)], help='Halving settings as r,eta')
  p.add_argument('--prune', type=_halving, default=(4, 2), help='the setting timed by --speed (default 4,2)')
  p.add_argument('--rates', type=int, default=16, help='log-spaced rates from 1e-3 to 10, plus 0 (default 16)')
  p.add_argument('--folds', type=int, default=5)
  p.add_argument('--epochs', type=int, default=20)
  p.add_argument('--hidden', type=int, default=256)
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--lr', type=float, default=3e-3)
  p.add_argument('--devices', type=int, default=min(os.cpu_count() or 1, 8))
  p.add_argument('--also-full', action='store_true', help='--speed also times the unpruned select in the same process (it shares compiled programs with the pruned one, so whichever runs second is partly warm)')
  p.add_argument('--warm', action='store_true', help='--speed then times every method a second time in the same process (compiled code cached)')
  p.add_argument('--runs', type=int, default=1, help='fresh processes for --speed (default 1)')
  p.add_argument('--cache', default=None, metavar='DIR', help="--speed: every process keeps JAX's compiled programs in DIR (the persistent compilation cache, as `wdax sweep` does); empty it first to time the first run without it")
  p.add_argument('--out', default=None, help='write the figures as JSON here')
  p.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
  p.add_argument('--json', default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.quick:
    args.rates, args.folds, args.epochs, args.fold_seeds = 4, 3, 4, 2
    args.datasets, args.candidates, args.prune = 'wine', [(1, 2)], (1, 2)
  return args


ARGS = _parse() if __name__ == '__main__' else None
if ARGS is not None and 'xla_force_host_platform_device_count' not in os.environ.get('XLA_FLAGS', ''):
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + f' --xla_force_host_platform_device_count={ARGS.devices}').strip()

import baselines  # noqa: E402  (imports JAX: after XLA_FLAGS)
import numpy as np  # noqa: E402

from wdax import sweep  # noqa: E402


def load(name: str):
  """``(x_train, x_test, y_train, y_test)`` split as ``wdax sweep`` does."""
  from sklearn import datasets

  x, y = getattr(datasets, f'load_{name}')(return_X_y=True)
  _, codes = np.unique(y, return_inverse=True)
  train, test = sweep.stratified_split(codes, 0.5, seed=0)
  x_train, x_test = sweep.standardize(x[train].astype(np.float32), x[test].astype(np.float32))
  return x_train, x_test, codes[train].astype(np.int32), codes[test].astype(np.int32)


def rates(args) -> np.ndarray:
  return np.concatenate([[0.0], np.logspace(-3, 1, args.rates)])


def settings(args) -> dict:
  return dict(
      optimizer=sweep.kind('adamw', lr=args.lr, mask=baselines.MASK), epochs=args.epochs,
      batch_size=args.batch_size, devices=args.devices,
  )


def fidelity(args) -> dict:
  grid = rates(args)
  out = {}
  for name in args.datasets.split(','):
    x_train, x_test, y_train, y_test = load(name)
    task = sweep.classifier(sweep.MLP(hidden=(args.hidden,), outputs=int(y_train.max()) + 1))
    train, test = {'x': x_train, 'y': y_train}, {'x': x_test, 'y': y_test}
    tested = {}

    def accuracy(rate, task=task, train=train, test=test, tested=tested):
      if rate not in tested:
        tested[rate] = float(sweep.fit(task, train, {'rate': rate}, test=test, **settings(args)).test['accuracy'])
      return tested[rate]

    rows = []
    for seed in range(args.fold_seeds):
      with timing.Timer() as t:
        full = sweep.grid(task, train, {'rate': grid}, folds=args.folds, fold_seed=seed, **settings(args))
      loss = full.summary('val_loss')[0]
      best = full.choose('val_loss', 'min')
      row = {'seed': seed, 'full': {'rate': float(grid[best.index]), 'test': accuracy(float(grid[best.index])),
                                    'ce': int(full.configuration_epochs), 'wall': t.wall, 'cpu': t.cpu}}
      for r, eta in args.candidates:
        with timing.Timer() as t:
          pruned = sweep.grid(task, train, {'rate': grid}, folds=args.folds, fold_seed=seed,
                              prune=sweep.Halving(r, eta), **settings(args))
        i = pruned.choose('val_loss', 'min').index
        rate = float(grid[i])
        row[f'{r},{eta}'] = {'rate': rate, 'rank': int(np.sum(loss < loss[i])) + 1, 'test': accuracy(rate),
                             'ce': int(pruned.configuration_epochs), 'wall': t.wall, 'cpu': t.cpu}
      rows.append(row)
      print(name, json.dumps(row), flush=True)
    out[name] = {'train': len(y_train), 'test': len(y_test), 'rows': rows}
  return out


def fidelity_tables(out: dict, candidates) -> list[str]:
  lines = []
  for name, d in out.items():
    rows = d['rows']
    full_tests = [r['full']['test'] for r in rows]
    p = statistics.mean(full_tests)
    chosen = ', '.join(f"{r['full']['rate']:.3g}" for r in rows)
    lines += [
        f'**{name}** ({d["train"]} train / {d["test"]} test). Full grid: rates chosen '
        f'{chosen}; test accuracy mean {p:.4f}, '
        f's.d. over assignments {statistics.pstdev(full_tests):.4f}; binomial s.e. of one test '
        f'accuracy {np.sqrt(p * (1 - p) / d["test"]):.4f}.',
        '',
        '| Halving(r, eta) | config-epochs / full | same rate | rank in full (per seed) | rates chosen | test diff mean | test diff s.d. | test diff min..max |',
        '| --- | ---: | ---: | --- | --- | ---: | ---: | ---: |',
    ]
    for r, eta in candidates:
      key = f'{r},{eta}'
      diffs = [row[key]['test'] - row['full']['test'] for row in rows]
      frac = statistics.mean(row[key]['ce'] / row['full']['ce'] for row in rows)
      ranks = ', '.join(str(row[key]['rank']) for row in rows)
      picks = ', '.join(f"{row[key]['rate']:.3g}" for row in rows)
      same = sum(row[key]['rate'] == row['full']['rate'] for row in rows)
      lines.append(
          f'| ({r}, {eta}) | {frac:.3f} | {same}/{len(rows)} | {ranks} | '
          f'{picks} | {statistics.mean(diffs):+.4f} | '
          f'{statistics.pstdev(diffs):.4f} | {min(diffs):+.4f}..{max(diffs):+.4f} |'
      )
    lines.append('')
  return lines


def speed_once(args) -> dict:
  if args.cache:
    import jax

    jax.config.update('jax_compilation_cache_dir', args.cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  data = load('digits')
  x_train, x_test, y_train, y_test = data
  grid = rates(args)
  task = sweep.classifier(sweep.MLP(hidden=(args.hidden,), outputs=10))
  problem = baselines.Problem('classify', args.hidden, 10, args.lr, args.epochs, args.batch_size)
  folds = sweep.stratified_folds(y_train, args.folds)

  def wdax(prune):
    found = sweep.select(task, {'x': x_train, 'y': y_train}, {'rate': grid}, test={'x': x_test, 'y': y_test},
                         folds=args.folds, prune=prune, **settings(args))
    return {'rate': found.choice.point['rate'], 'test_metric': found.refit.test['accuracy'],
            'ce': int(found.result.configuration_epochs)}

  methods = {
      'wdax pruned': lambda: wdax(sweep.Halving(*args.prune)),
      'scan': lambda: baselines.scan_loop(problem, data, grid, folds, 'loss'),
      'loop': lambda: baselines.step_loop(problem, data, grid, folds, 'loss'),
  }
  if args.also_full:
    methods['wdax full'] = lambda: wdax(None)
  order = timing.rotated(list(methods), args.child or 0)
  if args.warm:
    order += [f'{n} (warm)' for n in order]
  run = {'order': order, 'load': [timing.load()], 'methods': {}}
  for name in run['order']:
    with timing.Timer() as t:
      r = methods[name.removesuffix(' (warm)')]()
    run['methods'][name] = {'wall': t.wall, 'cpu': t.cpu, 'rate': float(r['rate']), 'test_metric': float(r['test_metric']),
                            'ce': r.get('ce')}
    print(f'{name:12s} wall {t.wall:7.2f} s  cpu {t.cpu:7.2f} s  rate {r["rate"]:.3g}  test {r["test_metric"]:.4f}', flush=True)
  run['load'].append(timing.load())
  run['methods'] = {n: run['methods'][n] for n in sorted(order, key=lambda n: (n.endswith('(warm)'), list(methods).index(n.removesuffix(' (warm)'))))}
  return run


def speed_tables(runs: list[dict]) -> list[str]:
  names = list(runs[0]['methods'])
  lines = ['| run | first | load | ' + ' | '.join(f'{n} wall / cpu' for n in names) + ' |',
           '| ---: | --- | ---: | ' + ' | '.join('---:' for _ in names) + ' |']
  for i, run in enumerate(runs):
    cells = [str(i + 1), run['order'][0], f'{run["load"][0]:.1f}-{run["load"][1]:.1f}']
    cells += [f'{run["methods"][n]["wall"]:.2f} / {run["methods"][n]["cpu"]:.2f}' for n in names]
    lines.append('| ' + ' | '.join(cells) + ' |')
  lines += ['', '| ratio | wall: median (range) | CPU: median (range) |', '| --- | ---: | ---: |']
  for suffix in ('', ' (warm)'):
    for other in [n + suffix for n in ('loop', 'scan', 'wdax full') if n + suffix in names]:
      w = [timing.ratio(r, 'wdax pruned' + suffix, other, 'wall') for r in runs]
      c = [timing.ratio(r, 'wdax pruned' + suffix, other, 'cpu') for r in runs]
      lines.append(f'| {other} / wdax pruned{suffix} | {timing.median_range(w)}x | {timing.median_range(c)}x |')
  lines += ['', 'Choices: ' + '; '.join(
      f'{n}: rate {runs[0]["methods"][n]["rate"]:.3g}, test {runs[0]["methods"][n]["test_metric"]:.4f}' for n in names)]
  return lines


def main() -> None:
  args = ARGS
  if args.child is not None:
    with open(args.json, 'w') as f:
      json.dump(speed_once(args), f)
    return
  record = {'argv': sys.argv[1:]}
  if args.fidelity:
    record['fidelity'] = fidelity(args)
    print('\n'.join(fidelity_tables(record['fidelity'], args.candidates)))
  if args.speed:
    runs = timing.repeat(__file__, sys.argv[1:], args.runs, flags=('--fidelity', '--speed'))
    record['speed'] = runs
    print('\n'.join(speed_tables(runs)))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(record, f, indent=1)


if __name__ == '__main__':
  main()
