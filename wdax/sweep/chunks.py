r"""Training a list of configurations on the engine's programs: chunk by
chunk, and rung by rung for a pruned grid.

:func:`train` pads the configurations into chunks of one shape, so one
compiled ``run`` serves every chunk, every rung and a refit of the same
shapes. What makes it quick, each measured (``benchmarks/RESULTS.md``):

- the orders of visit are drawn on the host and sent once, so the program
  holds no random shuffle; data, fold tables and initial parameters go to the
  devices once;
- the programs are traced in the calling thread, with Python's cyclic
  collector paused, and compiled in a thread pool while the initial
  parameters are made.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from wdax.sweep import _checkpoint
from wdax.sweep import _resume
from wdax.sweep import checks
from wdax.sweep import engine
from wdax.sweep import folds as _folds
from wdax.sweep import planning

# The orders of visit are kept on the devices up to this size.
_KEEP_ORDERS = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class Rungs:
  """A pruned schedule for :func:`train`.

  Rung ``i`` trains ``sizes[i]`` configurations on to epoch ``ends[i]``
  (rung 0 all of them, from the start). After each rung but the last,
  ``advance(i, alive, metrics)`` returns the sorted configuration indices
  that go on, ``sizes[i + 1]`` of ``alive`` (sorted, those rung ``i``
  trained), from their metrics at epoch ``ends[i]``, shaped
  ``(len(alive), 2, 1 + M)`` (training, validation).
  """

  ends: tuple[int, ...]
  sizes: tuple[int, ...]
  advance: Callable[[int, np.ndarray, np.ndarray], np.ndarray] | None


@dataclasses.dataclass(frozen=True)
class Trained:
  metrics: np.ndarray  # (configurations, evaluations, 2, 1 + M); NaN where not trained
  test: np.ndarray | None  # (configurations, evaluations, 1 + M)
  epochs: np.ndarray  # (evaluations,): epochs trained at each evaluation
  params: Any  # stacked over configurations, or None
  state: Any
  chunk_size: int
  chunks: int
  devices: int
  bytes_per_configuration: int
  rung: np.ndarray  # (configurations,): the last rung each trained in
  rungs: np.ndarray  # (rungs,): the epoch each rung ends at
  configuration_epochs: int


def _like(a: Any) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(a.shape, a.dtype)


def train(
    job: engine.Job,
    data: Any,
    train_table: np.ndarray,
    eval_table: np.ndarray,
    hp: dict[str, np.ndarray],
    seed: np.ndarray,
    split: np.ndarray,
    *,
    epochs: int,
    evals: int,
    devices: Sequence[Any],
    per_configuration: int,
    chunk_size: int | None = None,
    memory: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep_params: bool = False,
    test: Any = None,
    exact_chunk: int | None = None,
    rungs: Rungs | None = None,
    saving: _resume.Saving | None = None,
) -> Trained:
  """Trains every configuration ``(hp[:][i], seed[i], split[i])``.

  ``split[i]`` picks the row of ``train_table`` (1 where the configuration
  trains) and of ``eval_table`` (1 where it is validated). With ``rungs``,
  rung by rung: each rung's configurations in chunks of the first rung's
  size, so every rung runs the one compiled program; a configuration that
  goes on continues from its state at the end of the rung before (the
  parameters, optimiser and model state, leave the devices and come back).
  The evaluations are those of ``evals`` and the end of every rung.

  With ``saving``, each chunk's progress is saved after its segments
  (:class:`~wdax.sweep._resume.Saving`), and what it holds already is
  restored instead of trained: the parts' states and metrics, and the
  rungs' decisions.
  """
  saving = saving or _resume.Saving(None, 'grid')
  total = len(seed)
  schedule = rungs or Rungs((epochs,), (total,), None)
  if len(schedule.ends) > 1 and (keep_params or test is not None):
    raise ValueError('train: keep_params and test are for a training without rungs.')
  if exact_chunk is not None:
    size, chunks = exact_chunk, -(-total // exact_chunk)
  else:
    size, chunks = planning.chunking(
        total, len(devices), per_configuration, chunk_size, memory,
        planning.default_budget(devices),
    )
  saving.check('chunk_size', size)
  mesh = Mesh(np.asarray(devices), (engine.AXIS,))
  compiled = engine.programs(job, mesh)
  distinct, which = np.unique(seed, return_inverse=True)
  seed, which, split = (a.astype(np.int32) for a in (seed, which, split))
  hp = {n: v.astype(np.float32) for n, v in hp.items()}
  config = NamedSharding(mesh, PartitionSpec(engine.AXIS))
  replicated = NamedSharding(mesh, PartitionSpec())
  # Sent to the devices once, not with every call.
  placed = planning.put(
      (data, train_table.astype(np.float32), eval_table.astype(np.float32)), replicated
  )
  n = train_table.shape[1]
  evaluated = planning.evaluation_points(epochs, evals)
  points = np.union1d(evaluated, schedule.ends)
  segments = [range(a, b) for a, b in zip([0, *points[:-1]], points)]
  capacity = -(-n // job.batch_size) * job.batch_size
  # The orders of every segment have one shape, so one program runs them
  # all; the rungs only shorten segments, so a refit without them (and of
  # the same settings) runs it too.
  longest = int(np.diff(evaluated, prepend=0).max())
  orders_shape = (len(distinct), len(train_table), longest, capacity)
  keep_orders = len(segments) * math.prod(orders_shape) * 4 <= _KEEP_ORDERS
  kept = {}

  def segment_orders(j: int) -> Any:
    if j in kept:
      return kept[j]
    out = planning.put(
        _folds.orders(distinct.tolist(), train_table, segments[j], *orders_shape[2:]),
        replicated,
    )
    if keep_orders:
      kept[j] = out
    return out

  batches = engine.minibatches(job, train_table)
  cpu = devices[0].platform == 'cpu'
  starts = np.searchsorted(points, (0, *schedule.ends[:-1]), side='right')
  stops = np.searchsorted(points, schedule.ends, side='right')
  calls = sum(-(-k // size) * (b - a) for k, a, b in zip(schedule.sizes, starts, stops))
  metrics = np.full((total, len(points), 2, 1 + len(job.metrics)), np.nan, np.float32)
  tested = np.full((total, len(points), 1 + len(job.metrics)), np.nan, np.float32)
  last = np.zeros(total, np.int64)
  final_vars = []
  done = 0
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    # Compile the two programs while the parameters are initialised, and the
    # test program while the first chunk trains.
    example = jax.eval_shape(engine.initializer(job), jax.random.key(0), engine.first_example(data))
    seeded = jax.tree.map(lambda a: jax.ShapeDtypeStruct((len(distinct), *a.shape), a.dtype), example)
    column = {n: jax.ShapeDtypeStruct((size,), np.float32) for n in hp}
    ints = jax.ShapeDtypeStruct((size,), np.int32)
    init_args = (column, ints, *seeded)
    with checks.collector_paused():
      shapes = jax.eval_shape(compiled.init, *init_args)
    scalar = jax.ShapeDtypeStruct((), np.int32)
    run_args = (
        shapes, ints, ints, ints, column, *jax.tree.map(_like, placed),
        jax.ShapeDtypeStruct(orders_shape, np.int32), scalar, scalar, scalar,
    )
    if not saving.finished:
      run_future = compiled.compile(pool, 'run', *run_args)
      init_future = compiled.compile(pool, 'init', *init_args)
      with checks.collector_paused():
        seed_params, seed_state = planning.put(engine.seed_variables(job, data, distinct.tolist()), replicated)
      test_future = None
      if test is not None:
        one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), (seed_params, seed_state))
        hp_one = {n: jax.ShapeDtypeStruct((), np.float32) for n in hp}
        test_future = engine.tester(job, pool, (*one, hp_one), test, cpu)
      init, run = init_future.result(), run_future.result()
    alive, carried = np.arange(total), None
    for r in range(len(schedule.ends)):
      if r:
        alive = saving.decision(
            r, lambda r=r, alive=alive: schedule.advance(r - 1, alive, metrics[alive, stops[r - 1] - 1])
        )
      last[alive] = r
      more = r + 1 < len(schedule.ends)
      # Padded with copies of the last configuration so every chunk has one shape.
      padded = np.concatenate([alive, np.repeat(alive[-1:], -len(alive) % size)])
      held = []
      for c in range(len(padded) // size):
        part = padded[c * size : (c + 1) * size]
        real = part[: min(size, len(alive) - c * size)]
        saved = saving.part(r, c)
        begun = 0 if saved is None else saved.segments
        if saved is not None:
          metrics[real, starts[r] : starts[r] + begun] = saved.arrays['metrics']
          if test is not None:
            tested[real, starts[r] : starts[r] + begun] = saved.arrays['tested']
          done += begun
          if progress is not None and begun:
            progress(done, calls)
        if saved is not None and saved.complete:
          if more or keep_params:
            host_carry = _checkpoint.unflatten(shapes, saved.arrays, 'carry')
            (held if more else final_vars).append(host_carry if more else (host_carry[0], host_carry[2]))
          continue
        args = planning.put((seed[part], which[part], split[part], {n: v[part] for n, v in hp.items()}), config)
        if saved is not None:
          carry = planning.put(_checkpoint.unflatten(shapes, saved.arrays, 'carry'), config)
        elif carried is None:
          carry = init(args[3], args[1], seed_params, seed_state)
        else:
          rows = np.searchsorted(carried[0], part)
          carry = planning.put(jax.tree.map(lambda a, rows=rows: a[rows], carried[1]), config)
        steps = np.int32(batches[split[part]].max())
        for j in range(starts[r] + begun, stops[r]):
          segment = segments[j]
          carry, m = run(
              carry, *args, *placed, segment_orders(j), steps, np.int32(len(segment)),
              np.int32(segment.start),
          )
          metrics[real, j] = planning.host(m)[: len(real)]
          if test_future is not None:
            tested[real, j] = _test(
                test_future.result(), planning.host((carry[0], carry[2])), len(real), hp, part, test
            )
          done += 1
          if progress is not None:
            progress(done, calls)
          complete = bool(j + 1 == stops[r])
          saving.after_segment(
              r, c, segments=j + 1 - starts[r], complete=complete,
              configuration_epochs=len(real) * int(points[j] - (0, *schedule.ends)[r]),
              arrays=_saved(
                  metrics, tested if test is not None else None, real, slice(starts[r], j + 1),
                  carry if not complete or more or keep_params else None,
              ),
          )
        if more:
          held.append(planning.host(carry))
        elif keep_params:
          final_vars.append(planning.host((carry[0], carry[2])))
      if more:
        # Host copies of the state of ``alive`` (in order; then the padding).
        carried = (alive, jax.tree.map(lambda *a: engine.concatenate(a), *held))
    saving.finish()
  params = model_state = None
  if keep_params:
    params, model_state = jax.tree.map(lambda *a: engine.concatenate(a)[:total], *final_vars)
  steps_per_rung = np.diff((0, *schedule.ends))
  return Trained(
      metrics=metrics,
      test=tested if test is not None else None,
      epochs=points,
      params=params,
      state=model_state,
      chunk_size=size,
      chunks=chunks,
      devices=len(devices),
      bytes_per_configuration=per_configuration,
      rung=last,
      rungs=np.asarray(schedule.ends),
      configuration_epochs=int(np.bincount(last, minlength=len(steps_per_rung)) @ np.cumsum(steps_per_rung)),
  )


def _saved(
    metrics: np.ndarray, tested: np.ndarray | None, real: np.ndarray, segments: slice, carry: Any
) -> Callable[[], dict[str, Any]]:
  """What a chunk's save holds, made when the save is due: its metrics over
  the rung's ``segments`` so far, and its state unless ``carry`` is None."""

  def arrays() -> dict[str, Any]:
    out = {'metrics': metrics[real, segments]}
    if tested is not None:
      out['tested'] = tested[real, segments]
    if carry is not None:
      out.update(_checkpoint.flatten(planning.host(carry), 'carry'))
    return out

  return arrays


def _test(fn: Any, variables: Any, real: int, hp: dict, part: slice, test: Any) -> np.ndarray:
  """The test metrics of the first ``real`` models of a chunk, one at a
  time: a held-out set is for the few models of a refit, not for padding."""
  params, state = variables
  rows = []
  for i in range(real):
    pick = jax.tree.map(lambda a, i=i: a[i], (params, state))
    values = {n: np.float32(v[part][i]) for n, v in hp.items()}
    rows.append(np.asarray(fn(*pick, values, test)))
  return np.stack(rows)
