"""The default sweep job with an NNX model against the same linen model.

``wdax sweep``'s job (scikit-learn's digits, half held out, 16 rates from
1e-3 to 10, 5 stratified folds, 20 epochs, batches of 32, ``wdax.adamw`` at
lr 3e-3 with Flax's decay mask, then the refit and its test accuracy) run by
:func:`wdax.sweep.select` twice in one process: with ``sweep.MLP(hidden=(H,))``
(linen) and with the same network written in NNX (two ``nnx.Linear``, Glorot
kernels, zero biases). Both compile their own programs, so the first call of
each ("cold") includes compilation; the warm calls reuse it. A small job of
another model runs first so that neither pays for JAX's own start-up. Medians over
``--repeats`` alternating warm calls.

  python benchmarks/sweep_nnx.py
  python benchmarks/sweep_nnx.py --repeats 5 --results benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import timing


def _parse(argv=None) -> argparse.Namespace:
  parser = argparse.ArgumentParser(
      description=__doc__.split('\n\n')[0],
      formatter_class=argparse.RawDescriptionHelpFormatter,
      epilog='\n\n'.join(__doc__.split('\n\n')[1:]),
  )
  parser.add_argument('--repeats', type=int, default=3, help='warm calls of each (default 3)')
  parser.add_argument('--hidden', type=int, default=256)
  parser.add_argument('--epochs', type=int, default=20)
  parser.add_argument('--devices', type=int, default=min(os.cpu_count() or 1, 8), help='host devices on CPU (default: one per core, as wdax sweep)')
  parser.add_argument('--first', choices=('linen', 'nnx'), default='linen', help='which model runs (and compiles) first')
  parser.add_argument('--results', default=None, help='append the figures to this Markdown file')
  return parser.parse_args(argv)


ARGS = _parse() if __name__ == '__main__' else None
if ARGS is not None:
  timing.host_devices(ARGS.devices)

import jax  # noqa: E402  (after XLA_FLAGS)
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

import wdax  # noqa: E402
from wdax import sweep  # noqa: E402


class NnxMLP(nnx.Module):
  """``sweep.MLP(hidden=(hidden,), outputs=outputs)`` written in NNX."""

  def __init__(self, inputs: int, hidden: int, outputs: int, rngs: nnx.Rngs):
    init = nnx.initializers.glorot_uniform()
    self.hidden = nnx.Linear(inputs, hidden, kernel_init=init, rngs=rngs)
    self.out = nnx.Linear(hidden, outputs, kernel_init=init, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.hidden(x)))


def digits():
  from sklearn.datasets import load_digits

  x, y = load_digits(return_X_y=True)
  train, test = sweep.stratified_split(y, 0.5, seed=0)
  x_train, x_test = sweep.standardize(x[train], x[test])
  y = y.astype(np.int32)
  return {'x': x_train, 'y': y[train]}, {'x': x_test, 'y': y[test]}


def main() -> None:
  args = ARGS or _parse()
  train, test = digits()
  mask = wdax.masks.flax_default()
  rates = np.logspace(-3, 1, 16)

  def nnx_model(rngs):
    return NnxMLP(64, args.hidden, 10, rngs)

  models = {
      'linen': sweep.MLP(hidden=(args.hidden,), outputs=10),
      'nnx': nnx_model,
      'start-up': sweep.MLP(hidden=(8,), outputs=10),
  }

  def run(name, epochs=args.epochs, space=rates):
    start = time.perf_counter()
    found = sweep.select(
        sweep.classifier(models[name]), train, {'rate': space},
        optimizer=sweep.kind('adamw', lr=3e-3, mask=mask), test=test,
        epochs=epochs, batch_size=32, devices=args.devices,
    )
    return time.perf_counter() - start, found

  run('start-up', epochs=1, space=[0.1])  # JAX's own start-up, paid by neither
  cold, warm, found = {}, {'linen': [], 'nnx': []}, {}
  order = ('linen', 'nnx') if args.first == 'linen' else ('nnx', 'linen')
  for name in order:
    cold[name], found[name] = run(name)
  for _ in range(args.repeats):
    for name in order:
      warm[name].append(run(name)[0])
  lines = [
      '| model | cold (s) | warm, median (s) | chosen rate | test accuracy |',
      '| --- | ---: | ---: | ---: | ---: |',
  ]
  for name in ('linen', 'nnx'):
    lines.append(
        f'| {name} | {cold[name]:.2f} | {np.median(warm[name]):.2f} | '
        f'{found[name].choice.point["rate"]:.3g} | {found[name].refit.test["accuracy"]:.4f} |'
    )
  ratio_cold = cold['nnx'] / cold['linen']
  ratio_warm = np.median(warm['nnx']) / np.median(warm['linen'])
  summary = f'nnx / linen: {ratio_cold:.2f}x cold, {ratio_warm:.2f}x warm (median of {args.repeats})'
  print('\n'.join(lines))
  print(summary)
  if args.results:
    with open(args.results, 'a') as f:
      f.write('\n'.join([
          '',
          '## The default sweep job with an NNX model (`benchmarks/sweep_nnx.py`)',
          '',
          f'`python benchmarks/sweep_nnx.py {" ".join(sys.argv[1:])}` on {os.cpu_count()} '
          f'CPUs, JAX {jax.__version__} ({jax.devices()[0].platform} x {jax.device_count()}).',
          '',
          *lines,
          '',
          f'- {summary}',
          '',
      ]))


if __name__ == '__main__':
  main()
