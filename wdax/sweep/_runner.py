r"""Training configurations on the compiled programs, following a plan.

:func:`train` makes the :class:`~wdax.sweep._plan.Plan` of a
:class:`Training` (chunks, rungs, segments), opens a :class:`Session` (the
programs compiled, the data and initial parameters on the devices), then
runs one segment of one chunk at a time with :func:`step`, each a call of
the compiled ``run``, until the :class:`State` says it is done. One padded
chunk shape serves every chunk, every rung and a refit of the same shapes.
What makes it quick, each measured (``benchmarks/RESULTS.md``):

- the orders of visit are drawn on the host and sent once, so the program
  holds no random shuffle; data, fold tables and initial parameters go to the
  devices once;
- the programs are traced in the calling thread, with Python's cyclic
  collector paused, and compiled in a thread pool while the initial
  parameters are made.

Where a checkpoint hooks: everything that changes between two segments is
the :class:`~wdax.sweep._state.State` (:mod:`~wdax.sweep._state`). After any
:func:`step`, ``state.on_host()`` is a copy holding only host arrays, which
can be saved; a run resumes by opening a new :class:`Session` for the same
:class:`Training` and going on with :func:`step` from the loaded state,
which gives the numbers of a run that never stopped
(``tests/test_sweep_runner.py``): the orders of visit, the keys and the
chunks' inputs are functions of the position alone. With a
:class:`~wdax.sweep._resume.Saving`, :func:`train` restores what is saved
and :func:`step` saves a chunk after its segments, through the hooks of
:mod:`~wdax.sweep._saving`.
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

from wdax.sweep import _collector
from wdax.sweep import _job
from wdax.sweep import _memory
from wdax.sweep import _orders
from wdax.sweep import _placement
from wdax.sweep import _plan
from wdax.sweep import _programs
from wdax.sweep import _resume
from wdax.sweep import _saving
from wdax.sweep import _state
from wdax.sweep._job import Carry
from wdax.sweep._state import State

# The orders of visit are kept on the devices up to this size.
_KEEP_ORDERS = 64 * 2**20


@dataclasses.dataclass(frozen=True)
class Training:
  """What :func:`train` trains: configuration ``i`` is ``(hp[:][i], seed[i],
  split[i])``, ``split[i]`` picking the row of ``train_table`` (1 where the
  configuration trains) and of ``eval_table`` (1 where it is validated).

  ``rungs`` trains rung by rung (a pruned grid); ``keep_params`` keeps the
  final parameters and ``test`` evaluates on held-out data, both only
  without rungs. ``exact_chunk`` fixes the chunk size; otherwise it follows
  from ``chunk_size``, or ``memory`` and ``per_configuration``.
  """

  job: _job.Job
  data: Any
  train_table: np.ndarray
  eval_table: np.ndarray
  hp: dict[str, np.ndarray]
  seed: np.ndarray
  split: np.ndarray
  epochs: int
  evals: int
  devices: Sequence[Any]
  per_configuration: int
  chunk_size: int | None = None
  memory: int | None = None
  exact_chunk: int | None = None
  keep_params: bool = False
  test: Any = None
  rungs: _plan.Rungs | None = None

  def __post_init__(self):
    if self.rungs is not None and len(self.rungs.ends) > 1 and (
        self.keep_params or self.test is not None
    ):
      raise ValueError('train: keep_params and test are for a training without rungs.')


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


def train(
    training: Training, progress: Callable[[int, int], None] | None = None,
    saving: _resume.Saving | None = None,
) -> Trained:
  """Trains every configuration of ``training``: with ``rungs``, rung by
  rung, each rung's configurations in chunks of the first rung's size, so
  every rung runs the one compiled program; a configuration that goes on
  continues from its state at the end of the rung before (the parameters,
  optimiser and model state leave the devices and come back). The
  evaluations are those of ``evals`` and the end of every rung.
  ``progress(done, calls)`` follows each compiled call.

  With ``saving``, each chunk's progress is saved after its segments, and
  what it holds already is restored instead of trained
  (:func:`~wdax.sweep._saving.restore`);
  a finished training compiles nothing.
  """
  plan = make_plan(training)
  saving = saving or _resume.Saving(None, 'grid')
  saving.check('chunk_size', plan.chunk_size)
  state = State.start(plan, len(training.job.metrics), training.test is not None)
  if saving.store is not None:
    _saving.restore(saving, training.rungs, plan, state, lambda: _carry_shape(training, plan))
    if progress is not None and state.done:
      progress(state.done, plan.calls)
  if not state.finished_all(plan):
    with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
      session = Session.open(training, plan, pool, saving)
      while not state.finished_all(plan):
        step(session, state)
        if progress is not None:
          progress(state.done, plan.calls)
  saving.finish()
  return trained(training, plan, state)


def make_plan(training: Training) -> _plan.Plan:
  """The plan of ``training``: its chunk size, rungs and segments."""
  total, devices = len(training.seed), training.devices
  if training.exact_chunk is not None:
    size, chunks = training.exact_chunk, -(-total // training.exact_chunk)
  else:
    size, chunks = _plan.chunking(
        total, len(devices), training.per_configuration, training.chunk_size,
        training.memory, _memory.default_budget(devices),
    )
  return _plan.make(
      total, epochs=training.epochs, evals=training.evals, chunk_size=size, chunks=chunks,
      rungs=training.rungs,
  )


class _Orders:
  """The orders of visit of each segment, on the devices: drawn when first
  needed, and kept when all of them fit in ``_KEEP_ORDERS`` bytes."""

  def __init__(self, plan: _plan.Plan, seeds: np.ndarray, train_table: np.ndarray,
               capacity: int, sharding: NamedSharding):
    self.plan, self.seeds, self.table, self.sharding = plan, seeds, train_table, sharding
    self.shape = (len(seeds), len(train_table), plan.segment_length, capacity)
    self.keep = len(plan.segments) * math.prod(self.shape) * 4 <= _KEEP_ORDERS
    self.kept: dict[int, Any] = {}

  def __call__(self, j: int) -> Any:
    if j in self.kept:
      return self.kept[j]
    out = _placement.put(
        _orders.orders(self.seeds.tolist(), self.table, self.plan.segments[j], *self.shape[2:]),
        self.sharding,
    )
    if self.keep:
      self.kept[j] = out
    return out


@dataclasses.dataclass
class Session:
  """A training's compiled programs and what sits on the devices for all of
  its segments: what :func:`step` runs with, besides the :class:`State`."""

  training: Training
  plan: _plan.Plan
  mesh: Mesh
  inputs: _programs.Inputs  # of every configuration, on the host
  shared: _programs.Shared  # on the devices
  orders: _Orders
  init: Any
  run: Any
  seeds: Carry  # the initial (params, state) per distinct seed; no opt_state
  tester: concurrent.futures.Future | None
  batches: np.ndarray  # minibatches per epoch of each split
  saving: _resume.Saving
  placed: tuple[Any, _programs.Inputs] | None = None  # the last chunk's inputs

  @property
  def config(self) -> NamedSharding:
    return NamedSharding(self.mesh, PartitionSpec(_programs.AXIS))

  def chunk_inputs(self, rows: np.ndarray) -> _programs.Inputs:
    """The inputs of the configurations ``rows``, on the devices; sent
    once for a chunk's segments."""
    key = rows.tobytes()
    if self.placed is None or self.placed[0] != key:
      inputs = jax.tree.map(lambda a: a[rows], self.inputs)
      self.placed = (key, _placement.put(inputs, self.config))
    return self.placed[1]

  @classmethod
  def open(
      cls, training: Training, plan: _plan.Plan, pool: concurrent.futures.Executor,
      saving: _resume.Saving | None = None,
  ) -> Session:
    """Places the data, makes the initial parameters and compiles the
    programs (in ``pool``: the two programs while the parameters are made,
    the test program while the first chunk trains)."""
    job, mesh = training.job, Mesh(np.asarray(training.devices), (_programs.AXIS,))
    distinct, which = np.unique(training.seed, return_inverse=True)
    inputs = _programs.Inputs(
        training.seed.astype(np.int32), which.astype(np.int32), training.split.astype(np.int32),
        {n: v.astype(np.float32) for n, v in training.hp.items()},
    )
    replicated = NamedSharding(mesh, PartitionSpec())
    shared = _placement.put(_programs.Shared(
        training.data, training.train_table.astype(np.float32),
        training.eval_table.astype(np.float32),
    ), replicated)
    capacity = -(-training.train_table.shape[1] // job.batch_size) * job.batch_size
    orders = _Orders(plan, distinct, training.train_table, capacity, replicated)
    compiled = _programs.programs(job, mesh)
    init_args, run_args = _abstract(training, plan, distinct, shared, orders, compiled)
    run_future = compiled.compile(pool, 'run', *run_args)
    init_future = compiled.compile(pool, 'init', *init_args)
    with _collector.collector_paused():
      seed_params, seed_state = _placement.put(
          _programs.seed_variables(job, training.data, distinct.tolist()), replicated
      )
    tester = None
    if training.test is not None:
      one = jax.tree.map(
          lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), (seed_params, seed_state)
      )
      hp_one = {n: jax.ShapeDtypeStruct((), np.float32) for n in training.hp}
      cpu = training.devices[0].platform == 'cpu'
      tester = _programs.tester(job, pool, (*one, hp_one), training.test, cpu)
    return cls(
        training=training, plan=plan, mesh=mesh, inputs=inputs, shared=shared, orders=orders,
        init=init_future.result(), run=run_future.result(),
        seeds=Carry(seed_params, None, seed_state), tester=tester,
        batches=_job.minibatches(job, training.train_table),
        saving=saving or _resume.Saving(None, 'grid'),
    )

  def trained(self, state: State) -> Trained:
    """The result of a finished training."""
    return trained(self.training, self.plan, state)


