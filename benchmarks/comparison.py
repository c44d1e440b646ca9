"""What sweep_vs_sklearn.py and sweep_regression.py share: one comparison, two data sets.

Both scripts choose a decay rate by cross-validation four ways (one call of
``wdax.sweep.select``, the hand-written JAX grid searches of
``baselines.py``, and scikit-learn's ``GridSearchCV``), time the methods one
after another in one process, and report them alike. This module holds what
is the same in both: their common command-line options, the line that
describes a run, and the Markdown section ``--results`` appends. What each
script measures (its data, its scikit-learn estimator, its extra studies)
stays in the script.

Importing this module does not import JAX: a script calls
:func:`host_devices` with its ``--devices`` before JAX starts.
"""

from __future__ import annotations

import argparse
import os
import platform


def parser(doc: str) -> argparse.ArgumentParser:
  """A parser whose description is ``doc``'s first paragraph and whose
  epilog is the rest, as written."""
  return argparse.ArgumentParser(
      description=doc.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n\n'.join(doc.split('\n\n')[1:]),
  )


def add_method_options(parser: argparse.ArgumentParser) -> None:
  """``--evals``, ``--sklearn-jobs``, ``--sklearn-threads`` and ``--skip``:
  how the methods run, and which do not."""
  parser.add_argument('--evals', type=int, default=10, help="wdax's evaluations per training (default 10, its own; the loops evaluate once, at the end)")
  parser.add_argument('--sklearn-jobs', type=int, default=None, help="GridSearchCV's n_jobs (default None: one process, as today; its workers' CPU time is not counted)")
  parser.add_argument('--sklearn-threads', type=int, default=None, help="limit sklearn's BLAS/OpenMP threads (threadpoolctl; default: its own, one per core)")
  parser.add_argument('--skip', action='append', default=[], choices=['sklearn', 'loop', 'scan', 'wdax'], help='leave a method out (repeatable)')


def add_run_options(parser: argparse.ArgumentParser) -> None:
  """``--runs`` and ``--results``, and the hidden ``--child`` and ``--json``
  by which :func:`timing.repeat` starts each run."""
  parser.add_argument('--runs', type=int, default=1, help='fresh processes to run, the order of the methods rotated (default 1: this one)')
  parser.add_argument('--results', default=None, help='append a section with the figures to this Markdown file')
  parser.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
  parser.add_argument('--json', default=None, help=argparse.SUPPRESS)


def host_devices(count: int | None) -> None:
  """Asks XLA for ``count`` host devices (none asked for when ``count`` is
  0 or ``None``), unless ``XLA_FLAGS`` already says how many. Call it before
  JAX is imported: JAX reads the flag when it starts."""
  flags = os.environ.get('XLA_FLAGS', '')
  if count and 'xla_force_host_platform_device_count' not in flags:
    os.environ['XLA_FLAGS'] = f'{flags} --xla_force_host_platform_device_count={count}'.strip()


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


def append_results(script: str, argv: list[str], dataset: str, args: argparse.Namespace, lines: list[str]) -> None:
  """Appends ``lines`` to ``args.results`` under a paragraph that names the
  command (``script`` run with ``argv``), the machine and the settings."""
  import jax

  text = '\n'.join([
      '',
      f'`python benchmarks/{os.path.basename(script)} {" ".join(argv)}` on '
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
