r"""Choosing a decay rate by cross-validation, as one compiled program.

:func:`grid` trains one Flax (linen) classifier per combination of decay rate,
fold and seed. The combinations ("configurations") are not trained one after
another: a single ``jax.jit`` program ``vmap``\ s the whole training over them,
with ``lax`` loops over epochs and minibatches, so one compilation serves the
grid and the accelerator (or the CPU's vector units) sees one wide problem
instead of many narrow ones, with no Python in the loop. The rate enters each
configuration as a traced scalar through ``optax.inject_hyperparams``.

Folds are stratified and made once, as weights over the examples: a
configuration's training and validation sets are 0/1 masks, so every
configuration has the same shapes. The configuration axis is sharded over the
given devices, and a grid too large for memory runs in equal chunks.

:func:`fit` trains one rate on a whole training set, evaluating on a
held-out set; :func:`select` chains the two, and its refit reuses the grid's
compiled program where that is cheaper than compiling another.

This module imports Flax; ``import wdax`` does not. Import it as
``from wdax import sweep``.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import gc
import math
from collections.abc import Callable
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from wdax import decay as _decay
from wdax import optimizers as _optimizers
from wdax import rate as _rate
from wdax import training as _training

# A named kind builds the optimiser from the rate, learning rate and mask.
Kind = Callable[[Any, optax.ScalarOrSchedule, Any], optax.GradientTransformation]

METRICS = ('train_loss', 'train_accuracy', 'val_loss', 'val_accuracy')
CRITERIA = ('accuracy', 'loss')

_AXIS = 'config'
# Without a device memory figure: 2 GiB. On CPU the limit is not memory: a
# configuration costs as much in a chunk of 2 as in one of 40 there, chunks
# that outgrow the cache run slower, and a small chunk pads a refit less
# (about 5 configurations per device of the default MLP; 16 MiB).
_DEFAULT_BUDGET = 2 * 2**30
_CPU_BUDGET = 16 * 2**20
# On CPU, XLA's first optimisation level compiles the training program about
# a fifth faster than the default and runs it as fast.
_CPU_OPTIONS = {'xla_backend_optimization_level': 1}
# For programs that run a few times, where compiling costs more than running.
_FAST_COMPILE = {'xla_backend_optimization_level': 0}
# The examples' orders of visit are kept on the devices up to this size.
_KEEP_ORDERS = 64 * 2**20


def _l2(rate, lr, mask):
  return optax.chain(_decay.l2(rate, mask=mask), optax.adam(lr))


def _after_adam(decay_fn):
  def kind(rate, lr, mask):
    return optax.chain(optax.adam(lr), decay_fn(rate, lr=lr, mask=mask))

  return kind


def _adamw(coupling):
  def kind(rate, lr, mask):
    return _optimizers.adamw(lr, weight_decay=rate, mask=mask, coupling=coupling)

  return kind


KINDS: dict[str, Kind] = {
    'adamw': _adamw('lr'),
    'adamw-corrected': _adamw('corrected'),
    'adamw-none': _adamw('none'),
    'adamw-schedule': _adamw('schedule'),
    'cautious': _after_adam(_decay.cautious),
    'decoupled': _after_adam(_decay.decoupled),
    'l1': _after_adam(_decay.l1),
    'l2': _l2,
}
"""Named decay kinds, each ``(rate, lr, mask) -> optax.GradientTransformation``.

All use Adam (optax defaults) at learning rate ``lr``: ``l2`` adds coupled L2
before Adam; ``decoupled``, ``l1`` and ``cautious`` follow Adam with
:func:`wdax.decoupled`, :func:`wdax.l1` and :func:`wdax.cautious` tied to
``lr``; ``adamw`` is :func:`wdax.adamw` and ``adamw-<coupling>`` the same with
that ``coupling``. Add an entry to sweep another kind by name.
"""


@dataclasses.dataclass(frozen=True)
class _Factory:
  """``rate -> optax.GradientTransformation`` for a kind; hashable, so that
  equal settings reuse compiled programs."""

  kind: str | Callable[..., Any]
  lr: Any
  mask: Any

  def __call__(self, rate: Any) -> optax.GradientTransformation:
    if callable(self.kind):
      return self.kind(rate, self.lr)
    return KINDS[self.kind](rate, self.lr, self.mask)


def _optimizer(kind: str | Callable[..., Any], lr: Any, mask: Any) -> _Factory:
  if callable(kind):
    if mask is not None:
      raise ValueError(
          'mask applies to named kinds; a callable kind builds its own '
          'optimiser, mask included.'
      )
  elif kind not in KINDS:
    raise ValueError(
        f'unknown kind {kind!r}; known kinds are '
        f'{", ".join(map(repr, sorted(KINDS)))}, or pass a callable '
        '(rate, lr) -> optax.GradientTransformation.'
    )
  _rate.check_rate(lr, 'lr')
  return _Factory(kind, lr, mask)


class MLP(nn.Module):
  r"""A ReLU multilayer perceptron classifier, the sweep's default model.

  .. math::

    h_0 = x, \qquad h_{l} = \max(W_l h_{l-1} + b_l, 0), \qquad
    f(x) = W_{L+1} h_L + b_{L+1}

  where :math:`x` is the input, :math:`h_l` the :math:`l`-th of :math:`L`
  hidden layers, :math:`W_l` its ``kernel`` and :math:`b_l` its ``bias``, and
  :math:`f(x)` the logits. Kernels start Glorot-uniform, as in
  scikit-learn's ``MLPClassifier`` (Glorot & Bengio, "Understanding the
  difficulty of training deep feedforward neural networks", AISTATS 2010),
  biases at zero.

  Attributes:
    hidden: the width of each hidden layer.
    classes: the number of outputs (logits).

  Examples:
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from wdax import sweep
    >>> model = sweep.MLP(hidden=(8,), classes=3)
    >>> params = model.init(jax.random.key(0), jnp.zeros((1, 4)))['params']
    >>> jax.tree.map(jnp.shape, params)['Dense_0']
    {'bias': (8,), 'kernel': (4, 8)}
  """

  hidden: Sequence[int] = (256,)
  classes: int = 10

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    init = nn.initializers.glorot_uniform()
    for width in self.hidden:
      x = nn.relu(nn.Dense(width, kernel_init=init)(x))
    return nn.Dense(self.classes, kernel_init=init)(x)


def check_data(x: Any, y: Any, folds: int | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Checks a classification data set; returns ``(x, y)`` as float32 and int32.

  Raises ``ValueError`` with a one-line message when ``x`` is not a non-empty
  numeric array with one row per label, holds NaN or infinite values, ``y``
  is not a vector of non-negative integer labels, or (with ``folds``) a class
  has fewer examples than folds.

  Examples:
    >>> import numpy as np
    >>> from wdax import sweep
    >>> sweep.check_data(np.ones((4, 2)), [0, 1, 0, 1], folds=3)
    Traceback (most recent call last):
      ...
    ValueError: class 0 has 2 examples, fewer than the 3 folds.
  """
  x = np.asarray(x)
  y = np.asarray(y)
  if x.ndim < 2 or x.shape[0] == 0:
    raise ValueError(
        f'x must hold one row per example (at least 2-D, non-empty); got shape '
        f'{x.shape}.'
    )
  if not (np.issubdtype(x.dtype, np.number) or x.dtype == np.bool_):
    raise ValueError(f'x must be numeric; got dtype {x.dtype}.')
  if y.shape != (x.shape[0],):
    raise ValueError(
        f'y must be a vector with one label per row of x ({x.shape[0]}); got '
        f'shape {y.shape}.'
    )
  bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
  if bad.any():
    raise ValueError(
        f'x has NaN or infinite values in {int(bad.sum())} rows (first: row '
        f'{int(np.argmax(bad))}).'
    )
  if not np.issubdtype(y.dtype, np.integer):
    if not np.issubdtype(y.dtype, np.floating) or not (
        np.isfinite(y).all() and (y == np.round(y)).all()
    ):
      raise ValueError(f'y must hold integer class labels; got dtype {y.dtype}.')
  if (y < 0).any():
    raise ValueError(f'y must hold labels 0, 1, ...; got {int(y.min())}.')
  y = y.astype(np.int32)
  if folds is not None:
    labels, counts = np.unique(y, return_counts=True)
    if counts.min() < folds:
      raise ValueError(
          f'class {labels[np.argmin(counts)]} has {counts.min()} examples, '
          f'fewer than the {folds} folds.'
      )
  return x.astype(np.float32), y


