"""What sweep_vs_sklearn.py and sweep_regression.py share: one comparison, two data sets.

Both scripts choose a decay rate by cross-validation four ways (one call of
``wdax.sweep.select``, the hand-written JAX grid searches of
``baselines.py``, and scikit-learn's ``GridSearchCV``), time the methods one
after another in one process, and report them alike. This module holds what
is the same in both: their common command-line options, the timed calls of
``GridSearchCV`` and ``select`` and what is recorded of them, the run that
times the methods in a rotated order, its repetition in fresh processes, and
the Markdown section ``--results`` appends. What each script measures (its
data, its scikit-learn estimator, its extra studies) stays in the script.

Importing this module does not import JAX: a script calls
``timing.host_devices`` with its ``--devices`` before JAX starts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import warnings
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import numpy as np
import timing

_HELPED = ('rates', 'folds', 'epochs', 'hidden', 'batch_size', 'lr', 'low')


def parser(doc: str, hidden_default: int, **helps: str) -> argparse.ArgumentParser:
  """A parser whose description is ``doc``'s first paragraph and whose
  epilog is the rest, as written, with the options of the grid and the
  training: ``--quick``, ``--rates``, ``--folds``, ``--epochs``, ``--hidden``
  (by default ``hidden_default`` units), ``--batch-size``, ``--lr``,
  ``--low`` and ``--high``. ``helps`` holds the script's own help for any of
  ``rates`` to ``low``, by destination."""
  unknown = sorted(set(helps) - set(_HELPED))
  if unknown:
    raise TypeError(f'parser: helps {unknown} name no option; these take one: {list(_HELPED)}')
  parser = argparse.ArgumentParser(
      description=doc.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n\n'.join(doc.split('\n\n')[1:]),
  )
  parser.add_argument('--quick', action='store_true', help='a smoke run: 4 rates, 3 folds, 2 epochs, sklearn on 2 alphas with max_iter=5')
  parser.add_argument('--rates', type=int, default=16, help=helps.get('rates'))
  parser.add_argument('--folds', type=int, default=5, help=helps.get('folds'))
  parser.add_argument('--epochs', type=int, default=20, help=helps.get('epochs'))
  parser.add_argument('--hidden', type=int, default=hidden_default, help=helps.get('hidden'))
  parser.add_argument('--batch-size', type=int, default=32, help=helps.get('batch_size'))
  parser.add_argument('--lr', type=float, default=3e-3, help=helps.get('lr'))
  parser.add_argument('--low', type=float, default=1e-3, help=helps.get('low'))
  parser.add_argument('--high', type=float, default=10.0, help='largest rate of the loops and wdax (default 10)')
  return parser


def add_method_options(parser: argparse.ArgumentParser, metric: str, devices_help: str, criterion_help: str) -> None:
  """``--evals``, ``--sklearn-jobs``, ``--sklearn-threads``, ``--skip``,
  ``--devices`` and ``--criterion`` (``'loss'`` or ``metric``): how the
  methods run and choose, and which do not run. The help of the last two is
  the script's own."""
  parser.add_argument('--evals', type=int, default=10, help="wdax's evaluations per training (default 10, its own; the loops evaluate once, at the end)")
  parser.add_argument('--sklearn-jobs', type=int, default=None, help="GridSearchCV's n_jobs (default None: one process, as today; its workers' CPU time is not counted)")
  parser.add_argument('--sklearn-threads', type=int, default=None, help="limit sklearn's BLAS/OpenMP threads (threadpoolctl; default: its own, one per core)")
  parser.add_argument('--skip', action='append', default=[], choices=['sklearn', 'loop', 'scan', 'wdax'], help='leave a method out (repeatable)')
  parser.add_argument('--devices', type=int, default=min(os.cpu_count() or 1, 8), help=devices_help)
  parser.add_argument('--criterion', choices=['loss', metric], default='loss', help=criterion_help)


