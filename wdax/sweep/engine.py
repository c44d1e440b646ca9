r"""The compiled engine: every configuration of a chunk in one program.

A configuration is a point, a fold and a seed. :func:`train` trains a list of
them: a ``jax.jit`` program (``run``) trains a chunk for some epochs and
evaluates it, with ``lax`` loops over epochs and minibatches running over the
whole chunk and only the step and the evaluation ``vmap``\ ped (a vmapped
loop is traced several times over). The chunk's axis is sharded over the
devices with ``shard_map``. The point's values enter as traced scalars, so one
compilation serves the grid, and a refit of the same shapes reuses it.

What makes it quick, each measured (``benchmarks/RESULTS.md``):

- the orders of visit are drawn on the host and sent once, so the program
  holds no random shuffle; data, fold tables and initial parameters go to the
  devices once;
- the programs are traced in the calling thread, with Python's cyclic
  collector paused, and compiled in a thread pool while the initial
  parameters are made;
- on CPU, XLA's first optimisation level compiles the training program about
  a fifth faster than the default and runs it as fast.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from wdax.sweep import checks
from wdax.sweep import folds as _folds
from wdax.sweep import planning
from wdax.sweep.tasks import Task

AXIS = 'config'
_CPU_OPTIONS = {'xla_backend_optimization_level': 1}
# For programs that run a few times, where compiling costs more than running.
_FAST_COMPILE = {'xla_backend_optimization_level': 0}
# The orders of visit are kept on the devices up to this size.
_KEEP_ORDERS = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class Job:
  """Everything the compiled programs close over; none of it is traced."""

  task: Task
  optimizer: Callable[..., optax.GradientTransformation]
  to_optimizer: tuple[str, ...]
  names: tuple[str, ...]
  metrics: tuple[str, ...]
  batch_size: int
  full_batches: bool
  guard: bool

  def loss(self, params, state, batch, key, hp, weight):
    """``(loss, metrics, state)`` of the task's loss, whatever it takes."""
    kwargs = {}
    if self.task.weighted:
      kwargs['weight'] = weight
    if self.task.stateful:
      kwargs['state'] = state
    out = self.task.loss(params, batch, key, hp, **kwargs)
    if self.task.stateful:
      return out
    return (*out, state)

  def tx(self, hp) -> optax.GradientTransformation:
    return self.optimizer(**{n: hp[n] for n in self.to_optimizer})

  def init(self, key, batch):
    """``(params, state)`` from the task's ``init``."""
    out = self.task.init(key, batch)
    return out if self.task.stateful else (out, {})


def _vector(job: Job, loss, metrics) -> jax.Array:
  return jnp.stack([loss, *(metrics[m] for m in job.metrics)]).astype(jnp.float32)


def evaluator(job: Job) -> Callable[..., jax.Array]:
  """``(params, state, hp, data, weights) -> (W, 1 + M)``: the loss and each
  metric over the examples each row of ``weights`` (``(W, n)``) marks."""

  def weighted(params, state, hp, data, weights):
    def one(w):
      loss, metrics, _ = job.loss(params, state, data, None, hp, w)
      return _vector(job, loss, metrics)

    # The forward pass does not depend on the weights, so under this vmap
    # it runs once for every row of them.
    return jax.vmap(one)(weights)

  def per_example(params, state, hp, data, weights):
    def one(example):
      batch = jax.tree.map(lambda a: a[None], example)
      loss, metrics, _ = job.loss(params, state, batch, None, hp, None)
      return _vector(job, loss, metrics)

    values = jax.vmap(one)(data)
    return (weights @ values) / jnp.sum(weights, axis=1, keepdims=True)

  return weighted if job.task.weighted else per_example


