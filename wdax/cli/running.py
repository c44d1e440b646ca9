"""Running the jobs: ``wdax sweep`` and ``wdax describe``.

This is the one module of the command line that calls :mod:`wdax.sweep`:
:func:`kinds` (the decay kinds it offers), :func:`_select` (the sweep
itself), :func:`_summary` (what the rest of the command line reads of its
result, as plain numbers and arrays) and :func:`describe`'s ``sweep.MLP``
are the whole seam.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
import time
from typing import Any

from wdax.cli import loading
from wdax.cli import rendering
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


def _memory(device) -> int | None:
  """The bytes of memory ``device`` has: the host's RAM for a CPU."""
  if device.platform == 'cpu':
    try:
      return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
    except (ValueError, OSError, AttributeError):
      return None
  stats = device.memory_stats() or {}
  return stats.get('bytes_limit')


def _check_fits(args, features: int, classes: int, examples: int, device) -> None:
  """Refuses a sweep whose smallest part cannot fit on ``device``.

  The bound is low: for one training, float32 parameters, gradients and
  Adam's two moments (16 bytes a parameter) and the outputs of every layer
  on the evaluation pass over all examples; and the initial parameters of
  every seed, which the sweep holds at once. Past it, XLA would fail to
  allocate, or wait on an allocation forever, after minutes of work.
  """
  have = _memory(device)
  if have is None:
    return
  widths = [features, *args.hidden, classes]
  parameters = sum((a + 1) * b for a, b in zip(widths, widths[1:]))
  need = 4 * parameters * (4 + args.seeds) + 4 * examples * sum(widths[1:])
  if need > have:
    hidden = ','.join(map(str, args.hidden))
    raise BadInput(
        f'--hidden {hidden} --seeds {args.seeds}: training MLP({hidden}) on '
        f'{features} features needs at least {need / 2**30:.3g} GiB, more than the '
        f'{have / 2**30:.3g} GiB of memory of a {device.platform} device'
    )


def _select(args, classes: int, train, test, devices, progress):
  """Cross-validates ``args.rates``, chooses one and refits it."""
  from wdax import masks
  from wdax import sweep

  by_loss = args.criterion == 'loss'
  return sweep.select(
      sweep.classifier(sweep.MLP(hidden=args.hidden, outputs=classes)),
      train,
      {'rate': args.rates},
      # Masks and kinds compare by value: a second run in the same process
      # makes an equal optimiser, and reuses the compiled programs.
      optimizer=sweep.kind(args.kind, lr=args.lr, mask=masks.flax_default()),
      test=test,
      metric='val_loss' if by_loss else 'val_accuracy',
      mode='min' if by_loss else 'max',
      one_se=args.one_se,
      folds=args.folds,
      seeds=args.seeds,
      fold_seed=args.seed,
      chunk_size=args.chunk_size,
      progress=progress('cross-validating', 'compiling'),
      refit_progress=progress('refitting', 'waiting'),
      epochs=args.epochs,
      batch_size=args.batch_size,
      devices=devices,
  )


def _table(result) -> list[dict[str, Any]]:
  """The result's table, with each rate's generalisation gap: training
  minus validation accuracy, mean and s.e. over the trainings."""
  from wdax.sweep import results

  gap, gap_se = results.mean_se(result.final('train_accuracy') - result.final('val_accuracy'))
  rows = result.table()
  for row, mean, se in zip(rows, gap, gap_se):
    row['gap'], row['gap_se'] = float(mean), float(se)
  return rows


def _summary(found, criterion: str) -> dict[str, Any]:
  """What the command line reads of :func:`wdax.sweep.select`'s result."""
  result, choice, refit = found.result, found.choice, found.refit
  return {
      'seeds': list(result.seeds),
      'table': _table(result),
      'chosen': choice.index,
      'choice': {
          'rate': choice.point['rate'],
          'criterion': criterion,
          'mean': choice.mean,
          'se': choice.se,
      },
      'refit': {
          'rate': refit.point['rate'],
          'test_accuracy': refit.final('test_accuracy'),
          'test_loss': refit.test['loss'],
          'train_accuracy': float(refit.final('train_accuracy').mean()),
      },
      'epochs': result.epochs,
      'curves': {name: values.mean(axis=(1, 2)) for name, values in result.curves.items()},
      'final': {name: result.final(name) for name in result.curves},
      'run': {
          'devices': result.devices,
          'chunk_size': result.chunk_size,
          'chunks': result.chunks,
          'bytes_per_configuration': result.bytes_per_configuration,
      },
  }


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


@dataclasses.dataclass(frozen=True)
class _Split:
  """The data as the sweep takes it: standardised, held-out part apart."""

  names: Any  # the class names; class i is names[i]
  x_train: Any
  y_train: Any
  x_test: Any
  y_test: Any


