r"""The compiled programs: every configuration of a chunk in one program.

A configuration is a point, a fold and a seed. A ``jax.jit`` program
(``run``, of :func:`programs`) trains a chunk of them for some epochs and
evaluates it, with ``lax`` loops over epochs and minibatches running over the
whole chunk and only the step and the evaluation ``vmap``\ ped (a vmapped
loop is traced several times over). The chunk's axis is sharded over the
devices with ``shard_map``. The point's values enter as traced scalars, so one
compilation serves the grid, and a refit of the same shapes reuses it.
:mod:`~wdax.sweep._runner` runs these programs over a list of configurations.

On CPU, XLA's first optimisation level compiles the training program about a
fifth faster than the default and runs it as fast (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from wdax.sweep import _cache
from wdax.sweep import _collector
from wdax.sweep import _job
from wdax.sweep import _placement
from wdax.sweep import folds as _folds
from wdax.sweep._job import Carry
from wdax.sweep._job import Job

AXIS = 'config'
_CPU_OPTIONS = {'xla_backend_optimization_level': 1}
# For programs that run a few times, where compiling costs more than running.
_FAST_COMPILE = {'xla_backend_optimization_level': 0}


class Inputs(NamedTuple):
  """What tells a chunk's configurations apart, one entry per
  configuration: its seed, that seed's index among the distinct seeds (the
  row of the initial parameters and of the orders of visit), its training
  split (the row of the tables) and its hyperparameter values."""

  seed: Any
  which: Any
  split: Any
  hp: dict[str, Any]


class Shared(NamedTuple):
  """What every configuration reads, sent to the devices once: the data and
  the tables, ``(splits, n)``, of the examples each split trains on and is
  validated on."""

  data: Any
  train_table: Any
  eval_table: Any


class Segment(NamedTuple):
  """The epochs one call of ``run`` trains: ``epochs`` of them from epoch
  ``start``, each of ``steps`` minibatches, visiting the examples in
  ``orders[which, split, e]`` in the segment's epoch ``e``."""

  orders: Any
  steps: Any
  epochs: Any
  start: Any


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
      with _collector.collector_paused():
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
  return _cache.remember(_PROGRAMS, (job, mesh), lambda: _programs(job, mesh))


def _programs(job: Job, mesh: Mesh) -> Programs:
  def init_one(hp, which, seed_params, seed_state):
    params = jax.tree.map(lambda a: a[which], seed_params)
    state = jax.tree.map(lambda a: a[which], seed_state)
    return Carry(params, job.tx(hp).init(params), state)

  cpu = mesh.devices.flat[0].platform == 'cpu'
  return Programs(
      # A gather and the optimiser's zeros, once a chunk: not worth optimising.
      init=_sharded(
          jax.vmap(init_one, in_axes=(0, 0, None, None)), mesh, 2, 2,
          compiler_options=_FAST_COMPILE if cpu else None,
      ),
      run=_sharded(
          trainer(job), mesh, 2, 2, donate_argnums=0,
          compiler_options=_CPU_OPTIONS if cpu else None,
      ),
  )


def _sharded(fn: Callable[..., Any], mesh: Mesh, batched: int, unbatched: int, **jit_args: Any):
  """``fn`` jitted, its first ``batched`` arguments and its outputs split
  over the configuration axis of ``mesh``, the others replicated."""
  config = NamedSharding(mesh, PartitionSpec(AXIS))
  replicated = NamedSharding(mesh, PartitionSpec())
  spec, rep = PartitionSpec(AXIS), PartitionSpec()
  return jax.jit(
      jax.shard_map(
          fn, mesh=mesh, in_specs=(spec,) * batched + (rep,) * unbatched, out_specs=spec
      ),
      in_shardings=(config,) * batched + (replicated,) * unbatched,
      out_shardings=config,
      **jit_args,
  )


