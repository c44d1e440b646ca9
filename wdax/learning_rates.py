r"""Per-group learning rates: the step of each parameter group, and frozen groups.

:func:`scale_by_learning_rate` is optax's ``scale_by_learning_rate`` with a
learning rate per parameter group (:func:`wdax.rates`), so any optax chain can
end with per-group steps, as a PyTorch optimiser with param groups does. A
group whose learning rate is the constant 0 is frozen: its update is exactly
``-0.0``, so ``optax.apply_updates`` leaves its parameters bitwise as they
were (``x + (-0.0)`` is ``x`` for every float ``x``, ``-0.0`` included; a
``+0.0`` would turn a ``-0.0`` weight into ``+0.0``).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

from wdax import _leafwise
from wdax import masks as _masks
from wdax import paths as _paths
from wdax import rate as _rates

__all__ = ['scale_by_learning_rate']

FROZEN = 'frozen'
TRAINED = 'trained'


def _zero(u: Any) -> Any:
  return None if u is None else jnp.full_like(u, -0.0)


def _scaled(lrs: list[Any], leaves: _leafwise.Leaves, count: Any) -> list[Any]:
  cache: dict[int, Any] = {}
  out = []
  for u, lr in zip(leaves.updates, leaves.spread(lrs)):
    if u is None or lr is None:
      out.append(u)
      continue
    if _rates.is_frozen(lr):
      out.append(_zero(u))
      continue
    # optax's arithmetic: the negated step in the update's dtype, times it.
    lr_t = _rates.along_layers(_leafwise.at(lr, count, cache), u.ndim)
    new = jnp.asarray(-lr_t, u.dtype) * u
    rows = _rates.frozen_rows(lr)
    if rows is not None:
      new = jnp.where(_rates.along_layers(rows, u.ndim), -0.0, new)
    out.append(new)
  return out


def scale_by_learning_rate(
    learning_rate: _rates.LrLike, *, flip_sign: bool = True
) -> optax.GradientTransformation:
  r"""Scales each update by its own parameter group's learning rate.

  .. math::

    u_t \leftarrow -\eta_{g,t}\, u_t

  where :math:`u_t` is the incoming update of a parameter in group :math:`g`
  and :math:`\eta_{g,t}` that group's learning rate at step :math:`t` (a
  number, a schedule, or per layer along the leaf's leading axis). The sign
  is optax's: the result is added to the parameters by
  ``optax.apply_updates``. Place it last in an optax chain, where
  ``optax.scale_by_learning_rate`` goes, before any decoupled decay (whose
  ``lr=`` takes the same :func:`wdax.rates`). A number or schedule gives
  ``optax.scale_by_learning_rate`` itself, state and floats alike.

  A group whose learning rate is the constant 0 is frozen: its update is
  ``-0.0``, and its parameters stay bitwise unchanged. ``init`` checks that
  every parameter has a learning rate (a :func:`wdax.rates` without
  ``default`` must cover every path) and that per-layer arrays fit, naming
  the path. PyTorch's param groups each have their own ``lr``; this is that,
  for any optax chain (Paszke et al., "PyTorch: An Imperative Style,
  High-Performance Deep Learning Library", 2019, arXiv:1912.01703).

  Args:
    learning_rate: :math:`\eta`: a number, an optax schedule, or
      :func:`wdax.rates` of those and of per-layer arrays.
    flip_sign: multiply by :math:`-\eta` (optax's default) rather than
      :math:`\eta`; only a number or schedule may keep the sign.

  Returns:
    An ``optax.GradientTransformation``; its state is ``optax.EmptyState``,
    or a step count when a learning rate is a schedule.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> lr = wdax.rates({'head': 0.1, 'embed': 0.0}, default=0.01)
    >>> tx = optax.chain(optax.trace(0.9), wdax.scale_by_learning_rate(lr))
    >>> params = {'embed': jnp.ones(2), 'body': jnp.ones(2), 'head': jnp.ones(2)}
    >>> g = {k: jnp.ones(2) for k in params}
    >>> updates, _ = tx.update(g, tx.init(params), params)
    >>> {k: v.tolist() for k, v in updates.items()}
    {'body': [-0.009999999776482582, -0.009999999776482582], 'embed': [-0.0, -0.0], 'head': [-0.10000000149011612, -0.10000000149011612]}
  """
  fn = 'scale_by_learning_rate(...)'
  if not isinstance(learning_rate, _rates.Rates):
    return optax.scale_by_learning_rate(learning_rate, flip_sign=flip_sign)
  if not flip_sign:
    raise ValueError(f'{fn}: flip_sign=False is for a single learning rate.')
  lr = learning_rate
  needs_count = lr.has_schedule

  def resolve(params: optax.Params) -> list[Any]:
    return _leafwise.select(fn, 0.0, _masks.as_mask(None), params, lr=lr).lrs

  def init_fn(params: optax.Params) -> Any:
    resolve(params)
    if needs_count:
      return optax.ScaleByScheduleState(count=jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    new_state = state
    if needs_count:
      new_state = optax.ScaleByScheduleState(optax.safe_increment(state.count))
    if updates is None:
      return None, new_state
    leaves = _leafwise.line_up(fn, updates, params)
    count = state.count if needs_count else None
    new = _scaled(resolve(params), leaves, count)
    return jax.tree_util.tree_unflatten(leaves.treedef, new), new_state

  return optax.GradientTransformation(init_fn, update_fn)


def _set_to_frozen() -> optax.GradientTransformation:
  def update_fn(updates, state, params=None):
    del params
    return jax.tree.map(_zero, updates), state

  return optax.GradientTransformation(lambda _: optax.EmptyState(), update_fn)


def partition_frozen(
    fn: str, tx: optax.GradientTransformation, learning_rate: Any
) -> optax.GradientTransformation:
  """``tx`` on the parameters a learning rate trains; ``-0.0`` on frozen ones.

  Frozen leaves (learning rate the constant 0) are hidden from ``tx`` by
  ``optax.partition``, so ``tx`` keeps no moments for them and no decay
  reaches them. Without a constant 0 in ``learning_rate``, ``tx`` itself.
  """
  if not _rates.may_freeze(learning_rate):
    return tx

  def labels(params: optax.Params) -> Any:
    all_paths, _, treedef = _paths.leaves_with_paths(params)
    hidden = _paths.hidden_paths(params)
    lrs = _rates.resolve_lr(learning_rate, all_paths, hidden, fn=fn)
    names = [FROZEN if _rates.is_frozen(x) else TRAINED for x in lrs]
    return jax.tree_util.tree_unflatten(treedef, names)

  return optax.partition({TRAINED: tx, FROZEN: _set_to_frozen()}, labels)