def stratified_folds(y: Any, folds: int, *, seed: int = 0) -> np.ndarray:
  r"""Stratified k-fold validation masks, one row per fold.

  .. math::

    \operatorname{fold}(i) = \Bigl(\sum_{c' < c} n_{c'} + \pi_c(i)\Bigr)
    \bmod K

  where example :math:`i` has class :math:`c`, :math:`n_{c'}` counts the
  examples of each earlier class, :math:`\pi_c(i) \in \{0, \dots, n_c - 1\}`
  is its place in a random permutation of its class (drawn from ``seed``)
  and :math:`K` is ``folds``. Each class is dealt round-robin, continuing
  where the previous one stopped: every example is in exactly one validation
  fold, each class's count per fold differs by at most one between folds,
  and so do the folds' sizes. Stratification keeps each fold's class
  balance that of the whole (Kohavi, "A Study of Cross-Validation and
  Bootstrap for Accuracy Estimation and Model Selection", IJCAI 1995).

  Args:
    y: the class labels, a vector.
    folds: the number of folds, at least 2.
    seed: the shuffle's seed.

  Returns:
    A bool array of shape ``(folds, len(y))``: row ``k`` marks the validation
    examples of fold ``k``; its complement is fold ``k``'s training set.

  Examples:
    >>> from wdax import sweep
    >>> masks = sweep.stratified_folds([0, 0, 1, 1, 1, 0], 3)
    >>> masks.sum(axis=1), masks.sum(axis=0)
    (array([2, 2, 2]), array([1, 1, 1, 1, 1, 1]))
  """
  y = np.asarray(y)
  if y.ndim != 1:
    raise ValueError(f'stratified_folds(): y must be a vector; got shape {y.shape}.')
  if isinstance(folds, bool) or not isinstance(folds, (int, np.integer)) or folds < 2:
    raise ValueError(f'stratified_folds(): folds must be an int >= 2; got {folds!r}.')
  labels, counts = np.unique(y, return_counts=True)
  if len(y) and counts.min() < folds:
    raise ValueError(
        f'class {labels[np.argmin(counts)]} has {counts.min()} examples, fewer '
        f'than the {folds} folds.'
    )
  rng = np.random.default_rng(seed)
  fold_of = np.empty(len(y), np.int64)
  dealt = 0
  for label in labels:
    members = rng.permutation(np.flatnonzero(y == label))
    fold_of[members] = (dealt + np.arange(len(members))) % folds
    dealt += len(members)
  return fold_of[None, :] == np.arange(folds)[:, None]


def _check_rates(rates: Any) -> np.ndarray:
  values = np.asarray(rates, dtype=np.float64).reshape(-1)
  if values.size == 0:
    raise ValueError('rates is empty: give at least one rate.')
  if not np.isfinite(values).all() or (values < 0).any():
    raise ValueError(f'rates must be finite and non-negative; got {values.tolist()}.')
  return values


def _check_int(value: Any, name: str, low: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
    raise ValueError(f'{name} must be an int >= {low}; got {value!r}.')
  return int(value)


def _seeds(seeds: int | Sequence[int]) -> tuple[int, ...]:
  if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
    return tuple(range(_check_int(seeds, 'seeds', 1)))
  out = tuple(_check_int(s, 'each seed', 0) for s in seeds)
  if not out:
    raise ValueError('seeds is empty: give a count or at least one seed.')
  return out


def _devices(devices: int | Sequence[Any] | None) -> list[Any]:
  available = jax.local_devices()
  if devices is None:
    return available
  if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
    if not 1 <= devices <= len(available):
      raise ValueError(
          f'devices={devices}, but {len(available)} '
          f'{available[0].platform} device(s) are available.'
      )
    return available[: int(devices)]
  devices = list(devices)
  if not devices:
    raise ValueError('devices is empty.')
  return devices


def _nbytes(tree: Any) -> int:
  return sum(
      math.prod(leaf.shape) * np.dtype(leaf.dtype).itemsize
      for leaf in jax.tree_util.tree_leaves(tree)
  )


@dataclasses.dataclass(frozen=True)
class _Job:
  """Everything the compiled programs close over; none of it is traced."""

  model: nn.Module
  factory: Callable[[Any], optax.GradientTransformation]
  batch_size: int
  guard: bool


def _bytes_per_configuration(job: _Job, x: np.ndarray) -> int:
  """A rough upper estimate of one configuration's device memory.

  Parameters, gradients, updates and optimiser state, plus every module's
  output on the evaluation pass over all examples and on three minibatches
  (forward, backward, slack), doubled for the activations XLA keeps besides
  module outputs.
  """
  key = jax.random.key(0)
  example = jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32)
  params = jax.eval_shape(lambda k, e: job.model.init(k, e)['params'], key, example)
  opt_state = jax.eval_shape(
      optax.inject_hyperparams(job.factory)(rate=0.0).init, params
  )
  _, captured = jax.eval_shape(
      lambda p, e: job.model.apply(
          {'params': p}, e, capture_intermediates=True, mutable=['intermediates']
      ),
      params,
      example,
  )
  per_example = _nbytes(captured)
  rows = x.shape[0] + 3 * job.batch_size
  return 4 * _nbytes(params) + _nbytes(opt_state) + 2 * per_example * rows