def _split(args, data: loading.Data, device) -> _Split:
  """Holds out ``--test-size`` of each class and standardises; refuses data
  too small for ``--folds`` or a model too large for ``device``."""
  import numpy as np

  from wdax import sweep

  source = data.source
  names, codes = np.unique(data.labels, return_inverse=True)
  if len(names) < 2:
    raise BadInput(f'{source}: the labels have a single class, {loading.label(names[0])}')
  train, test = sweep.stratified_split(codes, args.test_size, seed=args.seed)
  y_train, y_test = codes[train].astype(np.int32), codes[test].astype(np.int32)
  counts = np.bincount(y_train, minlength=len(names))
  if counts.min() < args.folds:
    c = int(np.argmin(counts))
    raise BadInput(
        f'{source}: class {loading.label(names[c])} has {counts[c]} training '
        f'example{"" if counts[c] == 1 else "s"}, fewer than --folds {args.folds}'
    )
  _check_fits(args, data.x.shape[1], len(names), len(y_train), device)
  x_train, x_test = sweep.standardize(data.x[train], data.x[test])
  far = ~np.isfinite(x_test).all(axis=0)
  if far.any():
    raise BadInput(
        f'{source}: {data.column(int(np.argmax(far)))}: a held-out value is too far '
        'from the training values to standardise in float32'
    )
  return _Split(names, x_train, y_train, x_test, y_test)


def sweep(args) -> int:
  """``wdax sweep``: returns the exit status."""
  rendering.check_out(args.out)
  _ask_for_devices(args.devices)

  import jax

  devices = _devices(args.devices)
  data = loading.load(args.data)
  x, source = data.x, data.source
  split = _split(args, data, devices[0])
  names, y_train, y_test = split.names, split.y_train, split.y_test
  # A batch larger than the training split is the whole split; the sweep
  # would pad every batch to the size asked for.
  args.batch_size = min(args.batch_size, len(y_train))

  configurations = len(args.rates) * args.folds * args.seeds
  print(
      f'data: {rendering.shown(source)}: {len(y_train)} training / {len(y_test)} held-out '
      f'examples, {x.shape[1]} features, {len(names)} classes'
  )
  print(
      f'grid: {len(args.rates)} rates x {args.folds} folds x {args.seeds} seed(s) = '
      f'{configurations} trainings of MLP({", ".join(map(str, args.hidden))}) with {args.kind}, '
      f'{args.epochs} epochs, batch {args.batch_size}, lr {args.lr:g}'
  )
  times = [time.perf_counter()]

  with rendering.Progress(args.quiet) as bar:

    def progress(description, waiting):
      callback = bar.task(description, waiting)

      def update(done, total):
        if callback is not None:
          callback(done, total)
        if done == total:
          times.append(time.perf_counter())

      return update

    try:
      found = _select(
          args, len(names), {'x': split.x_train, 'y': y_train},
          {'x': split.x_test, 'y': y_test}, devices, progress,
      )
    except (MemoryError, jax.errors.JaxRuntimeError) as e:
      # Past _check_fits's low bound the memory can still run out: on the
      # device (XLA) or on the host (NumPy, for a huge --epochs).
      if not isinstance(e, MemoryError) and 'RESOURCE_EXHAUSTED' not in str(e):
        raise
      hidden = ','.join(map(str, args.hidden))
      raise BadInput(
          f'out of memory in the sweep of MLP({hidden}), {args.epochs} epochs, '
          f'{args.seeds} seed(s) ({str(e).splitlines()[0] if str(e) else type(e).__name__}); '
          'try a smaller --hidden, --epochs, --seeds or --chunk-size'
      ) from None
    except ValueError as e:
      # wdax.sweep never chooses a point with a diverged training; when
      # every one diverged there is nothing to choose or refit.
      if 'diverged' not in str(e):
        raise
      raise BadInput(
          f'the training diverged (NaN or infinite loss) at every one of the '
          f'{len(args.rates)} rates, so none can be chosen; try a smaller --lr'
      ) from None
  summary = _summary(found, args.criterion)
  diverged = [row['rate'] for row in summary['table'] if row['diverged']]
  if diverged:
    print(
        f'wdax: warning: the training diverged (NaN or infinite loss) at '
        f'{len(diverged)} of {len(summary["table"])} rates, from {min(diverged):.3g}; '
        'those are never chosen; try a smaller --lr',
        file=sys.stderr,
    )
  swept, refitted = times[1] - times[0], times[2] - times[1]
  run = summary['run']
  print(
      f'{configurations} trainings in {run["chunks"]} chunk(s) of '
      f'{run["chunk_size"]} on {run["devices"]} {devices[0].platform} '
      f'device(s): {swept:.1f} s (compilation included)'
  )
  run.update(sweep_seconds=round(swept, 3), refit_seconds=round(refitted, 3))
  about = {
      'source': source,
      'train': int(len(y_train)),
      'test': int(len(y_test)),
      'features': int(x.shape[1]),
      'classes': [str(n) for n in names],
  }
  report = rendering.report(args, about, summary)
  rendering.print_table(summary['table'], summary['chosen'])
  choice = summary['choice']
  rule = ' (one-standard-error rule)' if args.one_se else ''
  print(
      f'chosen rate: {choice["rate"]:.3g}{rule}, validation {args.criterion} '
      f'{choice["mean"]:.4f} ± {choice["se"]:.4f}'
  )
  test_accuracy = summary['refit']['test_accuracy']
  spread = ''
  if len(test_accuracy) > 1:
    spread = f' ± {test_accuracy.std(ddof=1) / math.sqrt(len(test_accuracy)):.4f}'
  print(
      f'refit on all {len(y_train)} training examples: held-out test accuracy '
      f'{test_accuracy.mean():.4f}{spread} ({len(y_test)} examples, '
      f'{refitted:.1f} s)'
  )
  rendering.write(args.out, report, args)
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
