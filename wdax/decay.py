"""Weight decay as optax gradient transformations.

Where a decay term enters the chain decides what it means. :func:`l2` adds
``rate * theta`` to the gradient before the optimiser sees it, so momentum and
Adam's preconditioner act on it (coupled L2). :func:`decoupled` goes after the
whole optimiser, learning-rate scaling included, and shrinks the weights
directly (AdamW's decoupled decay). For plain SGD the two coincide; with
momentum or Adam they do not.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from wdax import masks as _masks
from wdax import paths as _paths
from wdax import rates as _rates


class DecayState(NamedTuple):
  """Step count of a decay whose rate or learning rate is a schedule."""

  count: jax.Array  # shape=(), dtype=jnp.int32


def _init(needs_count: bool):
  def init_fn(params: optax.Params) -> DecayState | optax.EmptyState:
    del params
    if needs_count:
      return DecayState(count=jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  return init_fn


def _at(value: Any, count: jax.Array | None, cache: dict[int, Any]) -> Any:
  """A rate or lr at ``count``; each schedule is evaluated once per trace."""
  if not callable(value):
    return value
  if id(value) not in cache:
    cache[id(value)] = value(count)
  return cache[id(value)]


def _leaves(fn: str, updates: optax.Updates, params: optax.Params | None):
  if params is None:
    raise ValueError(
        f'{fn}: update needs params; call tx.update(updates, state, params).'
    )
  all_paths, p_leaves, _ = _paths.leaves_with_paths(params)
  u_paths, u_leaves, u_def = _paths.leaves_with_paths(updates)
  if u_paths != all_paths:
    bad = next(
        (a, b) for a, b in zip(u_paths + [None], all_paths + [None]) if a != b
    )
    raise ValueError(
        f'{fn}: updates and params differ in structure: update path {bad[0]!r} '
        f'where params have {bad[1]!r}.'
    )
  return all_paths, u_leaves, p_leaves, u_def


def _coefficients(fn, rate, lr, mask, params, all_paths, count):
  """Per-leaf decay coefficient ``c_t``, or ``None`` where nothing decays."""
  selected = _masks.resolve(mask, params)
  leaf_rates = _rates.resolve(rate, all_paths)
  cache: dict[int, Any] = {}
  lr_t = _at(lr, count, cache)
  out = []
  for on, r in zip(selected, leaf_rates):
    if not on or _rates.is_static_zero(r):
      out.append(None)
      continue
    r_t = _at(r, count, cache)
    out.append(r_t if lr is None else lr_t * r_t)
  return out


def _transform(fn: str, rate: Any, lr: Any, mask: Any, sign: float):
  rate = _rates.check(rate, f'{fn}: rate')
  if lr is not None:
    lr = _rates.check_rate(lr, f'{fn}: lr')
  needs_count = callable(lr) or _rates.has_schedule(rate)

  def update_fn(updates, state, params=None):
    all_paths, u_leaves, p_leaves, u_def = _leaves(fn, updates, params)
    count = state.count if needs_count else None
    coeffs = _coefficients(fn, rate, lr, mask, params, all_paths, count)
    new = [
        u if c is None else (u + sign * jnp.asarray(c, p.dtype) * p).astype(u.dtype)
        for u, p, c in zip(u_leaves, p_leaves, coeffs)
    ]
    if needs_count:
      state = DecayState(count=optax.safe_increment(state.count))
    return jax.tree_util.tree_unflatten(u_def, new), state

  return optax.GradientTransformation(_init(needs_count), update_fn)


def l2(rate: Any, *, mask: Any = None) -> optax.GradientTransformation:
  r"""Coupled L2 regularisation: adds ``rate * theta`` to the gradient.

  .. math::

    u_t \leftarrow g_t + r_t \, \theta_t

  where :math:`g_t` is the incoming gradient, :math:`\theta_t` the parameters
  and :math:`r_t` the rate at step :math:`t`. This is the gradient of
  :math:`\tfrac{r}{2}\lVert\theta\rVert^2`, so it belongs *before* the
  optimiser: momentum and any preconditioner then act on it. This is what
  PyTorch's ``SGD(weight_decay=...)`` and ``Adam(weight_decay=...)`` do.

  Under Adam, coupled L2 is divided by :math:`\sqrt{\hat v}` like the rest of
  the gradient, so weights with large gradients are barely regularised; see
  Loshchilov & Hutter, "Decoupled Weight Decay Regularization", 2019,
  arXiv:1711.05101. Prefer :func:`decoupled` with adaptive optimisers.

  Args:
    rate: the coefficient :math:`r`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    mask: which leaves to regularise (see :mod:`wdax.masks`); by default every
      floating leaf.

  Returns:
    An ``optax.GradientTransformation``; its state is ``optax.EmptyState``
    unless ``rate`` holds a schedule, then a step count.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> tx = optax.chain(wdax.l2(0.1), optax.sgd(1.0))
    >>> params = {'w': jnp.array([2.0])}
    >>> updates, _ = tx.update({'w': jnp.array([0.0])}, tx.init(params), params)
    >>> updates['w']
    Array([-0.2], dtype=float32)
  """
  return _transform('l2(...)', rate, None, mask, +1.0)


def decoupled(
    rate: Any, *, lr: optax.ScalarOrSchedule | None = None, mask: Any = None
) -> optax.GradientTransformation:
  r"""Decoupled weight decay, applied after the whole optimiser.

  .. math::

    u_t \leftarrow u_t - c_t \, \theta_t, \qquad
    c_t = \begin{cases} \eta_t \, r_t & \text{if } \texttt{lr} \text{ is given}
    \\ r_t & \text{otherwise} \end{cases}

  where :math:`u_t` is the optimiser's update after its learning-rate scaling,
  :math:`\theta_t` the parameters, :math:`r_t` the rate and :math:`\eta_t` the
  learning rate at step :math:`t`. Place it *last* in the chain, after
  ``optax.scale_by_learning_rate`` (or a full optimiser such as
  ``optax.adam``).

  With ``lr`` given, this is AdamW's convention in optax and PyTorch: the
  decay per step is :math:`\eta_t r_t` and follows the learning-rate schedule.
  Without it, the decay per step is :math:`r_t`, independent of the learning
  rate (Wortsman et al., "Small-scale proxies for large-scale Transformer
  training instabilities", 2023, arXiv:2309.14322); it follows a schedule only
  if ``rate`` is one. Decoupled decay is from Loshchilov & Hutter, "Decoupled
  Weight Decay Regularization", 2019, arXiv:1711.05101.

  Schedules count steps from 0, as optax's learning-rate schedules do, so pass
  the optimiser's own schedule as ``lr`` to keep them aligned.

  Args:
    rate: the coefficient :math:`r`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    lr: the learning rate :math:`\eta` (number or schedule) the decay is tied
      to, or ``None`` for decay independent of the learning rate.
    mask: which leaves to decay (see :mod:`wdax.masks`); by default every
      floating leaf.

  Returns:
    An ``optax.GradientTransformation``; its state is ``optax.EmptyState``
    unless ``rate`` or ``lr`` holds a schedule, then a step count.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> tx = optax.chain(optax.adam(1e-3), wdax.decoupled(0.1, lr=1e-3))
    >>> params = {'w': jnp.array([2.0])}
    >>> updates, _ = tx.update({'w': jnp.array([0.0])}, tx.init(params), params)
    >>> updates['w']  # Adam's step is 0 for a zero gradient; decay is lr * r * w.
    Array([-0.0002], dtype=float32)
  """
  return _transform('decoupled(...)', rate, lr, mask, -1.0)
