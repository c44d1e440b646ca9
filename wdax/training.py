"""Jit-compiled Flax training steps that report what the decay is doing.

Two builders, one per Flax API, each returning a ``jax.jit``-compiled
``step(state, batch) -> (state, metrics)`` whose ``state`` argument is donated:

* :func:`train_step` for Linen, over a ``flax.training.train_state.TrainState``
  (or :class:`TrainState`, which adds ``batch_stats``);
* :func:`nnx_train_step` for NNX, over the state of ``nnx.split((model,
  optimizer))`` with ``optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)``.

``metrics`` holds the loss, the global gradient norm, the norm of the update
that was applied and the parameter norms of :func:`wdax.diagnostics.norms`
(all, decayed, not decayed) after the update. Pass the step the ``mask`` given
to the decay so that the decayed and undecayed norms split the parameters as
the decay does.

The metrics read the gradients, the update and the parameters once more
each; on a small model whose step is dominated by the optimiser that is a
visible share of the step (``benchmarks/RESULTS.md``). To log every ``n``
steps, build the step twice, with ``metrics=False`` and without, and call the
second every ``n`` steps: both take and return the same state.

The step is traced once: its output state has the same tree structure, dtypes
and (with ``shardings``) shardings as its input, so the second call reuses the
first call's executable and the donated input buffers are reused for the
output. Donation frees every array of the state passed in, including arrays
it shares with other variables (the ``params`` given to ``create``): copy
those first if they are still needed.

This module imports Flax; ``import wdax`` does not. Import it as
``from wdax import training``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from typing import Generic
from typing import TypeVar

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from flax.training import train_state
from jax.sharding import AxisType
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec

from wdax import _checks
from wdax import masks as _masks
from wdax import paths as _paths

Batch = Any
Metrics = dict[str, Any]
StateT = TypeVar('StateT')


@dataclasses.dataclass(frozen=True)
class Step(Generic[StateT]):
  """A compiled training step, ``step(state, batch) -> (state, metrics)``.

  What :func:`train_step` and :func:`nnx_train_step` return: calling it calls
  ``run``, and ``jitted`` is the ``jax.jit`` function that ``run`` calls, for
  ``step.jitted.lower(state, batch)``.
  """

  run: Callable[[StateT, Batch], tuple[StateT, Metrics]]
  jitted: jax.stages.Wrapped

  def __call__(self, state: StateT, batch: Batch) -> tuple[StateT, Metrics]:
    return self.run(state, batch)


class TrainState(train_state.TrainState):
  """A Linen ``TrainState`` with an optional ``batch_stats`` collection.

  :meth:`create` starts ``step`` as an int32 array rather than the Python
  ``0`` Flax uses, so the step counter's type never changes between calls and
  a checkpoint restores it exactly.

  With ``batch_stats`` set, :func:`train_step` calls
  ``loss_fn(params, batch_stats, batch)``, which must return
  ``(loss, (aux, new_batch_stats))``: the ``mutable=['batch_stats']`` output
  of ``apply`` goes into the state, ``aux`` into the metrics.
  """

  batch_stats: Any = None

  @classmethod
  def create(cls, *, apply_fn, params, tx, **kwargs):
    """Creates a state with ``step = 0`` (int32) and ``opt_state = tx.init(params)``."""
    state = super().create(apply_fn=apply_fn, params=params, tx=tx, **kwargs)
    return state.replace(step=jnp.zeros([], jnp.int32))


def _split_loss(out: Any, fn: str) -> tuple[jax.Array, Any]:
  """``loss`` or ``(loss, aux)`` as ``(loss, aux)``, checking the loss is scalar."""
  if isinstance(out, tuple):
    if len(out) != 2:
      raise ValueError(
          f'{fn}: loss_fn must return a scalar loss or a pair (loss, aux); got a '
          f'tuple of {len(out)} elements.'
      )
    loss, aux = out
  else:
    loss, aux = out, None
  if jnp.ndim(loss) != 0 or not jnp.issubdtype(jnp.result_type(loss), jnp.floating):
    raise ValueError(
        f'{fn}: the loss must be a floating scalar; got shape {jnp.shape(loss)} '
        f'and dtype {jnp.result_type(loss)}.'
    )
  return loss, aux


def _add3(x, y):
  return x[0] + y[0], x[1] + y[1], x[2] + y[2]


def _norms(grads: Any, updates: Any, params: Any, mask: _masks.MaskLike) -> Metrics:
  """The norms of :func:`wdax.diagnostics.norms`, in one pass per leaf.

  One variadic reduction per leaf sums the squares of its gradient, update
  and parameter together: about a sixth of the operations of three separate
  norms, which XLA's CPU backend would not fuse.
  """
  p_paths, p_leaves, _ = _paths.leaves_with_paths(params)
  g_paths, g_leaves, _ = _paths.leaves_with_paths(grads)
  u_paths, u_leaves, _ = _paths.leaves_with_paths(updates)
  for name, other in (('gradients', g_paths), ('updates', u_paths)):
    _checks.same_paths('metrics', name, other, p_paths, 'params')
  selected = _masks.resolve(mask, params)
  rows, on = [], []
  zero = jnp.zeros([], jnp.float32)
  for g, u, p, decayed in zip(g_leaves, u_leaves, p_leaves, selected):
    if not _paths.is_float(p):
      continue
    g, u, p = (jnp.asarray(x).astype(jnp.float32) for x in (g, u, p))
    sums = jax.lax.reduce(
        (g * g, u * u, p * p), (zero, zero, zero), _add3, tuple(range(p.ndim))
    )
    rows.append(jnp.stack(sums))
    on.append(decayed)
  if not rows:
    sums = jnp.zeros((0, 3), jnp.float32)
  else:
    sums = jnp.stack(rows)
  rows_on = np.asarray(on, bool)
  squares = {
      'grad_norm': jnp.sum(sums[:, 0]),
      'update_norm': jnp.sum(sums[:, 1]),
      'param_norm': jnp.sum(sums[:, 2]),
      'param_norm_decayed': jnp.sum(jnp.where(rows_on, sums[:, 2], zero)),
      'param_norm_not_decayed': jnp.sum(jnp.where(rows_on, zero, sums[:, 2])),
  }
  return {name: jnp.sqrt(value) for name, value in squares.items()}


def _metrics(
    loss: jax.Array,
    aux: Any,
    grads: Any,
    updates: Any,
    params: Any,
    mask: _masks.MaskLike,
    full: bool,
) -> Metrics:
  out: Metrics = {'loss': loss.astype(jnp.float32)}
  if full:
    out.update(_norms(grads, updates, params, mask))
  if aux is not None:
    out['aux'] = aux
  return out


def _constrain(tree: Any, shardings: Any) -> Any:
  if shardings is None:
    return tree
  return jax.lax.with_sharding_constraint(tree, shardings)


def _explicit_mesh(tree: Any) -> Any:
  """The abstract mesh of the first leaf sharded over explicit axes, if any."""
  for leaf in jax.tree_util.tree_leaves(tree):
    mesh = getattr(getattr(jax.typeof(leaf), 'sharding', None), 'mesh', None)
    if mesh is not None and not mesh.empty and AxisType.Explicit in mesh.axis_types:
      return mesh
  return None


def _auto_inside(body: Callable[..., Any], shardings: Any) -> Callable[..., Any]:
  """``body(state, batch)`` with a mesh's explicit axes turned to Auto inside.

  ``jax.make_mesh`` makes meshes with explicit axes by default; on those every
  array's type carries its sharding, and a loss written for Auto sharding
  (FSDP's sharded weights against a sharded batch) is a ``ShardingTypeError``
  at its first ``dot_general``. Inside the step the axes are Auto, so the
  compiler places the collectives, as it does on an Auto mesh; the new state
  comes out with its input's sharding type (or ``shardings``, if given) and
  the metrics replicated. On an Auto mesh the new state is constrained to
  ``shardings``, if given.
  """

  def step(state, batch):
    mesh = _explicit_mesh((state, batch))
    if mesh is None:
      new_state, metrics = body(state, batch)
      return _constrain(new_state, shardings), metrics
    axes = [n for n, t in zip(mesh.axis_names, mesh.axis_types) if t == AxisType.Explicit]
    auto = mesh.update_axis_types({a: AxisType.Auto for a in axes})
    if shardings is None:
      state_out = jax.tree.map(
          lambda x: NamedSharding(mesh, jax.typeof(x).sharding.spec), state
      )
    else:
      state_out = shardings
    with jax.sharding.use_abstract_mesh(auto):
      unsharded = jax.tree.map(lambda _: PartitionSpec(), (state, batch))
      new_state, metrics = body(*jax.sharding.reshard((state, batch), unsharded))
    replicated = jax.tree.map(lambda _: NamedSharding(mesh, PartitionSpec()), metrics)
    return jax.sharding.reshard((new_state, metrics), (state_out, replicated))

  return step




def train_step(
    loss_fn: Callable[..., Any],
    *,
    mask: _masks.MaskLike = None,
    metrics: bool = True,
    shardings: Any = None,
    donate: bool = True,
) -> Step[train_state.TrainState]:
  r"""A jit-compiled Linen training step, ``(state, batch) -> (state, metrics)``.

  .. math::

    g_t = \nabla_\theta L(\theta_t; b_t), \qquad
    (u_t, s_{t+1}) = \mathrm{tx.update}(g_t, s_t, \theta_t), \qquad
    \theta_{t+1} = \theta_t + u_t

  where :math:`L` is ``loss_fn``, :math:`b_t` the batch, :math:`\theta_t` the
  parameters ``state.params``, :math:`s_t` the optimiser state
  ``state.opt_state`` and ``tx`` the state's gradient transformation, whatever
  decay it chains (e.g. ``optax.chain(optax.adam(lr), wdax.decoupled(rate,
  lr=lr, mask=mask))``, after Loshchilov & Hutter, "Decoupled Weight Decay
  Regularization", 2019, arXiv:1711.05101). ``state.step`` is incremented.

  ``loss_fn(params, batch)`` returns a scalar loss or ``(loss, aux)``. When
  the state has ``batch_stats`` (see :class:`TrainState`), it is called as
  ``loss_fn(params, batch_stats, batch)`` and returns
  ``(loss, (aux, new_batch_stats))``. Randomness such as dropout keys travels
  in the batch (e.g. ``jax.random.fold_in(key, step)`` computed outside).

  Args:
    loss_fn: the loss, as above.
    mask: the mask given to the decay, so ``metrics`` can split the parameter
      norm into its decayed and undecayed parts (see :mod:`wdax.masks`).
    metrics: ``False`` reports the loss (and ``aux``) only.
    shardings: a tree of ``jax.sharding.Sharding`` with the state's structure
      (:func:`wdax.sharding.shardings`); the output state is constrained to
      it, so it comes out sharded exactly as it went in.
    donate: donate ``state`` so its buffers are reused for the new state;
      the state passed in must not be used afterwards.

  Returns:
    The :class:`Step` ``step(state, batch) -> (state, metrics)``;
    ``step.jitted`` is the ``jax.jit`` function it calls (for ``.lower``). A
    state from Flax's own ``TrainState.create``, whose ``step`` is the Python
    int 0, has it made an int32 array first, as it comes out of the step:
    otherwise the second call would compile again. ``metrics`` holds
    ``loss``, ``grad_norm``, ``update_norm``, ``param_norm``,
    ``param_norm_decayed``, ``param_norm_not_decayed`` (float32 scalars,
    parameter norms after the update) and ``aux`` if ``loss_fn`` returns one.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> from wdax import training
    >>> params = {'Dense_0': {'kernel': jnp.ones((2, 1)), 'bias': jnp.zeros(1)}}
    >>> mask = wdax.masks.flax_default()
    >>> tx = optax.chain(optax.sgd(0.1), wdax.decoupled(0.5, lr=0.1, mask=mask))
    >>> state = training.TrainState.create(apply_fn=None, params=params, tx=tx)
    >>> def loss_fn(params, batch):
    ...   pred = batch['x'] @ params['Dense_0']['kernel'] + params['Dense_0']['bias'][None]
    ...   return jnp.mean((pred - batch['y']) ** 2)
    >>> step = training.train_step(loss_fn, mask=mask)
    >>> batch = {'x': jnp.zeros((4, 2)), 'y': jnp.zeros((4, 1))}
    >>> state, metrics = step(state, batch)  # zero gradient: decay alone acts
    >>> state.params['Dense_0']['kernel'][:, 0], int(state.step)
    (Array([0.95, 0.95], dtype=float32), 1)
    >>> round(float(metrics['param_norm_decayed']), 4)
    1.3435
  """

  def step(state, batch):
    stats = getattr(state, 'batch_stats', None)
    if stats is None:

      def objective(params):
        return _split_loss(loss_fn(params, batch), 'train_step')

    else:

      def objective(params):
        loss, extra = _split_loss(
            loss_fn(params, stats, batch), 'train_step (with batch_stats)'
        )
        if not (isinstance(extra, tuple) and len(extra) == 2):
          raise ValueError(
              'train_step (with batch_stats): loss_fn(params, batch_stats, '
              'batch) must return (loss, (aux, new_batch_stats)); aux may be '
              'None.'
          )
        return loss, extra

    (loss, extra), grads = jax.value_and_grad(objective, has_aux=True)(
        state.params
    )
    updates, opt_state = state.tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    changes = {'step': state.step + 1, 'params': params, 'opt_state': opt_state}
    if stats is None:
      aux = extra
    else:
      aux, changes['batch_stats'] = extra
    new_state = state.replace(**changes)
    return new_state, _metrics(loss, aux, grads, updates, params, mask, metrics)

  jitted = jax.jit(_auto_inside(step, shardings), donate_argnums=0 if donate else ())

  def run(state, batch):
    # Flax's own TrainState.create starts the count as the Python int 0; an
    # int argument and the array the step returns are cached apart, so the
    # second call would compile again.
    if isinstance(state.step, int):
      state = state.replace(step=jnp.asarray(state.step, jnp.int32))
    return jitted(state, batch)

  return Step(run, jitted)


def _has_variables(tree: Any) -> bool:
  leaves = jax.tree_util.tree_leaves(
      tree, is_leaf=lambda x: isinstance(x, nnx.Variable)
  )
  return any(isinstance(x, nnx.Variable) for x in leaves)


def nnx_train_step(
    graphdef: nnx.GraphDef,
    loss_fn: Callable[..., Any],
    *,
    mask: _masks.MaskLike = None,
    metrics: bool = True,
    shardings: Any = None,
    donate: bool = True,
) -> Step[nnx.State]:
  r"""A jit-compiled NNX training step over split ``(model, optimizer)`` state.

  .. math::

    g_t = \nabla_\theta L(m_t; b_t), \qquad
    (u_t, s_{t+1}) = \mathrm{tx.update}(g_t, s_t, \theta_t), \qquad
    \theta_{t+1} = \theta_t + u_t

  where :math:`m_t` is the model, :math:`\theta_t` its variables selected by
  the optimiser's ``wrt`` filter, :math:`b_t` the batch, :math:`s_t` the
  optimiser state and ``tx`` the optimiser's gradient transformation, e.g.
  ``optax.adamw(lr, mask=wdax.masks.flax_default())`` (Loshchilov & Hutter,
  "Decoupled Weight Decay Regularization", 2019, arXiv:1711.05101).

  Split once, step the state, merge once::

    graphdef, state = nnx.split((model, optimizer))
    step = nnx_train_step(graphdef, loss_fn, mask=mask)
    for batch in batches:
      state, metrics = step(state, batch)
    model, optimizer = nnx.merge(graphdef, state)

  Inside the step the pair is merged, ``loss_fn(model, batch)`` (a scalar or
  ``(loss, aux)``) is differentiated with respect to ``optimizer.wrt``, and
  ``optimizer.update(model, grads)`` applies the update. Variables the model
  changes while computing the loss (``nnx.BatchStat``, RNG counters) are
  carried into the new state. ``state`` may hold ``nnx.Variable`` leaves (as
  ``nnx.split`` returns) or plain arrays (``nnx.as_pure``); the output has the
  same form, so the step is traced once.

  ``nnx.Optimizer`` initialises ``tx`` with a state of variables and updates
  it with plain arrays. wdax masks and :func:`wdax.rates` resolve by path,
  and paths read the same for both, so they select the same leaves either
  way, inside ``optax.adamw(mask=...)`` too. A plain dict of bools handed to
  an optax mask does not: optax maps it over the optimiser's ``nnx.State``,
  whose container type differs. Wrap it as ``wdax.masks.as_mask(tree)``.

  Args:
    graphdef: the graph definition of ``nnx.split((model, optimizer))``.
    loss_fn: ``loss_fn(model, batch)``, returning a scalar loss or
      ``(loss, aux)``.
    mask: the mask given to the decay, for the decayed and undecayed norms.
    metrics: ``False`` reports the loss (and ``aux``) only.
    shardings: a tree of shardings with the state's structure
      (:func:`wdax.sharding.shardings`) to constrain the output state to.
    donate: donate ``state`` so its buffers are reused for the new state.

  Returns:
    The :class:`Step` ``step(state, batch) -> (state, metrics)``;
    ``step.jitted`` is the ``jax.jit`` function it calls. ``metrics`` as for
    :func:`train_step`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> from flax import nnx
    >>> import wdax
    >>> from wdax import training
    >>> model = nnx.Linear(2, 1, rngs=nnx.Rngs(0))
    >>> mask = wdax.masks.flax_default()
    >>> optimizer = nnx.Optimizer(model, optax.adamw(0.1, mask=mask), wrt=nnx.Param)
    >>> graphdef, state = nnx.split((model, optimizer))
    >>> step = training.nnx_train_step(
    ...     graphdef, lambda m, b: jnp.mean((m(b['x']) - b['y']) ** 2), mask=mask)
    >>> batch = {'x': jnp.ones((4, 2)), 'y': jnp.zeros((4, 1))}
    >>> state, metrics = step(state, batch)
    >>> model, optimizer = nnx.merge(graphdef, state)
    >>> int(optimizer.step[...]), sorted(metrics)[:3]
    (1, ['grad_norm', 'loss', 'param_norm'])
  """

  def step(state, batch):
    pure = not _has_variables(state)
    model, optimizer = nnx.merge(graphdef, state)

    def objective(model):
      return _split_loss(loss_fn(model, batch), 'nnx_train_step')

    grad_fn = nnx.value_and_grad(
        objective, argnums=nnx.DiffState(0, optimizer.wrt), has_aux=True
    )
    (loss, aux), grads = grad_fn(model)
    updates = optimizer.update(model, grads)
    params = nnx.state(model, optimizer.wrt)
    new_state = nnx.state((model, optimizer))
    if pure:
      new_state = nnx.as_pure(new_state)
    return new_state, _metrics(loss, aux, grads, updates, params, mask, metrics)

  jitted = jax.jit(_auto_inside(step, shardings), donate_argnums=0 if donate else ())

  return Step(jitted, jitted)
