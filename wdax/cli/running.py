"""Running the jobs: ``wdax sweep`` and ``wdax describe``.

With :mod:`~wdax.cli.problems` (the split, model and task of each kind of
data) and :mod:`~wdax.cli.summary` (what is read of the results), this is
where the command line calls :mod:`wdax.sweep`: :func:`kinds` (the decay
kinds it offers), :func:`_select` (one sweep per kind) and
:func:`describe`'s built-in models.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Any

from wdax.cli import caching
from wdax.cli import folders
from wdax.cli import loading
from wdax.cli import problems
from wdax.cli import rendering
from wdax.cli import resuming
from wdax.cli import summary as _summary
from wdax.cli.errors import BadInput

MASKS = {
    'flax': 'kernels only (wdax.masks.flax_default())',
    'flax+embeddings': 'kernels and embeddings',
    'matrices': 'every leaf of rank >= 2 (wdax.masks.min_ndim(2))',
    'all': 'every floating leaf',
}


def kinds() -> list[str]:
  """The decay kinds ``wdax sweep --kind`` takes."""
  # The sweep module imports Flax; its kind names are listed lazily for --help.
  from wdax import sweep

  return sorted(sweep.KINDS)


def _mask(name: str) -> Any:
  from wdax import masks

  return {
      'flax': masks.flax_default(),
      'flax+embeddings': masks.flax_default(embeddings=True),
      'matrices': masks.min_ndim(2),
      'all': None,
  }[name]


def _ask_for_devices(count: int | None) -> None:
  """Asks XLA for one host device per core, at most 8 (or ``count``, at most
  one per core) before JAX starts.

  Only the CPU backend reads the flag, so on a machine with accelerators it
  changes nothing. It must be set before the first computation. More host
  devices than cores would run no faster, so a larger ``count`` is not asked
  for and :func:`sweep` refuses it; ``XLA_FLAGS`` set by the user wins.
  """
  flags = os.environ.get('XLA_FLAGS', '')
  if 'xla_force_host_platform_device_count' in flags:
    return
  from jax._src import xla_bridge

  if xla_bridge.backends_are_initialized():
    return
  cores = os.cpu_count() or 1
  count = min(count, cores) if count else min(cores, 8)
  os.environ['XLA_FLAGS'] = f'{flags} --xla_force_host_platform_device_count={count}'.strip()


def _devices(count: int | None) -> list[Any]:
  """The first ``count`` local devices (all by default); refuses more."""
  import jax

  available = jax.local_devices()
  if count is not None and count > len(available):
    hint = ''
    if available[0].platform == 'cpu':
      hint = (
          f' ({os.cpu_count()} cores; XLA_FLAGS=--xla_force_host_platform_'
          'device_count=N simulates more)'
      )
    raise BadInput(
        f'--devices {count}: only {len(available)} '
        f'{available[0].platform} device(s) are available{hint}'
    )
  return available[:count] if count else available


def _space(args) -> dict[str, list[float]]:
  """The names the sweep varies: the rate (with 0), and the learning rate
  or the dropout rate when given as lists."""
  space = {'rate': args.grid}
  if len(args.lr) > 1:
    space['lr'] = sorted(args.lr)
  if args.dropout is not None:
    space['dropout'] = sorted(args.dropout)
  return space


def _select(args, kind: str, task, split, space, devices, progress):
  """Cross-validates ``space`` with decay ``kind``, chooses and refits."""
  from wdax import masks
  from wdax import sweep

  metric, mode = problems.metric(args)
  halving = _summary.halving(args)
  prune = None if halving is None else sweep.Halving(**halving)
  return sweep.select(
      task,
      split.train,
      space,
      # Masks and kinds compare by value: a second run in the same process
      # makes an equal optimiser, and reuses the compiled programs.
      optimizer=sweep.kind(kind, lr=args.lr[0], mask=masks.flax_default()),
      test=split.test,
      metric=metric,
      mode=mode,
      one_se=args.one_se,
      folds=args.folds,
      seeds=args.seeds,
      fold_seed=args.seed,
      chunk_size=args.chunk_size,
      prune=prune,
      progress=progress(f'{kind}: cross-validating', 'compiling'),
      refit_progress=progress(f'{kind}: refitting', 'waiting'),
      epochs=args.epochs,
      batch_size=args.batch_size,
      devices=devices,
      checkpoint=resuming.kind_folder(args, kind),
      checkpoint_every=args.save_every,
  )


def _run(args, task, split, space, devices, progress) -> dict[str, Any]:
  """:func:`_select` for every kind of ``args.kind``; the one-line errors
  of running out of memory or of a sweep that diverged everywhere."""
  import jax

  from wdax import sweep

  found = {}
  for kind in args.kind:
    try:
      found[kind] = _select(args, kind, task, split, space, devices, progress)
    except sweep.CheckpointMismatch as e:
      raise resuming.refused(args, e) from None
    except (MemoryError, jax.errors.JaxRuntimeError) as e:
      # Past the low bound of problems._check_fits the memory can still run
      # out: on the device (XLA) or on the host (NumPy, for a huge --epochs).
      if not isinstance(e, MemoryError) and 'RESOURCE_EXHAUSTED' not in str(e):
        raise
      raise BadInput(
          f'out of memory in the sweep of {problems.model_name(args)}, {args.epochs} '
          f'epochs, {args.seeds} seed(s) '
          f'({str(e).splitlines()[0] if str(e) else type(e).__name__}); '
          'try a smaller --hidden, --epochs, --seeds or --chunk-size'
      ) from None
    except ValueError as e:
      # wdax.sweep never chooses a point with a diverged training; when
      # every one diverged there is nothing to choose or refit.
      if 'diverged' not in str(e):
        raise
      raise BadInput(
          f'the training diverged (NaN or infinite loss) at every one of the '
          f'{len(args.grid)} rates with --kind {kind}, so none can be chosen; try a '
          'smaller --lr'
      ) from None
  return found


def _warn_diverged(report: dict[str, Any]) -> None:
  for kind, entry in report['kinds'].items():
    diverged = sorted({row['rate'] for row in entry['rows'] if row['diverged']})
    if diverged:
      print(
          f'wdax: warning: the training diverged (NaN or infinite loss) with {kind} at '
          f'{len(diverged)} of {len({row["rate"] for row in entry["rows"]})} rates, from '
          f'{min(diverged):.3g}; those are never chosen; try a smaller --lr',
          file=sys.stderr,
      )


def sweep(args) -> int:
  """``wdax sweep``: returns the exit status."""
  folders.check('--out', args.out)
  caching.check(args)
  _ask_for_devices(args.devices)

  devices = _devices(args.devices)
  data = loading.load(args.data)
  split = problems.split(args, data, devices[0])
  # A batch larger than the training split is the whole split; the sweep
  # would pad every batch to the size asked for.
  args.batch_size = min(args.batch_size, split.examples)
  space = _space(args)
  task = problems.task(args, split)
  points = math.prod(len(v) for v in space.values())
  trainings = points * args.folds * args.seeds * len(args.kind)
  print(f'data: {rendering.data_line(split.about)}')
  others = ''.join(f' x {len(v)} {n}' for n, v in space.items() if n != 'rate')
  print(
      f'grid: {len(args.grid)} rates (0 the baseline){others} x {args.folds} folds x '
      f'{args.seeds} seed(s) x {len(args.kind)} kind(s) = {trainings} trainings of '
      f'{problems.model_name(args)} with {", ".join(args.kind)}, {args.epochs} epochs, '
      f'batch {args.batch_size}, lr {", ".join(f"{lr:g}" for lr in args.lr)}'
      + (f', pruned from epoch {args.prune[0]} by {args.prune[1]}' if args.prune else '')
  )
  resumed = resuming.start(args)
  if resumed is not None:
    print(resumed)
  times = {'start': time.perf_counter(), 'sweep': 0.0, 'refit': 0.0}

  from wdax.sweep import Interrupted

  # Everything is checked: from here on, programs are compiled (or loaded).
  cache = caching.enable(args)
  loaded = caching.Loaded()
  with rendering.Progress(args.quiet) as bar:

    def progress(description, waiting):
      callback = bar.task(description, waiting)
      stage = 'refit' if 'refitting' in description else 'sweep'

      def update(done, total):
        if callback is not None:
          callback(done, total)
        if done == total:
          now = time.perf_counter()
          times[stage] += now - times['start']
          times['start'] = now

      return update

    try:
      found = _run(args, task, split, space, devices, progress)
    except Interrupted as e:  # SIGINT or SIGTERM, saved at a safe point
      stopped = e
    else:
      stopped = None
  if stopped is not None:
    return resuming.stopped(args, stopped)
  report = _summary.summarise(args, found, *problems.metric(args))
  _warn_diverged(report)
  first = next(iter(report['kinds'].values()))['run']
  print(
      f'{trainings} trainings in {len(args.kind)} x {first["chunks"]} chunk(s) of '
      f'{first["chunk_size"]} on {first["devices"]} {devices[0].platform} '
      f'device(s): {times["sweep"]:.1f} s ({loaded.describe(cache)})'
  )
  report['run'] = {
      **first, 'sweep_seconds': round(times['sweep'], 3), 'refit_seconds': round(times['refit'], 3),
      'configuration_epochs': sum(e['configuration_epochs'] for e in report['kinds'].values()),
  }
  rendering.print_tables(args, report)
  rendering.print_choice(args, report, times['refit'], split.about)
  rendering.write(args.out, rendering.results(args, split.about, report), args)
  shown = rendering.shown(args.out)
  print(f'wrote {os.path.join(shown, "results.json")} and {os.path.join(shown, "sweep.png")}')
  return 0


def describe(args) -> int:
  """``wdax describe``: returns the exit status."""
  import jax
  import jax.numpy as jnp

  import wdax
  from wdax import sweep

  if args.model == 'mlp':
    model, example = sweep.MLP(hidden=args.hidden, outputs=10), jnp.zeros((1, 64))
  else:
    model, example = sweep.TinyTransformer(), jnp.zeros((1, 16), jnp.int32)
  params = jax.eval_shape(lambda: model.init(jax.random.key(0), example))['params']
  try:
    report = wdax.describe(params, rate=args.rate, mask=_mask(args.mask))
  except ValueError as e:  # the mask names a parameter the model lacks
    raise BadInput(f'--mask {args.mask} does not fit --model {args.model}: {e}') from None
  print(f'{args.model}, mask {args.mask}: {MASKS[args.mask]}')
  if sys.stdout.isatty():
    from rich.console import Console

    Console().print(report)
  else:
    print(report)
  return 0