def parse(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
  """Adds ``--runs`` and ``--results`` last (and the hidden ``--child`` and
  ``--json`` by which :func:`timing.repeat` starts each run), parses
  ``argv``, and gives ``--quick`` its 4 rates, 3 folds and 2 epochs."""
  parser.add_argument('--runs', type=int, default=1, help='fresh processes to run, the order of the methods rotated (default 1: this one)')
  parser.add_argument('--results', default=None, help='append a section with the figures to this Markdown file')
  parser.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
  parser.add_argument('--json', default=None, help=argparse.SUPPRESS)
  args = parser.parse_args(argv)
  if args.quick:
    args.rates, args.folds, args.epochs = 4, 3, 2
  return args


def rates(args: argparse.Namespace) -> np.ndarray:
  """The grid of the loops and wdax: ``args.rates`` rates evenly spaced in
  log scale from ``args.low`` to ``args.high``."""
  return np.logspace(np.log10(args.low), np.log10(args.high), args.rates)


def choice(criterion: str) -> dict:
  """``select``'s ``metric`` and ``mode`` for a ``--criterion``: the lowest
  validation loss, or the highest validation ``criterion`` (``'accuracy'``,
  ``'r2'``)."""
  if criterion == 'loss':
    return {'metric': 'val_loss', 'mode': 'min'}
  return {'metric': f'val_{criterion}', 'mode': 'max'}


def sklearn_search(estimator: Any, alphas: np.ndarray, cv: Any, args: argparse.Namespace, data: tuple) -> tuple[dict, Any]:
  """Fits ``GridSearchCV(estimator, {'alpha': alphas}, cv=cv)`` on the
  training examples, timed, with ``--sklearn-jobs`` and ``--sklearn-threads``
  and convergence warnings silenced. Returns its record (times, chosen alpha,
  its cross-validated score, the refit's test score) and the fitted search."""
  from sklearn.exceptions import ConvergenceWarning
  from sklearn.model_selection import GridSearchCV

  x_train, x_test, y_train, y_test = data
  search = GridSearchCV(estimator, {'alpha': alphas}, cv=cv, n_jobs=args.sklearn_jobs)
  with warnings.catch_warnings(), timing.threads(args.sklearn_threads):
    warnings.simplefilter('ignore', ConvergenceWarning)
    with timing.Timer() as t:
      search.fit(x_train, y_train)
  record = {
      'wall': t.wall, 'cpu': t.cpu,
      'rate': float(search.best_params_['alpha']),
      'cv_metric': float(search.best_score_),
      'test_metric': float(search.score(x_test, y_test)),
  }
  return record, search


def timed_select(select: Callable[[], Any], metric: str) -> dict:
  """Times ``select()``, a call of ``wdax.sweep.select``, and records its
  chosen rate, the cross-validated and test ``metric`` (``'accuracy'``,
  ``'r2'``) there, every rate's mean validation loss, and its chunks."""
  with timing.Timer() as t:
    found = select()
  return {
      'wall': t.wall, 'cpu': t.cpu,
      'rate': found.choice.point['rate'],
      'cv_metric': float(found.result.summary(f'val_{metric}')[0][found.choice.index]),
      'test_metric': found.refit.test[metric],
      'cv_losses': found.result.summary('val_loss')[0].tolist(),
      'chunk_size': found.result.chunk_size,
      'chunks': found.result.chunks,
  }


NAMES = ('wdax', 'scan', 'loop', 'sklearn', 'loop (naive)')
"""Every method, in the order the tables list them (the warm ones after)."""


def methods(args: argparse.Namespace, extra: Sequence[str] = ()) -> list[str]:
  """The methods of run ``args.child`` in the order it times them: those
  ``--skip`` leaves, then ``extra``, rotated by the run's index; then, with
  ``--warm``, the JAX methods again, rotated alike."""
  cold = [n for n in NAMES[:4] if n not in args.skip] + list(extra)
  order = timing.rotated(cold, args.child or 0)
  if args.warm:
    warm = [n for n in NAMES[:3] if n not in args.skip]
    order += [f'{n} (warm)' for n in timing.rotated(warm, args.child or 0)]
  return order


def run(order: Sequence[str], measure: Callable[[str], dict], line: str) -> dict:
  """Times the methods in ``order`` one after another: ``measure(method)``
  (the name less `` (warm)``) returns a method's record, printed as
  ``line.format(name=name, **record)``. Returns the run: its order, the load
  before and after, and the records in the order of :data:`NAMES`."""
  out = {'order': list(order), 'load': [timing.load()], 'methods': {}}
  for name in order:
    record = measure(name.removesuffix(' (warm)'))
    out['methods'][name] = record
    print(line.format(name=name, **record), flush=True)
  out['load'].append(timing.load())
  rank = lambda n: (n.endswith('(warm)'), NAMES.index(n.removesuffix(' (warm)')))  # noqa: E731
  out['methods'] = {n: out['methods'][n] for n in sorted(out['methods'], key=rank)}
  return out


def runs(script: str, args: argparse.Namespace, run_once: Callable[[argparse.Namespace], dict], flags: Sequence[str] = ()) -> list[dict] | None:
  """The runs to report: with ``--runs N > 1``, one from each of N fresh
  processes of ``script`` (:func:`timing.repeat`, less ``flags``); else
  ``run_once(args)``. A process given ``--json``, a child of ``--runs``,
  writes its run there and gets ``None``: it reports nothing."""
  if args.runs > 1 and args.child is None:
    return timing.repeat(script, sys.argv[1:], args.runs, flags)
  one = run_once(args)
  if args.json:
    with open(args.json, 'w') as f:
      json.dump(one, f)
    return None
  return [one]


def agreement(run: dict) -> list[str]:
  """How far the scan loop's mean validation losses are from wdax's, when
  ``run`` timed both."""
  m = run['methods']
  if 'wdax' not in m or 'scan' not in m:
    return []
  a, b = np.asarray(m['wdax']['cv_losses']), np.asarray(m['scan']['cv_losses'])
  return [
      f'- scan and wdax train the same models: their mean validation losses differ '
      f'by at most {np.max(np.abs(a - b) / np.abs(a)):.1e} (relative) over the {len(a)} rates'
  ]


def _jax() -> str:
  import jax

  return f'{jax.devices()[0].platform} x {jax.device_count()}'


def header(dataset: str, data: tuple, args: argparse.Namespace) -> str:
  """The line that opens a run: ``dataset``'s training and test sizes, the
  grid, the MLP and its training, JAX's devices and the machine's CPUs."""
  return (
      f'{dataset}: {len(data[2])} train / {len(data[3])} test; {args.rates} rates x '
      f'{args.folds} folds; MLP({args.hidden}); {args.epochs} epochs, batch '
      f'{args.batch_size}, lr {args.lr}; JAX on {_jax()}; {os.cpu_count()} CPUs '
      f'({platform.processor() or platform.machine()})'
  )


def append_results(script: str, dataset: str, args: argparse.Namespace, lines: list[str]) -> None:
  """Appends ``lines`` to ``args.results`` under a paragraph that names the
  command (``script`` with this process's arguments), the machine and the
  settings."""
  import jax

  text = '\n'.join([
      '',
      f'`python benchmarks/{os.path.basename(script)} {" ".join(sys.argv[1:])}` on '
      f'{os.cpu_count()} CPUs, JAX {jax.__version__} ({_jax()}). {dataset}, '
      f'{args.rates} rates x {args.folds} folds, MLP({args.hidden}), {args.epochs} '
      f'epochs, batch {args.batch_size}, lr {args.lr}; wall time includes '
      'compilation and the refit.',
      '',
      *lines,
      '',
  ])
  with open(args.results, 'a') as f:
    f.write(text)
