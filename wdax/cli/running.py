"""Running ``wdax sweep``: the stages from a request to the files.

1. :func:`_prepare`: everything that can refuse bad input, before anything
   compiles: the folders, the devices, the data, and the problem's setup
   (:func:`wdax.cli.problems.resolve`);
2. :func:`_train`: one :func:`wdax.sweep.select` per decay kind, with the
   compilation cache on; the sweep's errors (:mod:`wdax.sweep.errors`)
   become one line;
3. the report (:func:`wdax.cli.report.summarise`), printed
   (:mod:`~wdax.cli.rendering`) and written (:mod:`~wdax.cli.writing`).

A checkpoint of the sweep, and stopping it on a signal, belong in
:func:`_train`, around the calls of the sweep; a resumed run shows and
writes its report as any other.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from collections.abc import Mapping
from typing import Any

import jax

from wdax import sweep as _sweep
from wdax.cli import caching
from wdax.cli import folders
from wdax.cli import loading
from wdax.cli import problems
from wdax.cli import rendering
from wdax.cli import writing
from wdax.cli.errors import BadInput
from wdax.cli.labels import shown
from wdax.cli.problems import Setup
from wdax.cli.report import Timing
from wdax.cli.report import summarise
from wdax.cli.requests import SweepRequest
from wdax.sweep import errors


def _ask_for_devices(count: int | None) -> None:
  """Asks JAX for one host device per core, at most 8 (or ``count``, at most
  one per core), when it can still take effect.

  Only the CPU backend reads it, so on a machine with accelerators it
  changes nothing. More host devices than cores would run no faster, so a
  larger ``count`` is not asked for and :func:`_devices` refuses it. A
  count the user set (``XLA_FLAGS``, ``JAX_NUM_CPU_DEVICES``) wins; once
  JAX's backends have started, JAX refuses a new count, and the devices
  stay as they are.
  """
  if 'xla_force_host_platform_device_count' in os.environ.get('XLA_FLAGS', ''):
    return
  if jax.config.values['jax_num_cpu_devices'] >= 0:
    return
  cores = os.cpu_count() or 1
  try:
    jax.config.update('jax_num_cpu_devices', min(count, cores) if count else min(cores, 8))
  except RuntimeError:  # the backends have started: too late to change
    pass


def _devices(count: int | None) -> list[Any]:
  """The first ``count`` local devices (all by default); refuses more."""
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


def _prepare(request: SweepRequest) -> tuple[list[Any], Setup]:
  """The devices and the setup of ``request``; refuses bad input."""
  folders.check('--out', request.out)
  caching.check(request.cache)
  _ask_for_devices(request.devices)
  devices = _devices(request.devices)
  setup = problems.resolve(request, loading.load(request.data), devices[0])
  return devices, setup


class _Clock:
  """Seconds spent cross-validating and refitting, measured between the
  ends of the stages the progress callbacks report."""

  def __init__(self) -> None:
    self.start = time.perf_counter()
    self.seconds = {'sweep': 0.0, 'refit': 0.0}

  def progress(
      self, bar: rendering.Progress, stage: str, description: str, waiting: str
  ) -> Callable[[int, int], None]:
    callback = bar.task(description, waiting)

    def update(done: int, total: int) -> None:
      if callback is not None:
        callback(done, total)
      if done == total:
        now = time.perf_counter()
        self.seconds[stage] += now - self.start
        self.start = now

    return update


def _select(
    request: SweepRequest, setup: Setup, kind: str, devices: list[Any], clock: _Clock,
    bar: rendering.Progress,
) -> _sweep.Selection:
  """Cross-validates the request's space with decay ``kind``, chooses and
  refits."""
  return _sweep.select(
      setup.task,
      setup.split.train,
      request.space,
      optimizer=setup.optimizer(request, kind),
      test=setup.split.test,
      metric=setup.metric,
      mode=setup.mode,
      one_se=request.one_se,
      folds=request.folds,
      seeds=request.seeds,
      fold_seed=request.seed,
      chunk_size=request.chunk_size,
      prune=request.halving,
      progress=clock.progress(bar, 'sweep', f'{kind}: cross-validating', 'compiling'),
      refit_progress=clock.progress(bar, 'refit', f'{kind}: refitting', 'waiting'),
      epochs=request.epochs,
      batch_size=setup.batch_size,
      devices=devices,
  )


def _train(
    request: SweepRequest, setup: Setup, devices: list[Any]
) -> tuple[Mapping[str, _sweep.Selection], Timing]:
  """:func:`_select` for every kind; the one-line errors of running out of
  memory or of a sweep that diverged everywhere."""
  clock = _Clock()
  found = {}
  with rendering.Progress(request.quiet) as bar:
    for kind in request.kinds:
      try:
        found[kind] = _select(request, setup, kind, devices, clock, bar)
      except (errors.OutOfMemory, MemoryError) as e:
        # Past the sweep's estimate (problems.resolve checks it) the memory
        # can still run out: on the device (XLA) or on the host (NumPy).
        shown_error = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise BadInput(
            f'out of memory in the sweep of {setup.model}, {request.epochs} '
            f'epochs, {request.seeds} seed(s) ({shown_error}); '
            'try a smaller --hidden, --epochs, --seeds or --chunk-size'
        ) from None
      except errors.NoChoice:
        raise BadInput(
            f'the training diverged (NaN or infinite loss) at every one of the '
            f'{len(request.grid)} rates with --kind {kind}, so none can be chosen; try a '
            'smaller --lr'
        ) from None
  return found, Timing(sweep=clock.seconds['sweep'], refit=clock.seconds['refit'])


def sweep(request: SweepRequest) -> int:
  """``wdax sweep``: returns the exit status."""
  devices, setup = _prepare(request)
  print(f'data: {rendering.data_line(setup.split.about)}')
  print(f'grid: {rendering.grid_line(request, setup.model, setup.batch_size)}')

  # Everything is checked: from here on, programs are compiled (or loaded).
  cache = caching.enable(request.cache, request.no_cache)
  loaded = caching.Loaded()
  found, timing = _train(request, setup, devices)
  report = summarise(request, setup, found, timing)
  rendering.warn_diverged(report)
  first = next(iter(report.kinds.values())).chunks
  print(
      f'{request.trainings} trainings in {len(request.kinds)} x {first.chunks} chunk(s) of '
      f'{first.chunk_size} on {first.devices} {devices[0].platform} '
      f'device(s): {timing.sweep:.1f} s ({loaded.describe(cache)})'
  )
  rendering.print_tables(report)
  rendering.print_choice(report)
  writing.write(request.out, report.to_json())
  out = shown(request.out)
  print(f'wrote {os.path.join(out, "results.json")} and {os.path.join(out, "sweep.png")}')
  return 0