def trained(training: Training, plan: _plan.Plan, state: State) -> Trained:
  """The result of a finished training."""
  params = model_state = None
  if training.keep_params:
    params, model_state = jax.tree.map(
        lambda *a: _placement.concatenate(a)[: plan.configurations], *state.kept
    )
  return Trained(
      metrics=state.metrics, test=state.tested, epochs=plan.points, params=params,
      state=model_state, chunk_size=plan.chunk_size, chunks=plan.chunks,
      devices=len(training.devices), bytes_per_configuration=training.per_configuration,
      rung=state.last, rungs=np.asarray([r.end for r in plan.rungs]),
      configuration_epochs=plan.configuration_epochs(state.last),
  )


def _like(a: Any) -> jax.ShapeDtypeStruct:
  return jax.ShapeDtypeStruct(a.shape, a.dtype)


def _init_args(training: Training, plan: _plan.Plan, seeds: int) -> tuple[Any, ...]:
  """The shapes of the ``init`` program's arguments, for ``seeds`` distinct seeds."""
  example = jax.eval_shape(
      _programs.initializer(training.job), jax.random.key(0), _programs.first_example(training.data)
  )
  seeded = jax.tree.map(lambda a: jax.ShapeDtypeStruct((seeds, *a.shape), a.dtype), example)
  column = {n: jax.ShapeDtypeStruct((plan.chunk_size,), np.float32) for n in training.hp}
  ints = jax.ShapeDtypeStruct((plan.chunk_size,), np.int32)
  return (column, ints, *seeded)


