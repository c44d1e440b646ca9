"""What saving a checkpoint adds to the default digits job.

The job is ``wdax sweep``'s default: digits, half held out, 16 rates and 0,
5 folds, 20 epochs, batch 32, an MLP of 256 and AdamW at lr 3e-3, cross-
validated, chosen and refit by ``sweep.select``. After one run to compile,
the plain job and the checkpointed one (a fresh folder each time) alternate
in one process, ``--repeats`` times each (which one first alternates), and
the ratio of their wall times is given per pair, so the machine's load moves
both alike.

  python benchmarks/checkpoint_cost.py --repeats 5 --every 0
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--repeats', type=int, default=5, help='pairs of runs (default 5)')
  parser.add_argument(
      '--every', type=float, default=None,
      help='checkpoint_every, seconds between saves inside a chunk (default: the default)',
  )
  parser.add_argument('--folder', default=None, help='where the checkpoints go (default a temporary folder)')
  args = parser.parse_args()
  cores = os.cpu_count() or 1
  os.environ.setdefault('XLA_FLAGS', f'--xla_force_host_platform_device_count={min(cores, 8)}')
  import numpy as np

  import wdax
  from wdax import sweep
  from wdax.sweep import datasets

  digits = datasets.load('digits').data
  train, _ = sweep.stratified_split(digits['y'], 0.5, seed=0)
  x, = sweep.standardize(digits['x'][train])
  data = {'x': x, 'y': digits['y'][train].astype(np.int32)}
  rates = [0.0, *np.logspace(-3, 1, 16).tolist()]
  kw = dict(
      optimizer=sweep.kind('adamw', lr=3e-3, mask=wdax.masks.flax_default()),
      folds=5, epochs=20, batch_size=32,
  )
  if args.every is not None:
    kw['checkpoint_every'] = args.every
  task = sweep.classifier(sweep.MLP(hidden=(256,), outputs=10))
  sweep.select(task, data, {'rate': rates}, **{k: v for k, v in kw.items() if k != 'checkpoint_every'})
  ratios, plain_times, saved_times = [], [], []

  def plain_run() -> float:
    t = time.perf_counter()
    sweep.select(task, data, {'rate': rates}, **{k: v for k, v in kw.items() if k != 'checkpoint_every'})
    return time.perf_counter() - t

  def saved_run() -> tuple[float, int]:
    with tempfile.TemporaryDirectory(dir=args.folder) as folder:
      t = time.perf_counter()
      sweep.select(task, data, {'rate': rates}, checkpoint=folder, **kw)
      seconds = time.perf_counter() - t
      return seconds, sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder))

  for i in range(args.repeats):
    # Which runs first alternates, so a load that rises or falls during a
    # pair favours neither.
    if i % 2:
      (saved, size), plain = saved_run(), plain_run()
    else:
      plain, (saved, size) = plain_run(), saved_run()
    plain_times.append(plain)
    saved_times.append(saved)
    ratios.append(saved / plain)
    print(f'plain {plain:.2f} s, checkpointed {saved:.2f} s: ratio {saved / plain:.3f} ({size / 2**20:.1f} MiB kept)')
  print(
      f'median ratio {statistics.median(ratios):.3f} (range {min(ratios):.3f} to {max(ratios):.3f}); '
      f'median plain {statistics.median(plain_times):.2f} s, checkpointed '
      f'{statistics.median(saved_times):.2f} s'
  )


if __name__ == '__main__':
  main()