def _default_budget(devices: Sequence[Any]) -> int:
  if devices[0].platform == 'cpu':
    return _CPU_BUDGET
  stats = devices[0].memory_stats()
  if stats and 'bytes_limit' in stats:
    return int(stats['bytes_limit']) // 2
  return _DEFAULT_BUDGET


def _chunking(
    configurations: int,
    devices: int,
    per_configuration: int,
    chunk_size: int | None,
    memory: int | None,
    default_budget: int,
) -> tuple[int, int]:
  """``(chunk_size, chunks)``: equal chunks, each a multiple of ``devices``."""
  if chunk_size is None:
    budget = default_budget if memory is None else memory
    per_device = max(1, budget // max(per_configuration, 1))
    limit = per_device * devices
  else:
    limit = chunk_size
  limit = max(devices, limit // devices * devices)
  fewest = -(-configurations // limit)

  def split(chunks: int) -> tuple[int, int]:
    size = -(-configurations // chunks)
    return -(-size // devices) * devices, chunks

  # A chunk or two more may pad less: 80 in 4 chunks of 20, not 3 of 28.
  return min(
      (split(c) for c in range(fewest, fewest + 3)),
      key=lambda sc: (sc[0] * sc[1], sc[1]),
  )


def _evaluation_points(epochs: int, evals: int) -> np.ndarray:
  """The epochs after which to evaluate: ``evals`` evenly spaced, the last one
  after the final epoch."""
  points = min(epochs, evals)
  return np.unique(np.round(np.linspace(0, epochs, points + 1)[1:]).astype(int))


def _orders(
    seeds: Sequence[int], train_table: np.ndarray, epochs: range, length: int, capacity: int
) -> np.ndarray:
  """Each seed's and training set's order of visit in each of ``epochs``.

  An int32 array of shape ``(seeds, folds, length, capacity)``: row ``[s, k,
  j]`` lists the training examples of ``train_table[k]`` by increasing
  ``np.random.default_rng([seeds[s], epochs[j]]).random(n)``, then the rest
  (never trained on), then zeros to ``capacity``. Rows past ``len(epochs)``
  are unused. Made on the host: the compiled program only reads them.
  """
  n = train_table.shape[1]
  out = np.zeros((len(seeds), len(train_table), length, capacity), np.int32)
  for s, seed in enumerate(seeds):
    for j, e in enumerate(epochs):
      noise = np.random.default_rng([seed, e]).random(n)
      for k, row in enumerate(train_table):
        out[s, k, j, :n] = np.argsort(np.where(row > 0, noise, 2.0), kind='stable')
  return out


def _memo(fn):
  """Caches ``fn`` on its arguments, or calls it afresh when they are
  unhashable (a Flax module with a list attribute, say)."""
  cached = functools.lru_cache(maxsize=16)(fn)

  @functools.wraps(fn)
  def wrapper(*args):
    return cached(*args) if _hashable(*args) else fn(*args)

  return wrapper


@_memo
def _initializer(model: nn.Module, example: jax.ShapeDtypeStruct):
  """``seed -> params``, compiled once per model and input shape.

  Not vmapped: XLA compiles a vmapped random initialisation several times
  slower, and a grid needs one initialisation per seed, not per
  configuration.
  """
  return jax.jit(
      lambda seed: model.init(
          jax.random.key(seed), jnp.zeros(example.shape, example.dtype)
      )['params'],
      # It runs once per seed; unoptimised code compiles three times faster.
      compiler_options=_FAST_COMPILE,
  )


def _seed_params(model: nn.Module, x: np.ndarray, seeds: Sequence[int]) -> Any:
  """Initial parameters per seed, stacked on a leading axis."""
  init = _initializer(model, jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32))
  params = [init(np.int32(seed)) for seed in seeds]
  return jax.tree.map(lambda *a: np.stack([np.asarray(v) for v in a]), *params)


def _losses(model: nn.Module, params: Any, x: jax.Array, y: jax.Array):
  """Per-example cross-entropy and correctness (float32)."""
  logits = model.apply({'params': params}, x).astype(jnp.float32)
  # A one-hot product, not a gather: the gather's gradient is a scatter,
  # which XLA's CPU backend compiles and runs slowly.
  onehot = jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)
  losses = jax.nn.logsumexp(logits, axis=-1) - jnp.sum(onehot * logits, axis=-1)
  return losses, (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32)


@_memo
def _tester(model: nn.Module):
  """``(params, x, y) -> [mean loss, accuracy]`` of one model."""

  def metrics(params, x, y):
    losses, correct = _losses(model, params, x, y)
    return jnp.stack([jnp.mean(losses), jnp.mean(correct)])

  return jax.jit(metrics)


@contextlib.contextmanager
def _collector_paused():
  """Pauses Python's cyclic garbage collector while programs are traced.

  Tracing allocates many short-lived objects, and the full collections they
  trigger walk every object JAX, Flax and optax hold: about a third of the
  tracing time. The collector runs again, as it was, afterwards. All tracing
  happens in the calling thread; the pool threads only compile.
  """
  enabled = gc.isenabled()
  gc.disable()
  try:
    yield
  finally:
    if enabled:
      gc.enable()


def _hashable(*args: Any) -> bool:
  try:
    hash(args)
  except TypeError:
    return False
  return True


@dataclasses.dataclass
class _Programs:
  """A job's jitted programs, and their ahead-of-time compilations (futures,
  keyed by program name and argument shapes)."""

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
      with _collector_paused():
        lowered = getattr(self, name).lower(*abstract)
      self.compiled[signature] = pool.submit(lowered.compile)
    return self.compiled[signature]


# Recent jobs' programs; a long session of sweeps keeps the last few only.
_PROGRAMS: dict[Any, _Programs] = {}
_KEEP_PROGRAMS = 8


def _programs(job: _Job, mesh: Mesh, n: int) -> _Programs:
  """The compiled ``init`` and ``run`` programs of ``job``.

  ``init`` builds each configuration's training state, ``run`` trains a
  chunk for some epochs and evaluates it. Cached, so a refit or a repeated
  grid with equal settings reuses their compilations.
  """
  key = (job, mesh, n)
  if _hashable(key) and key in _PROGRAMS:
    return _PROGRAMS[key]
  model, batch_size = job.model, job.batch_size
  # The rate lives in the optimiser state (inject_hyperparams), so this one
  # transformation updates every configuration with its own rate.
  tx = optax.inject_hyperparams(job.factory)(rate=0.0)

  def loss_fn(params, batch):
    xb, yb, wb = batch
    losses, _ = _losses(model, params, xb, yb)
    return jnp.sum(wb * losses) / jnp.maximum(jnp.sum(wb), 1.0)

  step = _training.train_step(loss_fn, metrics=False, donate=False).jitted

  def init_one(rate, which, seed_params):
    params = jax.tree.map(lambda a: a[which], seed_params)
    opt_state = optax.inject_hyperparams(job.factory)(rate=rate).init(params)
    return _training.TrainState(
        step=jnp.zeros([], jnp.int32),
        apply_fn=model.apply,
        params=params,
        tx=tx,
        opt_state=opt_state,
    )

  def weighted(values, w):
    return jnp.sum(w * values) / jnp.sum(w)

  def evaluate(params, w_train, w_eval, x, y):
    losses, correct = _losses(model, params, x, y)
    return jnp.stack([
        weighted(losses, w_train),
        weighted(correct, w_train),
        weighted(losses, w_eval),
        weighted(correct, w_eval),
    ])

  def run(state, which, split, x, y, train_table, eval_table, orders, steps, count):
    # The loops run over the whole (local) chunk and only their bodies are
    # vmapped: a vmapped loop is traced several times over.
    w_train, w_eval = train_table[split], eval_table[split]

    def epoch(e, state):
      order = orders[which, split, e]

      def minibatch(i, state):
        at = i * batch_size
        index = jax.lax.dynamic_slice_in_dim(order, at, batch_size, axis=1)
        ok = at + jnp.arange(batch_size) < n
        wb = jnp.where(ok, jnp.take_along_axis(w_train, index, axis=1), 0.0)
        new, _ = jax.vmap(step)(state, (x[index], y[index], wb))
        if job.guard:
          # A configuration with fewer training examples than the chunk's
          # longest has nothing left in its last minibatch: it skips the step.
          skip = jnp.sum(wb, axis=1) == 0
          new = jax.tree.map(
              lambda old, upd: jnp.where(
                  skip.reshape(skip.shape + (1,) * (upd.ndim - 1)), old, upd
              ),
              state,
              new,
          )
        return new

      # The step count is traced: a refit with more examples per epoch
      # reuses the grid's program.
      return jax.lax.fori_loop(0, steps, minibatch, state)

    state = jax.lax.fori_loop(0, count, epoch, state)
    metrics = jax.vmap(evaluate, in_axes=(0, 0, 0, None, None))(
        state.params, w_train, w_eval, x, y
    )
    return state, metrics

  config = NamedSharding(mesh, PartitionSpec(_AXIS))
  replicated = NamedSharding(mesh, PartitionSpec())
  spec, rep = PartitionSpec(_AXIS), PartitionSpec()

  def sharded(fn, batched: int, unbatched: int, vmapped: bool = True, **jit_args):
    if vmapped:
      fn = jax.vmap(fn, in_axes=(0,) * batched + (None,) * unbatched)
    return jax.jit(
        jax.shard_map(
            fn,
            mesh=mesh,
            in_specs=(spec,) * batched + (rep,) * unbatched,
            out_specs=spec,
        ),
        in_shardings=(config,) * batched + (replicated,) * unbatched,
        out_shardings=config,
        **jit_args,
    )

  cpu = mesh.devices.flat[0].platform == 'cpu'
  programs = _Programs(
      init=sharded(init_one, 2, 1),
      run=sharded(
          run, 3, 7, vmapped=False, donate_argnums=0,
          compiler_options=_CPU_OPTIONS if cpu else None
      ),
  )
  if _hashable(key):
    _PROGRAMS[key] = programs
    while len(_PROGRAMS) > _KEEP_PROGRAMS:
      del _PROGRAMS[next(iter(_PROGRAMS))]
  return programs


def _compile_tester(
    pool: concurrent.futures.Executor,
    model: nn.Module,
    seed_params: Any,
    test: tuple[Any, Any],
    cpu: bool,
) -> concurrent.futures.Future:
  """The test program for one model, compiling in ``pool``."""
  one = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape[1:], a.dtype), seed_params)
  with _collector_paused():
    lowered = _tester(model).lower(one, *test)
  # It runs a few times on one model: on CPU, unoptimised code is quicker
  # to compile than to run.
  return pool.submit(lowered.compile, _FAST_COMPILE if cpu else None)


def _test(tester: Any, params: Any, real: int, test: tuple[Any, Any]) -> np.ndarray:
  """Test loss and accuracy of the first ``real`` models of a chunk, one at a
  time: a held-out set is for the few models of a refit, not for padding."""
  params = jax.device_get(params)
  return np.stack([
      np.asarray(tester(jax.tree.map(lambda a, i=i: a[i], params), *test))
      for i in range(real)
  ]).reshape(real, 2)


def _signatures(job, init, x, seeds, size, data, orders):
  """Abstract arguments of ``init`` and of ``run`` for a chunk of ``size``."""

  def like(shape, dtype):
    return jax.ShapeDtypeStruct(shape, dtype)

  example = jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32)
  params = jax.eval_shape(_initializer(job.model, example), np.int32(0))
  seed_params = jax.tree.map(lambda a: like((seeds, *a.shape), a.dtype), params)
  init_args = (like((size,), jnp.float32), like((size,), jnp.int32), seed_params)
  with _collector_paused():
    state = jax.eval_shape(init, *init_args)
  scalar = like((), jnp.int32)
  return init_args, (
      state, like((size,), jnp.int32), like((size,), jnp.int32),
      *(like(a.shape, a.dtype) for a in data), like(orders, jnp.int32), scalar, scalar,
  )