def _carry_shape(training: Training, plan: _plan.Plan) -> Carry:
  """The shapes of a chunk's :class:`Carry`, as the ``init`` program makes it."""
  mesh = Mesh(np.asarray(training.devices), (_programs.AXIS,))
  compiled = _programs.programs(training.job, mesh)
  with _collector.collector_paused():
    return jax.eval_shape(
        compiled.init, *_init_args(training, plan, len(np.unique(training.seed)))
    )


def _abstract(training: Training, plan: _plan.Plan, distinct: np.ndarray,
              shared: _programs.Shared, orders: _Orders, compiled: _programs.Programs):
  """The shapes of the ``init`` and ``run`` programs' arguments."""
  init_args = _init_args(training, plan, len(distinct))
  with _collector.collector_paused():
    carry = jax.eval_shape(compiled.init, *init_args)
  column, ints = init_args[0], init_args[1]
  scalar = jax.ShapeDtypeStruct((), np.int32)
  run_args = (
      carry, _programs.Inputs(ints, ints, ints, column), jax.tree.map(_like, shared),
      _programs.Segment(jax.ShapeDtypeStruct(orders.shape, np.int32), scalar, scalar, scalar),
  )
  return init_args, run_args


def step(session: Session, state: State) -> None:
  """Runs the next segment of ``state``'s chunk and advances ``state`` past
  it: to the chunk's next segment, the rung's next chunk, or the next rung."""
  plan, j = session.plan, state.segment
  chunk = plan.chunk(state.alive, state.chunk)
  inputs = session.chunk_inputs(chunk.rows)
  carry = _carry(session, state, chunk.rows, inputs)
  segment = plan.segments[j]
  steps = np.int32(session.batches[session.inputs.split[chunk.rows]].max())
  carry, metrics = session.run(
      carry, inputs, session.shared,
      _programs.Segment(session.orders(j), steps, np.int32(len(segment)), np.int32(segment.start)),
  )
  real = chunk.rows[: chunk.real]
  state.metrics[real, j] = _placement.host(metrics)[: chunk.real]
  if state.tested is not None and session.tester is not None:
    state.tested[real, j] = _test(
        session.tester.result(), _placement.host((carry.params, carry.state)),
        {n: v[real] for n, v in session.inputs.hp.items()}, chunk.real, session.training.test,
    )
  state.carry, state.segment, state.done = carry, j + 1, state.done + 1
  complete = state.segment == plan.rungs[state.rung].segments.stop
  keeps = not complete or _keeps(session.training, plan, state)
  _saving.after_segment(session.saving, plan, state, chunk, carry if keeps else None)
  if complete:
    _end_chunk(session, state, carry)