def trainer(job: Job) -> Callable[[Carry, Inputs, Shared, Segment], tuple[Carry, jax.Array]]:
  """``(carry, inputs, shared, segment) -> (carry, metrics)``: a chunk's
  configurations trained through one segment, then evaluated on their
  training and validation examples (``metrics``: ``(chunk, 2, 1 + M)``)."""
  evaluate = _job.evaluator(job)

  def run(carry: Carry, inputs: Inputs, shared: Shared, segment: Segment):
    minibatch = _minibatch(job, inputs, shared)

    def epoch(e, carry):
      order = segment.orders[inputs.which, inputs.split, e]
      epoch_keys = jax.vmap(
          lambda s: jax.random.fold_in(jax.random.key(s), segment.start + e)
      )(inputs.seed)
      # The step count is traced: a refit with more examples per epoch
      # reuses the grid's program.
      return jax.lax.fori_loop(
          0, segment.steps, lambda i, carry: minibatch(i, carry, order, epoch_keys), carry
      )

    carry = jax.lax.fori_loop(0, segment.epochs, epoch, carry)
    weights = jnp.stack(
        [shared.train_table[inputs.split], shared.eval_table[inputs.split]], axis=1
    )
    metrics = jax.vmap(evaluate, in_axes=(0, 0, 0, None, 0))(
        carry.params, carry.state, inputs.hp, shared.data, weights
    )
    return carry, metrics

  return run


def _minibatch(job: Job, inputs: Inputs, shared: Shared):
  """``(i, carry, order, epoch_keys) -> carry``: minibatch ``i`` of an
  epoch visiting the examples in ``order``, a step of every configuration."""
  batch_size, step = job.batch_size, _job.stepper(job)
  n = jax.tree.leaves(shared.data)[0].shape[0]
  w_train = shared.train_table[inputs.split]

  def minibatch(i, carry, order, epoch_keys):
    at = i * batch_size
    index = jax.lax.dynamic_slice_in_dim(order, at, batch_size, axis=1)
    ok = at + jnp.arange(batch_size) < n
    weight = jnp.where(ok, jnp.take_along_axis(w_train, index, axis=1), 0.0)
    batch = jax.tree.map(lambda a: a[index], shared.data)
    keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(epoch_keys, i)
    new = jax.vmap(step)(carry, batch, weight, keys, inputs.hp)
    if not job.guard:
      return new
    # A configuration with fewer minibatches than the chunk's longest skips
    # the steps it has none for.
    total = jnp.sum(weight, axis=1)
    skip = total < batch_size if job.full_batches else total == 0
    return jax.tree.map(
        lambda old, upd: jnp.where(skip.reshape(skip.shape + (1,) * (upd.ndim - 1)), old, upd),
        carry,
        new,
    )

  return minibatch


_INITIALIZERS: dict[Any, Any] = {}


def initializer(job: Job) -> Any:
  """``(key, batch) -> (params, state)``, jitted once per task.

  Not vmapped: XLA compiles a vmapped random initialisation several times
  slower, and a grid needs one initialisation per seed, not per
  configuration. It runs once per seed; unoptimised code compiles faster.
  """
  return _cache.remember(
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
  return jax.tree.map(lambda *a: _placement.stack(a), *made)


_TESTERS: dict[Any, Any] = {}


def tester(job: Job, pool: concurrent.futures.Executor, one: Any, test: Any, cpu: bool):
  """``(params, state, hp, test) -> (1 + M,)`` on the whole test set,
  compiling in ``pool``: unoptimised, for it runs a few times. The jitted
  function is kept per job, so its lowering and compilation are reused."""
  def make():
    evaluate = _job.evaluator(job)

    def metrics(params, state, hp, data):
      weights = jnp.ones((1, jax.tree.leaves(data)[0].shape[0]), jnp.float32)
      return evaluate(params, state, hp, data, weights)[0]

    return jax.jit(metrics)

  fn = _cache.remember(_TESTERS, (job.task, job.metrics), make)
  with _collector.collector_paused():
    lowered = fn.lower(*one, test)
  return pool.submit(lowered.compile, _FAST_COMPILE if cpu else None)