def minibatches(job: Job, train_table: np.ndarray) -> np.ndarray:
  """Minibatches per epoch of each row of a training table: only full ones
  when ``job.full_batches``."""
  count = (train_table > 0).sum(axis=1)
  if job.full_batches:
    return count // job.batch_size
  return -(-count // job.batch_size)


def stepper(job: Job):
  """``(carry, batch, weight, key, hp) -> carry``: one training step of one
  configuration, ``carry`` being ``(params, opt_state, state)``."""

  def step(carry, batch, weight, key, hp):
    params, opt_state, state = carry

    def objective(p):
      loss, _, new_state = job.loss(p, state, batch, key, hp, weight)
      return loss, new_state

    (_, state), grads = jax.value_and_grad(objective, has_aux=True)(params)
    updates, opt_state = job.tx(hp).update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, state

  return step


@dataclasses.dataclass
class Programs:
  """A job's jitted programs, and their ahead-of-time compilations
  (futures, keyed by program name and argument shapes)."""

  init: Any
  run: Any
  compiled: dict[Any, Any] = dataclasses.field(default_factory=dict)

  def compile(
      self, pool: concurrent.futures.Executor, name: str, *abstract: Any
  ) -> concurrent.futures.Future:
    """Program ``name`` compiled for arguments shaped like ``abstract``.

    Traced here and compiled in ``pool``: tracing holds the interpreter
    lock, XLA's compilation does not, so the caller goes on meanwhile.
    """
    leaves, treedef = jax.tree.flatten(abstract)
    signature = (name, treedef, tuple((leaf.shape, str(leaf.dtype)) for leaf in leaves))
    if signature not in self.compiled:
      with checks.collector_paused():
        lowered = getattr(self, name).lower(*abstract)
      self.compiled[signature] = pool.submit(lowered.compile)
    return self.compiled[signature]


_PROGRAMS: dict[Any, Programs] = {}


def programs(job: Job, mesh: Mesh) -> Programs:
  """The ``init`` and ``run`` programs of ``job`` on ``mesh``, cached, so a
  refit or a repeated grid with equal settings reuses their compilations.

  ``init`` builds each configuration's training state; ``run`` trains a chunk
  for some epochs and evaluates it on its training and validation examples.
  """
  return checks.remember(_PROGRAMS, (job, mesh), lambda: _programs(job, mesh))


def _programs(job: Job, mesh: Mesh) -> Programs:
  batch_size, step, evaluate = job.batch_size, stepper(job), evaluator(job)

  def init_one(hp, which, seed_params, seed_state):
    params = jax.tree.map(lambda a: a[which], seed_params)
    state = jax.tree.map(lambda a: a[which], seed_state)
    return params, job.tx(hp).init(params), state

  def run(carry, seed, which, split, hp, data, train_table, eval_table, orders, steps, count, start):
    n = jax.tree.leaves(data)[0].shape[0]
    w_train, w_eval = train_table[split], eval_table[split]

    def epoch(e, carry):
      order = orders[which, split, e]
      epoch_keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(s), start + e))(seed)

      def minibatch(i, carry):
        at = i * batch_size
        index = jax.lax.dynamic_slice_in_dim(order, at, batch_size, axis=1)
        ok = at + jnp.arange(batch_size) < n
        weight = jnp.where(ok, jnp.take_along_axis(w_train, index, axis=1), 0.0)
        batch = jax.tree.map(lambda a: a[index], data)
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(epoch_keys, i)
        new = jax.vmap(step)(carry, batch, weight, keys, hp)
        if job.guard:
          # A configuration with fewer minibatches than the chunk's longest
          # skips the steps it has none for.
          total = jnp.sum(weight, axis=1)
          skip = total < batch_size if job.full_batches else total == 0
          new = jax.tree.map(
              lambda old, upd: jnp.where(
                  skip.reshape(skip.shape + (1,) * (upd.ndim - 1)), old, upd
              ),
              carry,
              new,
          )
        return new

      # The step count is traced: a refit with more examples per epoch
      # reuses the grid's program.
      return jax.lax.fori_loop(0, steps, minibatch, carry)

    carry = jax.lax.fori_loop(0, count, epoch, carry)
    params, _, state = carry
    weights = jnp.stack([w_train, w_eval], axis=1)
    metrics = jax.vmap(evaluate, in_axes=(0, 0, 0, None, 0))(params, state, hp, data, weights)
    return carry, metrics

  config = NamedSharding(mesh, PartitionSpec(AXIS))
  replicated = NamedSharding(mesh, PartitionSpec())
  spec, rep = PartitionSpec(AXIS), PartitionSpec()

  def sharded(fn, batched: int, unbatched: int, vmapped: bool = True, **jit_args):
    if vmapped:
      fn = jax.vmap(fn, in_axes=(0,) * batched + (None,) * unbatched)
    return jax.jit(
        jax.shard_map(
            fn, mesh=mesh, in_specs=(spec,) * batched + (rep,) * unbatched, out_specs=spec
        ),
        in_shardings=(config,) * batched + (replicated,) * unbatched,
        out_shardings=config,
        **jit_args,
    )

  cpu = mesh.devices.flat[0].platform == 'cpu'
  return Programs(
      init=sharded(init_one, 2, 2),
      run=sharded(
          run, 5, 7, vmapped=False, donate_argnums=0,
          compiler_options=_CPU_OPTIONS if cpu else None,
      ),
  )


_INITIALIZERS: dict[Any, Any] = {}


def initializer(job: Job) -> Any:
  """``(key, batch) -> (params, state)``, jitted once per task.

  Not vmapped: XLA compiles a vmapped random initialisation several times
  slower, and a grid needs one initialisation per seed, not per
  configuration. It runs once per seed; unoptimised code compiles faster.
  """
  return checks.remember(
      _INITIALIZERS, job.task, lambda: jax.jit(job.init, compiler_options=_FAST_COMPILE)
  )


def first_example(data: Any) -> Any:
  """A batch holding the first example, what ``init`` is called with."""
  return _folds.take(data, slice(0, 1))