def _keeps(training: Training, plan: _plan.Plan, state: State) -> bool:
  """Whether a chunk's state outlives the chunk: for a rung after it, or
  as the parameters the training keeps."""
  return state.rung + 1 < len(plan.rungs) or training.keep_params


def _carry(session: Session, state: State, rows: np.ndarray, inputs: _programs.Inputs) -> Carry:
  """The chunk's training state on the devices: as ``state`` holds it, or
  made from the initial parameters (the first rung) or from the states at
  the end of the rung before."""
  if state.carry is not None:
    if any(isinstance(a, np.ndarray) for a in jax.tree.leaves(state.carry)):
      return _placement.put(state.carry, session.config)
    return state.carry
  if state.previous is None:
    seeds = session.seeds
    return session.init(inputs.hp, inputs.which, seeds.params, seeds.state)
  at = np.searchsorted(state.previous.rows, rows)
  return _placement.put(jax.tree.map(lambda a: a[at], state.previous.carry), session.config)


def _end_chunk(session: Session, state: State, carry: Carry) -> None:
  """Puts the chunk's state ``carry`` away and moves ``state`` to the next
  chunk, or, after the rung's last chunk, to the next rung with those that
  go on."""
  plan, training = session.plan, session.training
  more = state.rung + 1 < len(plan.rungs)
  finished = _placement.host(carry) if more else None
  kept = _placement.host((carry.params, carry.state)) if training.keep_params and not more else None
  _state.next_chunk(training.rungs, plan, state, session.saving, finished, kept)


def _test(fn: Any, variables: Any, hp: dict[str, np.ndarray], real: int, test: Any) -> np.ndarray:
  """The test metrics of the first ``real`` models of a chunk, one at a
  time: a held-out set is for the few models of a refit, not for padding."""
  params, state = variables
  rows = []
  for i in range(real):
    pick = jax.tree.map(lambda a, i=i: a[i], (params, state))
    values = {n: np.float32(v[i]) for n, v in hp.items()}
    rows.append(np.asarray(fn(*pick, values, test)))
  return np.stack(rows)
