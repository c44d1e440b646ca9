"""Step overhead of wdax.stochastic_rounding on bfloat16 parameters.

Times one jitted, donated optimiser step on a tree of bfloat16 parameters
(four leaves, 1e6 or 1e7 elements in all) for two chains, each with and
without ``wdax.stochastic_rounding()`` last, and reports the ratio of each
to the same chain without it, measured in one process, the variants
interleaved run by run (``step_timing.bench``: every run next to a run of a
reference, in rotated order), medians and ranges over the repeats:

  python benchmarks/stochastic_rounding.py                 # 1e6 and 1e7
  python benchmarks/stochastic_rounding.py --sizes 1e6 --repeats 21

``adamw`` is a whole optimiser (several passes over the leaves); ``sgd`` is
the cheapest chain there is, so its ratio is the worst case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import warnings
from collections.abc import Sequence


def _tree(size: int):
  import jax
  import jax.numpy as jnp

  # Four leaves of 1/2, 1/4, 1/8 and 1/8 of the elements, like the layers of
  # a small network; normal weights around 0.05 in size.
  parts = [size // 2, size // 4, size // 8, size - size // 2 - size // 4 - size // 8]
  keys = jax.random.split(jax.random.key(0), len(parts))
  return {
      f'layer_{i}': (0.05 * jax.random.normal(k, (n,))).astype(jnp.bfloat16)
      for i, (k, n) in enumerate(zip(keys, parts))
  }


def _factories():
  import optax

  import wdax

  def adamw():
    return wdax.adamw(1e-3, weight_decay=0.1)

  def sgd():
    return optax.sgd(1e-3)

  def with_rounding(make):
    return lambda: optax.chain(make(), wdax.stochastic_rounding(seed=0))

  return {
      'adamw': adamw,
      'adamw + rounding': with_rounding(adamw),
      'sgd': sgd,
      'sgd + rounding': with_rounding(sgd),
  }


def _ratios(results, mine: str, base: str) -> tuple[float, float, float]:
  """Median, min and max over repeats of the paired CPU ratio mine / base."""
  per_run = [a / b for a, b in zip(results[mine].paired, results[base].paired)]
  return statistics.median(per_run), min(per_run), max(per_run)


def run(size: int, repeats: int, steps_per_run: int) -> str:
  import step_timing

  with warnings.catch_warnings():
    # adamw's decay of 1e-4 per step is lost in bfloat16: init says so.
    warnings.simplefilter('ignore')
    results = step_timing.bench(
        _tree(size),
        _factories(),
        repeats=repeats,
        steps_per_run=steps_per_run,
        compiler_options=lambda name: None,
    )
  lines = [f'{size:.0e} bfloat16 parameters, {repeats} repeats of '
           f'{steps_per_run} steps', step_timing.table(results, 'adamw')]
  for base in ('adamw', 'sgd'):
    med, lo, hi = _ratios(results, f'{base} + rounding', base)
    lines.append(
        f'{base} + rounding / {base}: {med:.3f} (range {lo:.3f} to {hi:.3f} '
        'over repeats, paired CPU time)'
    )
  return '\n'.join(lines)


def _size(text: str) -> int:
  try:
    value = int(float(text))
  except ValueError:
    raise argparse.ArgumentTypeError(f'expected a size like 1e6; got {text!r}') from None
  if value < 8:
    raise argparse.ArgumentTypeError(f'sizes must be at least 8; got {text!r}')
  return value


def main(argv: Sequence[str] | None = None) -> None:
  parser = argparse.ArgumentParser(
      description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
  )
  parser.add_argument('--sizes', type=_size, nargs='+', default=[10**6, 10**7],
                      help='total parameters per tree (default: 1e6 1e7)')
  parser.add_argument('--repeats', type=int, default=11,
                      help='timed runs of each variant (default: 11)')
  parser.add_argument('--steps-per-run', type=int, default=0,
                      help='steps per timed run (default: 2e8 / size, at least 5)')
  args = parser.parse_args(argv)
  if args.repeats < 1 or args.steps_per_run < 0:
    parser.error('--repeats must be positive and --steps-per-run non-negative')
  sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
  import jax

  print(f'jax {jax.__version__}, {jax.devices()[0].platform}, '
        f'{len(os.sched_getaffinity(0))} of {os.cpu_count()} cores, load '
        f'{os.getloadavg()[0]:.1f}')
  for size in args.sizes:
    steps = args.steps_per_run or max(5, int(2e8 // size))
    print(run(size, args.repeats, steps), flush=True)


if __name__ == '__main__':
  main()
