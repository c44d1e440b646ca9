"""How faithful and how fast is a pruned sweep (``prune=sweep.Halving``)?

Three measurements:

* fidelity: for each built-in data set, set up as ``wdax sweep --data NAME``
  sets it up (split, model, task, epochs, learning rate, rates with 0), and
  each fold assignment (``fold_seed``), the full grid is trained once and
  evaluated after every epoch. A pruned grid's points train exactly as the
  full grid's (``tests/test_sweep_pruning.py``), so each candidate
  ``Halving(min_epochs, reduction_factor, one_se=...)`` is replayed from the
  full curves with ``pruning.survivors``, the function the sweep calls: its
  choice, the rank of its choice in the full grid, its configuration-epochs,
  and the held-out test metric of its choice's refit minus the full
  choice's (each rate is refit once per data set). One candidate
  (``--check``) is also run for real in every assignment, and must choose
  and prune as replayed;
* horizon: the rank, epoch by epoch, of the full grid's choice among the
  points, by mean validation loss: when a rung could first see it;
* speed: the default job (digits, ``sweep.select`` with refit and test)
  pruned with ``--prune`` and the one-standard-error rule, against the
  per-step loop and the ``lax.scan`` loop of ``baselines.py`` over the full
  grid (what a user writes), and the unpruned ``select``. Every method runs
  cold (compilation included) in one fresh process per run, the order
  rotated from run to run; wall and process CPU seconds. With ``--cache
  DIR`` every process keeps its compiled programs in JAX's persistent cache
  (as ``wdax sweep`` does), so the runs after the first load them.

Usage::

  python benchmarks/sweep_pruning.py --fidelity --horizon
  python benchmarks/sweep_pruning.py --speed --runs 3 --prune 4,2
  python benchmarks/sweep_pruning.py --quick --fidelity --horizon --speed

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

RULES = ('mean', 'one_se')


def _candidate(text: str) -> tuple[int, int, str]:
  """``r,eta`` or ``r,eta,rule``; the rule is ``mean`` or ``one_se``."""
  parts = text.split(',')
  rule = parts[2] if len(parts) == 3 else 'one_se'
  if len(parts) not in (2, 3) or rule not in RULES:
    raise argparse.ArgumentTypeError(f'{text!r}: expected R,ETA or R,ETA,RULE with RULE in {RULES}')
  return int(parts[0]), int(parts[1]), rule


def _halving(text: str) -> tuple[int, int]:
  r, eta = text.split(',')
  return int(r), int(eta)


DEFAULT_CANDIDATES = [(r, eta, rule) for r, eta in [(2, 3), (3, 2), (4, 2), (4, 3), (5, 3), (5, 2)] for rule in RULES]


def _parse(argv=None) -> argparse.Namespace:
  p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0], formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--fidelity', action='store_true', help='replay pruned choices against the full grid')
  p.add_argument('--horizon', action='store_true', help="the full choice's rank, epoch by epoch")
  p.add_argument('--speed', action='store_true', help='time the pruned default job against the loops')
  p.add_argument('--quick', action='store_true', help='a smoke run: wine, 2 fold assignments, 4 epochs, 4 rates plus 0; speed on digits likewise')
  p.add_argument('--datasets', default='digits,breast_cancer,wine,diabetes', help='built-in data sets, comma-separated (default the four tables and images)')
  p.add_argument('--fold-seeds', type=int, default=10, help='fold assignments 0..N-1 (default 10)')
  p.add_argument('--candidates', type=_candidate, nargs='+', default=DEFAULT_CANDIDATES, help='Halving settings as R,ETA[,RULE], RULE mean or one_se (default one_se)')
  p.add_argument('--check', type=_candidate, default=(4, 2, 'one_se'), help='the candidate also run for real (default 4,2,one_se)')
  p.add_argument('--prune', type=_halving, default=(4, 2), help='the setting timed by --speed, with one_se (default 4,2)')
  p.add_argument('--epochs', type=int, default=None, help="epochs (default: --fidelity each data set's own, --speed 20)")
  p.add_argument('--rates', type=int, default=16, help='--speed: log-spaced rates from 1e-3 to 10, plus 0 (default 16)')
  p.add_argument('--folds', type=int, default=5)
  p.add_argument('--hidden', type=int, default=256)
  p.add_argument('--batch-size', type=int, default=32)
  p.add_argument('--lr', type=float, default=3e-3, help='--speed: the learning rate (default 3e-3)')
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
    args.datasets, args.candidates, args.check, args.prune = 'wine', [(1, 2, 'mean'), (1, 2, 'one_se')], (1, 2, 'one_se'), (1, 2)
  return args


ARGS = _parse() if __name__ == '__main__' else None
if ARGS is not None:
  timing.host_devices(ARGS.devices)

import baselines  # noqa: E402  (imports JAX: after XLA_FLAGS)
import numpy as np  # noqa: E402

from wdax import sweep  # noqa: E402
from wdax.sweep import pruning  # noqa: E402


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
      optimizer=sweep.kind('adamw', lr=args.lr, mask=baselines.MASK), epochs=args.epochs or 20,
      batch_size=args.batch_size, devices=args.devices,
  )


# --- fidelity -------------------------------------------------------------------


def problem(name: str, args) -> dict:
  """The job ``wdax sweep --data NAME`` runs (its own defaults, ``--folds``
  and, if given, ``--epochs``): task, data, space and settings."""
  import jax

  from wdax.cli import loading
  from wdax.cli import problems
  from wdax.cli.requests import SweepRequest

  request = SweepRequest.of(
      name, folds=args.folds, epochs=args.epochs or None,
      rates='1e-3:1:4' if args.quick else None,
  )
  devices = jax.devices()[: args.devices]
  setup = problems.resolve(request, loading.load(request.data), devices[0])
  return {
      'task': setup.task, 'train': setup.split.train, 'test': setup.split.test,
      'rates': np.asarray(request.grid), 'metric': setup.score,
      'settings': dict(
          optimizer=setup.optimizer(request, request.kinds[0]), epochs=request.epochs,
          batch_size=setup.batch_size, devices=devices, folds=request.folds,
      ),
  }


def replay(val: np.ndarray, train: np.ndarray, rates_: np.ndarray, halving) -> tuple[int, np.ndarray]:
  """A pruned grid's choice and each point's last rung, from the full
  grid's curves ``(points, trainings, epochs)`` at every epoch: the
  schedule of ``halving``, cut by :func:`pruning.survivors` as the sweep
  cuts it."""
  epochs = val.shape[-1]
  spared = rates_ == 0.0
  sizes = halving.points(len(rates_), epochs, int(spared.sum()))
  alive, rung = np.arange(len(rates_)), np.zeros(len(rates_), int)
  prefer = rates_ if halving.one_se else None
  for i, end in enumerate(halving.rungs(epochs)[:-1]):
    going = pruning.survivors(
        val[alive, :, end - 1], train[alive, :, end - 1], sizes[i + 1] - int(spared.sum()),
        spared[alive], None if prefer is None else prefer[alive],
    )
    alive = alive[going]
    rung[alive] = i + 1
  final = val[alive, :, -1].mean(axis=1)
  return int(alive[np.lexsort((alive, final))[0]]), rung


def _schedule(candidate, epochs):
  """The ``Halving`` of a candidate ``(R, ETA, RULE)``, as ``wdax sweep --prune`` builds it."""
  r, eta, rule = candidate
  return sweep.Halving(min(r, epochs), eta, keep={'rate': 0.0}, one_se='rate' if rule == 'one_se' else None)


def fidelity(args) -> dict:
  out = {}
  for name in args.datasets.split(','):
    job = problem(name, args)
    grid, metric = job['rates'], job['metric']
    space = {'rate': grid}
    epochs = job['settings']['epochs']
    tests = [
        float(sweep.fit(job['task'], job['train'], {'rate': float(r)}, test=job['test'],
                        **{k: v for k, v in job['settings'].items() if k != 'folds'}).test[metric])
        for r in grid
    ]
    rows = []
    for seed in range(args.fold_seeds):
      full = sweep.grid(job['task'], job['train'], space, fold_seed=seed, evals=epochs, **job['settings'])
      val = full.curves['val_loss'].reshape(len(grid), -1, epochs)
      train = full.curves['train_loss'].reshape(len(grid), -1, epochs)
      best = full.choose('val_loss', 'min').index
      mean = val[:, :, -1].mean(axis=1)
      row = {'seed': seed, 'full': {'rate': float(grid[best]), 'test': tests[best]}, 'ranks': [], 'candidates': {}}
      row['ranks'] = [int(np.sum(val[:, :, e].mean(axis=1) < val[best, :, e].mean())) + 1 for e in range(epochs)]
      for candidate in args.candidates:
        halving = _schedule(candidate, epochs)
        choice, rung = replay(val, train, grid, halving)
        row['candidates'][','.join(map(str, candidate))] = {
            'rate': float(grid[choice]), 'rank': int(np.sum(mean < mean[choice])) + 1,
            'test': tests[choice], 'ce': halving.configuration_epochs(len(grid), epochs, kept=1) / (len(grid) * epochs),
        }
        if candidate == args.check:
          real = sweep.grid(job['task'], job['train'], space, fold_seed=seed, prune=halving, **job['settings'])
          assert real.choose('val_loss', 'min').index == choice, (name, seed, candidate)
          np.testing.assert_array_equal(real.rung, rung)
      rows.append(row)
      print(name, seed, json.dumps({k: v['rate'] for k, v in row['candidates'].items()}), flush=True)
    out[name] = {'metric': metric, 'train': len(next(iter(job['train'].values()))),
                 'test': len(next(iter(job['test'].values()))), 'epochs': epochs,
                 'rates': grid.tolist(), 'tests': tests, 'rows': rows}
  return out


def fidelity_tables(out: dict, candidates) -> list[str]:
  lines = []
  for name, d in out.items():
    rows, metric = d['rows'], d['metric']
    full = [r['full']['test'] for r in rows]
    p = statistics.mean(full)
    noise = f'; binomial s.e. of one test accuracy {np.sqrt(p * (1 - p) / d["test"]):.4f}' if metric == 'accuracy' else ''
    chosen = ', '.join(f"{r['full']['rate']:.3g}" for r in rows)
    lines += [
        f'**{name}** ({d["train"]} train / {d["test"]} test, {d["epochs"]} epochs, test {metric}). '
        f'Full grid: rates chosen {chosen}; test {metric} '
        f'mean {p:.4f}, s.d. over assignments {statistics.pstdev(full):.4f}{noise}.',
        '',
        '| candidate | config-epochs / full | same rate | rank in full (per assignment) | test diff mean | s.d. | min..max |',
        '| --- | ---: | ---: | --- | ---: | ---: | ---: |',
    ]
    for candidate in candidates:
      key = ','.join(map(str, candidate))
      picks = [r['candidates'][key] for r in rows]
      diffs = [c['test'] - r['full']['test'] for c, r in zip(picks, rows)]
      same = sum(c['rate'] == r['full']['rate'] for c, r in zip(picks, rows))
      r_, eta, rule = candidate
      lines.append(
          f'| ({r_}, {eta}) {rule} | {picks[0]["ce"]:.3f} | {same}/{len(rows)} | '
          f'{", ".join(str(c["rank"]) for c in picks)} | {statistics.mean(diffs):+.4f} | '
          f'{statistics.pstdev(diffs):.4f} | {min(diffs):+.4f}..{max(diffs):+.4f} |'
      )
    lines.append('')
  return lines


def horizon_tables(out: dict) -> list[str]:
  lines = []
  for name, d in out.items():
    epochs = d['epochs']
    shown = sorted({1, 2, 3, 4, 5, 6, 8, 10, 12, 15, epochs // 2, epochs} & set(range(1, epochs + 1)))
    lines += [f'**{name}**: rank of the full choice (of {len(d["rates"])}) after each epoch', '',
              '| assignment | ' + ' | '.join(f'e{e}' for e in shown) + ' |',
              '| ---: | ' + ' | '.join('---:' for _ in shown) + ' |']
    for row in d['rows']:
      lines.append(f'| {row["seed"]} | ' + ' | '.join(str(row['ranks'][e - 1]) for e in shown) + ' |')
    lines.append('')
  return lines


# --- speed ----------------------------------------------------------------------


def speed_once(args) -> dict:
  if args.cache:
    import jax

    jax.config.update('jax_compilation_cache_dir', args.cache)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.0)
  data = load('digits')
  x_train, x_test, y_train, y_test = data
  grid = rates(args)
  task = sweep.classifier(sweep.MLP(hidden=(args.hidden,), outputs=10))
  problem = baselines.Problem('classify', args.hidden, 10, args.lr, args.epochs or 20, args.batch_size)
  folds = sweep.stratified_folds(y_train, args.folds)

  def wdax(prune):
    found = sweep.select(task, {'x': x_train, 'y': y_train}, {'rate': grid}, test={'x': x_test, 'y': y_test},
                         folds=args.folds, prune=prune, **settings(args))
    return {'rate': found.choice.point['rate'], 'test_metric': found.refit.test['accuracy'],
            'ce': int(found.result.configuration_epochs)}

  methods = {
      'wdax pruned': lambda: wdax(sweep.Halving(*args.prune, keep={'rate': 0.0}, one_se='rate')),
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
  if args.fidelity or args.horizon:
    record['fidelity'] = fidelity(args)
    if args.fidelity:
      print('\n'.join(fidelity_tables(record['fidelity'], args.candidates)))
    if args.horizon:
      print('\n'.join(horizon_tables(record['fidelity'])))
  if args.speed:
    runs = timing.repeat(__file__, sys.argv[1:], args.runs, flags=('--fidelity', '--horizon', '--speed'))
    record['speed'] = runs
    print('\n'.join(speed_tables(runs)))
  if args.out:
    with open(args.out, 'w') as f:
      json.dump(record, f, indent=1)


if __name__ == '__main__':
  main()