def _batches(train_table: np.ndarray, batch_size: int) -> np.ndarray:
  """Minibatches per epoch of each row of a training table."""
  return -(-(train_table > 0).sum(axis=1) // batch_size)


@dataclasses.dataclass(frozen=True)
class _Trained:
  metrics: np.ndarray  # (configurations, evaluations, 4)
  test: np.ndarray | None  # (configurations, evaluations, 2)
  epochs: np.ndarray  # (evaluations,): epochs trained at each evaluation
  params: Any  # stacked over configurations, or None
  job: _Job
  chunk_size: int
  chunks: int
  devices: int
  bytes_per_configuration: int


def _train(
    job_args: dict[str, Any],
    x: np.ndarray,
    y: np.ndarray,
    train_table: np.ndarray,
    eval_table: np.ndarray,
    rate: np.ndarray,
    seed: np.ndarray,
    split: np.ndarray,
    *,
    epochs: int,
    evals: int,
    devices: Sequence[Any],
    chunk_size: int | None,
    memory: int | None,
    progress: Callable[[int, int], None] | None,
    keep_params: bool = False,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    guard: bool | None = None,
    exact_chunk: int | None = None,
) -> _Trained:
  """Trains every configuration ``(rate[i], seed[i], split[i])``.

  ``split[i]`` picks the row of ``train_table`` (1 where the configuration
  trains) and ``eval_table`` (1 where it is validated).
  """
  total = len(rate)
  batches = _batches(train_table, job_args['batch_size'])
  if guard is None:
    guard = bool(len(np.unique(batches[np.unique(split)])) > 1)
  job = _Job(guard=guard, **job_args)

  per_configuration = _bytes_per_configuration(job, x)
  if exact_chunk is not None:
    size, chunks = exact_chunk, -(-total // exact_chunk)
  else:
    size, chunks = _chunking(
        total, len(devices), per_configuration, chunk_size, memory,
        _default_budget(devices),
    )
  mesh = Mesh(np.asarray(devices), (_AXIS,))
  programs = _programs(job, mesh, x.shape[0])
  distinct, which = np.unique(seed, return_inverse=True)
  # Pad with copies of the last configuration so every chunk has one shape.
  pad = size * chunks - total
  rate, split, which = (
      np.concatenate([a, np.repeat(a[-1:], pad)]) for a in (rate, split, which)
  )
  replicated = NamedSharding(mesh, PartitionSpec())
  # Sent to the devices once, not with every call.
  data = jax.device_put(
      (x, y, train_table.astype(np.float32), eval_table.astype(np.float32)), replicated
  )
  points = _evaluation_points(epochs, evals)
  segments = [range(start, stop) for start, stop in zip([0, *points[:-1]], points)]
  capacity = -(-x.shape[0] // job.batch_size) * job.batch_size
  # The orders of every segment have one shape, so one program runs them all.
  orders_shape = (
      len(distinct), len(train_table), max(map(len, segments)), capacity
  )
  calls = chunks * len(points)
  # Every chunk visits the examples in the same orders: when they are small,
  # they are made and sent once.
  keep_orders = len(segments) * math.prod(orders_shape) * 4 <= _KEEP_ORDERS
  kept = {}

  def segment_orders(j: int) -> Any:
    if j in kept:
      return kept[j]
    out = jax.device_put(
        _orders(distinct.tolist(), train_table, segments[j], *orders_shape[2:]), replicated
    )
    if keep_orders:
      kept[j] = out
    return out

  # Compile the two programs while the parameters are initialised, and the
  # test program while the first chunk trains: XLA compiles without holding
  # the interpreter lock, so they overlap.
  cpu = devices[0].platform == 'cpu'
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    init_args, run_args = _signatures(
        job, programs.init, x, len(distinct), size, data, orders_shape
    )
    run_future = programs.compile(pool, 'run', *run_args)
    init_future = programs.compile(pool, 'init', *init_args)
    with _collector_paused():
      seed_params = jax.device_put(
          _seed_params(job.model, x, distinct.tolist()), replicated
      )
    tester = None
    if test is not None:
      tester = _compile_tester(pool, job.model, seed_params, test, cpu)
    init, run = init_future.result(), run_future.result()
    outputs = []
    for c in range(chunks):
      part = slice(c * size, (c + 1) * size)
      state = init(rate[part].astype(np.float32), which[part].astype(np.int32), seed_params)
      steps = np.int32(batches[split[part]].max())
      metrics, tested = [], []
      for j, segment in enumerate(segments):
        state, m = run(
            state, which[part].astype(np.int32), split[part].astype(np.int32), *data,
            segment_orders(j), steps, np.int32(len(segment)),
        )
        metrics.append(np.asarray(m))
        if tester is not None:
          real = min(size, total - c * size)
          tested.append(_test(tester.result(), state.params, real, test))
        if progress is not None:
          progress(c * len(points) + len(metrics), calls)
      outputs.append((
          np.stack(metrics, axis=1),
          np.stack(tested, axis=1) if tester is not None else None,
          jax.device_get(state.params) if keep_params else None,
      ))
  metrics, tested, params = zip(*outputs)
  stacked = None
  if keep_params:
    stacked = jax.tree.map(lambda *a: np.concatenate(a)[:total], *params)
  return _Trained(
      metrics=np.concatenate(metrics)[:total],
      test=np.concatenate(tested)[:total] if test is not None else None,
      epochs=points,
      params=stacked,
      job=job,
      chunk_size=size,
      chunks=chunks,
      devices=len(devices),
      bytes_per_configuration=per_configuration,
  )


def _mean_se(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Mean and standard error over the last axis (sample std, ``ddof=1``)."""
  values = np.asarray(values, np.float64)
  m = values.shape[-1]
  mean = values.mean(axis=-1)
  se = values.std(axis=-1, ddof=1) / math.sqrt(m) if m > 1 else np.full_like(mean, np.nan)
  return mean, se


@dataclasses.dataclass(frozen=True)
class Choice:
  """The rate a criterion picks, with its cross-validated mean and s.e."""

  rate: float
  index: int
  criterion: str
  mean: float
  se: float


@dataclasses.dataclass(frozen=True)
class Result:
  """Learning curves of every configuration of a :func:`grid`.

  Attributes:
    rates: the rates, shape ``(R,)``.
    folds: the number of folds ``F``.
    seeds: the seeds (``S`` of them).
    curves: ``train_loss``, ``train_accuracy``, ``val_loss`` and
      ``val_accuracy`` at each evaluation, each of shape ``(R, F, S, P)``;
      ``train_*`` is measured on the fold's training examples.
    epochs: the epochs trained at each of the ``P`` evaluations; the last
      is the final epoch.
    chunk_size: configurations per compiled chunk.
    chunks: the number of chunks.
    devices: the number of devices the configuration axis was sharded over.
    bytes_per_configuration: the memory estimate that sized the chunks.
  """

  rates: np.ndarray
  folds: int
  seeds: tuple[int, ...]
  curves: dict[str, np.ndarray]
  epochs: np.ndarray
  chunk_size: int
  chunks: int
  devices: int
  bytes_per_configuration: int

  def final(self, metric: str) -> np.ndarray:
    """``metric`` after the last epoch, shape ``(R, F * S)``."""
    if metric == 'gap':
      return self.final('train_accuracy') - self.final('val_accuracy')
    if metric not in self.curves:
      raise ValueError(
          f'unknown metric {metric!r}; known: {", ".join(METRICS)} and gap.'
      )
    values = self.curves[metric][..., -1]
    return values.reshape(values.shape[0], -1)

  def summary(self, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error of ``metric`` over folds and seeds, per rate.

    The standard error is the sample standard deviation over the ``F * S``
    final values divided by :math:`\\sqrt{F S}`; it treats folds as
    independent, which they are not quite, so read it as a guide.
    """
    return _mean_se(self.final(metric))

  def table(self) -> list[dict[str, float]]:
    """One row per rate: mean and s.e. of each final metric and of the gap.

    ``gap`` is training accuracy minus validation accuracy, the
    generalisation gap.
    """
    columns = {m: self.summary(m) for m in (*METRICS, 'gap')}
    rows = []
    for i, rate in enumerate(self.rates):
      row = {'rate': float(rate)}
      for name, (mean, se) in columns.items():
        row[name] = float(mean[i])
        row[f'{name}_se'] = float(se[i])
      rows.append(row)
    return rows

  def best(self, criterion: str = 'loss', *, one_se: bool = False) -> Choice:
    """The rate with the best mean validation ``criterion``.

    Args:
      criterion: ``'loss'`` (lowest mean validation cross-entropy) or
        ``'accuracy'`` (highest mean validation accuracy; among rates tied
        on it, the lowest mean validation loss). The loss is the default:
        it moves smoothly with the model, where accuracy moves in steps of
        one validation example, so its choice is steadier. On the digits
        job the loss chose the same rate for 5 of 6 fold assignments,
        accuracy one of three rates (``benchmarks/RESULTS.md``).
      one_se: instead take the largest rate whose mean is within one
        standard error of the best one's (Breiman's one-standard-error rule,
        Hastie, Tibshirani & Friedman, "The Elements of Statistical
        Learning", 2009, section 7.10): the strongest decay the data cannot
        tell from the best.

    Returns:
      A :class:`Choice` with the rate, its index, and its mean and s.e.
    """
    if criterion not in CRITERIA:
      raise ValueError(
          f'unknown criterion {criterion!r}; use {" or ".join(map(repr, CRITERIA))}.'
      )
    mean, se = self.summary(f'val_{criterion}')
    score = mean if criterion == 'accuracy' else -mean
    index = int(np.argmax(score))
    if criterion == 'accuracy':
      # Accuracy moves in steps of one example, so ties are common; the loss
      # still tells the tied rates apart.
      tied = np.flatnonzero(np.isclose(score, score[index], rtol=0.0, atol=1e-9))
      index = int(tied[np.argmin(self.summary('val_loss')[0][tied])])
    if one_se:
      within = score >= score[index] - se[index]
      index = int(np.flatnonzero(within)[np.argmax(self.rates[within])])
    return Choice(
        rate=float(self.rates[index]),
        index=index,
        criterion=criterion,
        mean=float(mean[index]),
        se=float(se[index]),
    )


def _job_args(model, kind, lr, mask, batch_size) -> dict[str, Any]:
  if not isinstance(model, nn.Module):
    raise ValueError(f'model must be a flax.linen Module; got {type(model).__name__}.')
  return {
      'model': model,
      'factory': _optimizer(kind, lr, mask),
      'batch_size': _check_int(batch_size, 'batch_size', 1),
  }


def _check_outputs(model: nn.Module, x: np.ndarray, y: np.ndarray) -> None:
  out = jax.eval_shape(
      lambda k, e: model.apply(model.init(k, e), e),
      jax.random.key(0),
      jax.ShapeDtypeStruct((1, *x.shape[1:]), jnp.float32),
  )
  if out.ndim != 2 or out.shape[-1] <= int(y.max()):
    raise ValueError(
        f'the model must output one logit per class ({int(y.max()) + 1} classes); '
        f'it outputs shape {out.shape} per example.'
    )


def grid(
    model: nn.Module,
    x: Any,
    y: Any,
    rates: Any,
    *,
    kind: str | Callable[..., optax.GradientTransformation] = 'adamw',
    lr: optax.ScalarOrSchedule = 1e-3,
    mask: Any = None,
    folds: int = 5,
    seeds: int | Sequence[int] = 1,
    epochs: int = 20,
    batch_size: int = 32,
    fold_seed: int = 0,
    evals: int = 10,
    devices: int | Sequence[Any] | None = None,
    chunk_size: int | None = None,
    memory: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Result:
  r"""Cross-validates a grid of decay rates in one vmapped, jitted program.

  Every configuration (rate :math:`r`, fold :math:`k`, seed :math:`s`)
  minimises, by minibatches of its fold's training examples, the mean
  softmax cross-entropy

  .. math::

    L_k(\theta) = \frac{\sum_i w_{ki}\, \ell(f_\theta(x_i), y_i)}
    {\sum_i w_{ki}}

  where :math:`f_\theta` is ``model`` with parameters :math:`\theta`,
  :math:`\ell` the cross-entropy, and :math:`w_{ki} \in \{0, 1\}` marks the
  examples :math:`(x_i, y_i)` of fold :math:`k`'s training set (the
  complement of its validation set in :func:`stratified_folds`). The
  optimiser is ``kind`` with rate :math:`r`: a name in :data:`KINDS` (Adam at
  learning rate ``lr`` with that decay, e.g. ``'adamw'``, Loshchilov &
  Hutter, "Decoupled Weight Decay Regularization", 2019, arXiv:1711.05101) or
  a callable ``(rate, lr) -> optax.GradientTransformation`` that accepts a
  traced ``rate``.

  Seed :math:`s` initialises the parameters with ``jax.random.key(s)``;
  epoch :math:`e` (from 0) visits the training examples in increasing order
  of ``np.random.default_rng([s, e]).random(n)``, restricted to them, in
  minibatches of ``batch_size`` (the last may be smaller). The orders are
  drawn on the host, so the compiled program holds no random number
  generator. Rates and folds share a seed's initialisation and orders, so
  they are compared on common random numbers. ``evals`` times, evenly
  spaced and last after the final epoch, every configuration is evaluated on
  its training and its validation examples.

  Args:
    model: a ``flax.linen`` classifier mapping a batch of ``x`` rows to
      logits, one per class, with parameters only (no batch statistics).
    x: the inputs, one row per example.
    y: integer labels ``0 .. C-1``, one per row.
    rates: the decay rates to try, non-negative.
    kind: a name in :data:`KINDS`, or a callable as above.
    lr: Adam's learning rate (number or schedule) for a named kind.
    mask: which parameters a named kind decays (see :mod:`wdax.masks`), by
      default every floating leaf; ``wdax.masks.flax_default()`` spares
      biases and norm scales.
    folds: the number of stratified folds.
    seeds: a count (seeds ``0 .. seeds-1``) or a list of seeds.
    epochs: passes over each configuration's training examples.
    batch_size: examples per minibatch.
    fold_seed: the seed of the fold assignment.
    evals: how many times to evaluate each configuration (at most once an
      epoch).
    devices: the devices to shard the configurations over: a count (the
      first ones), a list, or ``None`` for every local device.
    chunk_size: configurations per compiled chunk; by default as many as
      ``memory`` allows.
    memory: the memory budget in bytes per device that sets the chunk size
      from an estimate of each configuration's needs; by default half the
      device's memory where it reports it, else 2 GiB, and on CPU 16 MiB,
      since there larger chunks run no faster per configuration.
    progress: called as ``progress(done, total)`` after each compiled call
      (one per chunk and evaluation).

  Returns:
    A :class:`Result`; ``result.best()`` is the chosen rate.

  Examples:
    >>> import numpy as np
    >>> from wdax import sweep
    >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> result = sweep.grid(sweep.MLP(hidden=(8,), classes=2), x, y, [1e-3, 1.0],
    ...                     folds=2, epochs=2, batch_size=10)
    >>> result.curves['val_accuracy'].shape  # (rates, folds, seeds, evaluations)
    (2, 2, 1, 2)
    >>> result.epochs  # evaluated after each epoch
    array([1, 2])
  """
  return _grid(
      model, x, y, rates, kind=kind, lr=lr, mask=mask, folds=folds, seeds=seeds,
      epochs=epochs, batch_size=batch_size, fold_seed=fold_seed, evals=evals,
      devices=devices, chunk_size=chunk_size, memory=memory, progress=progress,
  )[0]


def _grid(
    model, x, y, rates, *, kind, lr, mask, folds, seeds, epochs, batch_size,
    fold_seed, evals, devices, chunk_size, memory, progress,
) -> tuple[Result, dict[str, Any]]:
  """:func:`grid`, and what a refit needs to reuse its programs."""
  rates = _check_rates(rates)
  folds = _check_int(folds, 'folds', 2)
  epochs = _check_int(epochs, 'epochs', 1)
  evals = _check_int(evals, 'evals', 1)
  seed_list = _seeds(seeds)
  x, y = check_data(x, y, folds)
  job_args = _job_args(model, kind, lr, mask, batch_size)
  _check_outputs(model, x, y)
  devices = _devices(devices)
  val = stratified_folds(y, folds, seed=fold_seed)
  r, k, s = np.meshgrid(
      np.arange(len(rates)), np.arange(folds), np.arange(len(seed_list)), indexing='ij'
  )
  trained = _train(
      job_args, x, y, ~val, val,
      rates[r.ravel()], np.asarray(seed_list)[s.ravel()], k.ravel(),
      epochs=epochs, evals=evals, devices=devices, chunk_size=chunk_size,
      memory=memory, progress=progress,
  )
  shape = (len(rates), folds, len(seed_list), len(trained.epochs))
  curves = {
      name: trained.metrics[..., i].reshape(shape) for i, name in enumerate(METRICS)
  }
  result = Result(
      rates=rates,
      folds=folds,
      seeds=seed_list,
      curves=curves,
      epochs=trained.epochs,
      chunk_size=trained.chunk_size,
      chunks=trained.chunks,
      devices=trained.devices,
      bytes_per_configuration=trained.bytes_per_configuration,
  )
  context = dict(
      job_args=job_args, x=x, y=y, folds=folds, seeds=seed_list, epochs=epochs,
      evals=evals, devices=devices, guard=trained.job.guard,
      chunk_size=trained.chunk_size,
  )
  return result, context


@dataclasses.dataclass(frozen=True)
class Fit:
  """Models trained by :func:`fit`, one per seed.

  Attributes:
    rate: the decay rate.
    seeds: the seeds.
    curves: ``train_loss`` and ``train_accuracy`` and, with a test set,
      ``test_loss`` and ``test_accuracy``, at each evaluation, each of shape
      ``(S, P)``.
    epochs: the epochs trained at each of the ``P`` evaluations.
    params: the final parameters, stacked over seeds on a leading axis.
  """

  rate: float
  seeds: tuple[int, ...]
  curves: dict[str, np.ndarray]
  epochs: np.ndarray
  params: Any


def _check_test(test: Any, x: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
  if test is None:
    return None
  x_test, y_test = check_data(*test)
  if x_test.shape[1:] != x.shape[1:]:
    raise ValueError(
        f'test inputs have shape {x_test.shape[1:]} per example; training '
        f'inputs {x.shape[1:]}.'
    )
  return x_test, y_test


def _fit(
    job_args, x, y, rate, seed_list, test, *, epochs, evals, devices, progress,
    rows=1, guard=None, exact_chunk=None,
) -> Fit:
  if test is not None:
    _check_outputs(job_args['model'], test[0], test[1])
  # Every example trains. ``rows`` copies of the table give it the shape of
  # the grid's fold tables when a refit reuses the grid's program.
  table = np.ones((rows, x.shape[0]), bool)
  trained = _train(
      job_args, x, y, table, table,
      np.full(len(seed_list), rate), np.asarray(seed_list), np.zeros(len(seed_list), int),
      epochs=epochs, evals=evals, devices=devices, chunk_size=None, memory=None,
      progress=progress, keep_params=True, test=test, guard=guard,
      exact_chunk=exact_chunk,
  )
  curves = {
      'train_loss': trained.metrics[..., 0],
      'train_accuracy': trained.metrics[..., 1],
  }
  if trained.test is not None:
    curves['test_loss'] = trained.test[..., 0]
    curves['test_accuracy'] = trained.test[..., 1]
  return Fit(
      rate=rate, seeds=seed_list, curves=curves, epochs=trained.epochs,
      params=trained.params,
  )


def fit(
    model: nn.Module,
    x: Any,
    y: Any,
    rate: float,
    *,
    test: tuple[Any, Any] | None = None,
    kind: str | Callable[..., optax.GradientTransformation] = 'adamw',
    lr: optax.ScalarOrSchedule = 1e-3,
    mask: Any = None,
    seeds: int | Sequence[int] = 1,
    epochs: int = 20,
    batch_size: int = 32,
    evals: int = 10,
    devices: int | Sequence[Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Fit:
  r"""Trains ``model`` on all of ``(x, y)`` at one rate, once per seed.

  .. math::

    L(\theta) = \frac{1}{n} \sum_{i=1}^{n} \ell(f_\theta(x_i), y_i)

  where :math:`f_\theta` is ``model`` with parameters :math:`\theta`,
  :math:`\ell` the softmax cross-entropy and :math:`n` the number of
  training examples; the optimiser and decay are ``kind`` at ``rate``.

  The training is :func:`grid`'s with every example in the training set:
  the same initialisation and shuffling rule for a given seed. With
  ``test=(x_test, y_test)`` the models are also evaluated on the test set.
  Use it to refit the rate :func:`grid` chose (:func:`select` does both).

  Args:
    model: as for :func:`grid`.
    x: the training inputs.
    y: the training labels.
    rate: the decay rate.
    test: an optional held-out ``(x_test, y_test)``.
    kind: as for :func:`grid`.
    lr: as for :func:`grid`.
    mask: as for :func:`grid`.
    seeds: as for :func:`grid`.
    epochs: as for :func:`grid`.
    batch_size: as for :func:`grid`.
    evals: as for :func:`grid`.
    devices: as for :func:`grid`.
    progress: as for :func:`grid`.

  Returns:
    A :class:`Fit` with the curves and final parameters.

  Examples:
    >>> import numpy as np
    >>> from wdax import sweep
    >>> x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> model = sweep.MLP(hidden=(8,), classes=2)
    >>> out = sweep.fit(model, x[:30], y[:30], 1e-2, test=(x[30:], y[30:]),
    ...                 epochs=3, batch_size=10)
    >>> out.curves['test_accuracy'].shape  # (seeds, evaluations)
    (1, 3)
  """
  rate = float(_check_rates([rate])[0])
  epochs = _check_int(epochs, 'epochs', 1)
  evals = _check_int(evals, 'evals', 1)
  seed_list = _seeds(seeds)
  x, y = check_data(x, y)
  test = _check_test(test, x)
  job_args = _job_args(model, kind, lr, mask, batch_size)
  _check_outputs(model, x, y)
  return _fit(
      job_args, x, y, rate, seed_list, test, epochs=epochs, evals=evals,
      devices=_devices(devices), progress=progress,
  )


@dataclasses.dataclass(frozen=True)
class Selection:
  """What :func:`select` found.

  Attributes:
    result: the cross-validation :class:`Result`.
    choice: the chosen rate (:meth:`Result.best`).
    refit: the chosen rate trained on all the training examples.
  """

  result: Result
  choice: Choice
  refit: Fit


# A refit reuses the grid's compiled program, padding its chunk with copies,
# when a chunk holds at most this many configurations per device; beyond it
# compiling a program of the refit's own size costs less than the padding.
_REUSE_PER_DEVICE = 20


def select(
    model: nn.Module,
    x: Any,
    y: Any,
    rates: Any,
    *,
    test: tuple[Any, Any] | None = None,
    criterion: str = 'loss',
    one_se: bool = False,
    refit_progress: Callable[[int, int], None] | None = None,
    **settings: Any,
) -> Selection:
  r"""Cross-validates ``rates``, chooses one and refits it: :func:`grid`,
  :meth:`Result.best`, then :func:`fit`.

  .. math::

    \hat r = \operatorname*{arg\,min}_{r}\; \frac{1}{F S}\sum_{k, s}
    L_{\text{val}}(r, k, s)

  where :math:`L_{\text{val}}(r, k, s)` is the validation loss (or minus the
  accuracy, by ``criterion``) of rate :math:`r` on fold :math:`k` with seed
  :math:`s`, and :math:`F, S` the numbers of folds and seeds; the model is
  then trained at :math:`\hat r` on every training example, once per seed,
  and evaluated on ``test``.

  The refit runs the grid's compiled program when its chunks are small (as
  on CPU), so the whole job compiles once.

  Args:
    model: as for :func:`grid`.
    x: as for :func:`grid`.
    y: as for :func:`grid`.
    rates: as for :func:`grid`.
    test: an optional held-out ``(x_test, y_test)`` for the refit.
    criterion: as for :meth:`Result.best`.
    one_se: as for :meth:`Result.best`.
    refit_progress: ``progress`` for the refit.
    **settings: the other arguments of :func:`grid`.

  Returns:
    A :class:`Selection`.

  Examples:
    >>> import numpy as np
    >>> from wdax import sweep
    >>> x = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    >>> y = (x[:, 0] > 0).astype(np.int32)
    >>> found = sweep.select(sweep.MLP(hidden=(8,), classes=2), x[:40], y[:40],
    ...                      [1e-3, 1.0], test=(x[40:], y[40:]), folds=2,
    ...                      epochs=2, batch_size=10)
    >>> found.refit.rate == found.choice.rate
    True
  """
  result, ctx = _grid(
      model, x, y, rates, **{**_GRID_DEFAULTS, **_check_settings(settings)}
  )
  choice = result.best(criterion, one_se=one_se)
  test = _check_test(test, ctx['x'])
  devices = ctx['devices']
  reuse = result.chunk_size <= _REUSE_PER_DEVICE * len(devices)
  refit = _fit(
      ctx['job_args'], ctx['x'], ctx['y'], choice.rate, ctx['seeds'], test,
      epochs=ctx['epochs'], evals=ctx['evals'], devices=devices,
      progress=refit_progress,
      rows=ctx['folds'] if reuse else 1,
      guard=ctx['guard'] if reuse else None,
      exact_chunk=ctx['chunk_size'] if reuse else None,
  )
  return Selection(result=result, choice=choice, refit=refit)


_GRID_DEFAULTS = dict(
    kind='adamw', lr=1e-3, mask=None, folds=5, seeds=1, epochs=20, batch_size=32,
    fold_seed=0, evals=10, devices=None, chunk_size=None, memory=None, progress=None,
)


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
  unknown = sorted(set(settings) - set(_GRID_DEFAULTS))
  if unknown:
    raise ValueError(
        f'select(): unknown argument(s) {", ".join(unknown)}; the settings of '
        f'grid() are {", ".join(sorted(_GRID_DEFAULTS))}.'
    )
  return settings


__all__ = [
    'CRITERIA',
    'Choice',
    'Fit',
    'KINDS',
    'METRICS',
    'MLP',
    'Result',
    'Selection',
    'check_data',
    'fit',
    'grid',
    'select',
    'stratified_folds',
]