def seed_variables(job: Job, data: Any, seeds: Sequence[int]) -> tuple[Any, Any]:
  """Initial ``(params, state)`` per seed, stacked on a leading axis."""
  init, batch = initializer(job), first_example(data)
  made = [init(jax.random.key(s), batch) for s in seeds]
  # Stacked on the host: jnp.stack would compile a program per leaf shape.
  return jax.tree.map(lambda *a: _stack(a), *made)


_TESTERS: dict[Any, Any] = {}


def tester(job: Job, pool: concurrent.futures.Executor, one: Any, test: Any, cpu: bool):
  """``(params, state, hp, test) -> (1 + M,)`` on the whole test set,
  compiling in ``pool``: unoptimised, for it runs a few times. The jitted
  function is kept per job, so its lowering and compilation are reused."""
  def make():
    evaluate = evaluator(job)

    def metrics(params, state, hp, data):
      weights = jnp.ones((1, jax.tree.leaves(data)[0].shape[0]), jnp.float32)
      return evaluate(params, state, hp, data, weights)[0]

    return jax.jit(metrics)

  fn = checks.remember(_TESTERS, (job.task, job.metrics), make)
  with checks.collector_paused():
    lowered = fn.lower(*one, test)
  return pool.submit(lowered.compile, _FAST_COMPILE if cpu else None)


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
    job: Job,
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
) -> Trained:
  """Trains every configuration ``(hp[:][i], seed[i], split[i])``.

  ``split[i]`` picks the row of ``train_table`` (1 where the configuration
  trains) and of ``eval_table`` (1 where it is validated). With ``rungs``,
  rung by rung: each rung's configurations in chunks of the first rung's
  size, so every rung runs the one compiled program; a configuration that
  goes on continues from its state at the end of the rung before (the
  parameters, optimiser and model state, leave the devices and come back).
  The evaluations are those of ``evals`` and the end of every rung.
  """
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
  mesh = Mesh(np.asarray(devices), (AXIS,))
  compiled = programs(job, mesh)
  distinct, which = np.unique(seed, return_inverse=True)
  seed, which, split = (a.astype(np.int32) for a in (seed, which, split))
  hp = {n: v.astype(np.float32) for n, v in hp.items()}
  config = NamedSharding(mesh, PartitionSpec(AXIS))
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

  batches = minibatches(job, train_table)
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
    example = jax.eval_shape(initializer(job), jax.random.key(0), first_example(data))
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
    run_future = compiled.compile(pool, 'run', *run_args)
    init_future = compiled.compile(pool, 'init', *init_args)
    with checks.collector_paused():
      seed_params, seed_state = planning.put(seed_variables(job, data, distinct.tolist()), replicated)
    test_future = None
    if test is not None:
      one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), (seed_params, seed_state))
      hp_one = {n: jax.ShapeDtypeStruct((), np.float32) for n in hp}
      test_future = tester(job, pool, (*one, hp_one), test, cpu)
    init, run = init_future.result(), run_future.result()
    alive, carried = np.arange(total), None
    for r in range(len(schedule.ends)):
      last[alive] = r
      more = r + 1 < len(schedule.ends)
      # Padded with copies of the last configuration so every chunk has one shape.
      padded = np.concatenate([alive, np.repeat(alive[-1:], -len(alive) % size)])
      held = []
      for c in range(len(padded) // size):
        part = padded[c * size : (c + 1) * size]
        real = part[: min(size, len(alive) - c * size)]
        args = planning.put((seed[part], which[part], split[part], {n: v[part] for n, v in hp.items()}), config)
        if carried is None:
          carry = init(args[3], args[1], seed_params, seed_state)
        else:
          rows = np.searchsorted(carried[0], part)
          carry = planning.put(jax.tree.map(lambda a, rows=rows: a[rows], carried[1]), config)
        steps = np.int32(batches[split[part]].max())
        for j in range(starts[r], stops[r]):
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
        if more:
          held.append(planning.host(carry))
        elif keep_params:
          final_vars.append(planning.host((carry[0], carry[2])))
      if more:
        going = np.asarray(schedule.advance(r, alive, metrics[alive, stops[r] - 1]))
        # Host copies of the state of ``alive`` (in order; then the padding).
        carried = (alive, jax.tree.map(lambda *a: _concatenate(a), *held))
        alive = going
  params = model_state = None
  if keep_params:
    params, model_state = jax.tree.map(lambda *a: _concatenate(a)[:total], *final_vars)
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


def _is_key(a: Any) -> bool:
  return jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def _stack(arrays: Sequence[Any]) -> Any:
  """Arrays stacked on a new leading axis, on the host but for random keys."""
  if _is_key(arrays[0]):
    return jnp.stack(arrays)
  return np.stack([np.asarray(a) for a in arrays])


def _concatenate(arrays: Sequence[Any]) -> Any:
  if _is_key(arrays[0]):
    return jnp.concatenate(arrays)
  return np.concatenate(arrays)


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
