"""Leaf by leaf: the machinery the decay transforms and the optimisers share.

Internal. A decay is a rule applied to each selected leaf,
``rule(update, param, c_t) -> new update``, where ``c_t`` is the leaf's
coefficient at step ``t``. This module lines up updates and params by path
(checking with chex that they agree), resolves which leaves a mask and rates
select, evaluates schedules once per trace, and builds the
``optax.GradientTransformation`` around a rule.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from wdax import _checks
from wdax import masks as _masks
from wdax import paths as _paths
from wdax import precision as _precision
from wdax import rate as _rates

Rule = Callable[[jax.Array, jax.Array, Any], jax.Array]


class DecayState(NamedTuple):
  """Step count of a decay whose rate or learning rate is a schedule."""

  count: jax.Array  # shape=(), dtype=jnp.int32


class Leaves(NamedTuple):
  """Updates and params flattened side by side, one entry per path.

  ``None`` counts as an entry in both trees: a ``None`` update is passed
  through, and a ``None`` in the params (an empty subtree to JAX, as in
  ``{'w': w, 'frozen': None}``) must have a ``None`` update.
  """

  paths: list[str]
  updates: list[Any]  # None where the update is None
  params: list[Any]  # None where the params hold None
  treedef: Any  # of the updates, None entries counted as leaves

  def spread(self, values: list[Any]) -> list[Any]:
    """One of ``values`` per parameter leaf, ``None`` at the params' ``None``s."""
    it = iter(values)
    return [None if p is None else next(it) for p in self.params]


def _is_none(x: Any) -> bool:
  return x is None


def no_params(fn: str) -> ValueError:
  return ValueError(f'{fn}: update needs params; call tx.update(updates, state, params).')


def _flatten(tree: Any) -> tuple[list[str], list[Any], Any]:
  with_path, treedef = jax.tree_util.tree_flatten_with_path(tree, is_leaf=_is_none)
  return [_paths.path_str(kp) for kp, _ in with_path], [x for _, x in with_path], treedef


def line_up(fn: str, updates: optax.Updates, params: optax.Params | None) -> Leaves:
  """Flattens ``updates`` and ``params`` by path and checks that they agree.

  ``None`` updates, whole or per leaf, are kept as ``None`` (optax's
  ``add_decayed_weights`` passes them through). A structure mismatch names
  the first differing path; a leaf that is not an array, or a shape or
  dtype-kind mismatch, names the path too (checked with chex, at trace time).
  """
  if params is None:
    raise no_params(fn)
  u_paths, u_leaves, treedef = _flatten(updates)
  p_paths, p_leaves, _ = _flatten(params)
  _checks.same_paths(fn, 'updates', u_paths, p_paths, 'params')
  u_leaves = _checks.leaves(fn, 'updates', u_paths, u_leaves)
  p_leaves = _checks.leaves(fn, 'params', p_paths, p_leaves)
  for path, u, p in zip(p_paths, u_leaves, p_leaves):
    if p is None and u is not None:
      raise ValueError(
          f'{fn}: the params hold None at path {path!r}, but the update there '
          f'is {type(u).__name__}, not None.'
      )
  _checks.agree(fn, p_paths, u_leaves, p_leaves)
  return Leaves(p_paths, u_leaves, p_leaves, treedef)


def check_params(fn: str, params: optax.Params) -> tuple[list[str], list[Any]]:
  """The params' paths and leaves, each leaf an array (numbers made arrays).

  Raises a ValueError naming the path of a leaf that is not an array.
  """
  all_paths, p_leaves, _ = _paths.leaves_with_paths(params)
  return all_paths, _checks.leaves(fn, 'params', all_paths, p_leaves)


def select(
    fn: str,
    rate: _rates.RateLike,
    mask: _masks.Mask,
    params: optax.Params,
    *,
    lr: optax.ScalarOrSchedule | None = None,
    rate_name: str = 'rate',
    bound: _rates.RateLike | None = None,
) -> list[Any]:
  """Each leaf's rate, or ``None`` where the mask or a static zero rules it out.

  Raises the mask's and the rates' errors (a pattern that names no parameter,
  a tree that does not fit), and those of a leaf that is not an array or of a
  static coefficient (``lr`` times the rate, or times ``bound``, static rates
  that a scheduled rate never exceeds) that overflows its leaf's dtype:
  called by ``init``, this is where they surface.
  """
  all_paths, p_leaves = check_params(fn, params)
  hidden = _paths.hidden_paths(params)
  if not all_paths and not hidden:
    return []
  selected = mask.select(params)
  leaf_rates = _rates.resolve(
      rate, all_paths, hidden, name=f'{fn}: {rate_name} tree'
  )
  active = [
      r if on and not _checks.is_static_zero(r) else None
      for on, r in zip(selected, leaf_rates)
  ]
  static_lr = lr is None or not (callable(lr) or _checks.is_traced(lr))
  if bound is not None:
    bounds = _rates.resolve(bound, all_paths, hidden)
    active_bounds = [b if r is not None else None for b, r in zip(bounds, active)]
  else:
    active_bounds = active
  for path, r, p in zip(all_paths, active_bounds, p_leaves):
    if r is not None and static_lr:
      c = r if lr is None or callable(r) or _checks.is_traced(r) else lr * r
      what = rate_name if lr is None else f'lr * {rate_name}'
      _checks.fits(fn, what, c, p.dtype, path)
  return active


def at(value: Any, count: jax.Array | None, cache: dict[int, Any]) -> Any:
  """A rate or lr at ``count``; each schedule is evaluated once per trace."""
  if not callable(value):
    return value
  if id(value) not in cache:
    cache[id(value)] = value(count)
  return cache[id(value)]


def coefficients(
    active: list[Any], lr: optax.ScalarOrSchedule | None, count: jax.Array | None
) -> list[Any]:
  """Per-leaf decay coefficient ``c_t = lr_t * r_t`` (or ``r_t``), else ``None``."""
  cache: dict[int, Any] = {}
  lr_t = at(lr, count, cache)
  out = []
  for r in active:
    if r is None:
      out.append(None)
    else:
      r_t = at(r, count, cache)
      out.append(r_t if lr is None else lr_t * r_t)
  return out


def add(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  """``u + c p`` with ``c`` cast to the parameter's dtype; keeps ``u``'s dtype."""
  return (u + jnp.asarray(c, p.dtype) * p).astype(u.dtype)


def subtract(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  """``u - c p`` with ``c`` cast to the parameter's dtype; keeps ``u``'s dtype."""
  return (u - jnp.asarray(c, p.dtype) * p).astype(u.dtype)


def transform(
    fn: str,
    rate: _rates.RateLike,
    lr: optax.ScalarOrSchedule | None,
    mask: _masks.MaskLike,
    rule: Rule,
    *,
    state_class: Callable[[jax.Array], NamedTuple] = DecayState,
    rate_name: str = 'rate',
    bound: _rates.RateLike | None = None,
    check_lost: bool = True,
    scaled_by: optax.ScalarOrSchedule | None = None,
) -> optax.GradientTransformation:
  """A decay applying ``rule`` to each leaf ``mask`` and ``rate`` select.

  ``init`` resolves the mask and rates against the params, so their errors
  surface there; its state is ``optax.EmptyState()``, or,
  when ``rate`` or ``lr`` holds a schedule, ``state_class(count)``.
  ``rate_name`` names the rate in errors; ``bound``, static rates that a
  scheduled ``rate`` never exceeds, is checked against the leaves' dtypes in
  its place. ``init`` warns of decay lost to rounding
  (:func:`wdax.precision.check`) unless ``check_lost`` is false (coupled L2,
  whose decay per step the optimiser after it sets); ``scaled_by`` is the
  learning rate that scales this transform's output later in the chain
  (optax.adamw's order), a factor of the decay per step.
  """
  rate = _rates.check(rate, f'{fn}: {rate_name}')
  if lr is not None:
    lr = _checks.rate(lr, f'{fn}: lr')
  mask = _masks.as_mask(mask)
  needs_count = callable(lr) or _rates.has_schedule(rate)

  def active(params: optax.Params) -> list[Any]:
    return select(
        fn, rate, mask, params, lr=lr, rate_name=rate_name, bound=bound
    )

  def init_fn(params: optax.Params) -> Any:
    rates = active(params)
    if check_lost:
      _precision.check(fn, params, rates, lr if scaled_by is None else scaled_by)
    if needs_count:
      return state_class(jnp.zeros([], jnp.int32))
    return optax.EmptyState()

  def update_fn(updates, state, params=None):
    new_state = state
    if needs_count:
      new_state = state_class(optax.safe_increment(state.count))
    if updates is None:
      return None, new_state
    leaves = line_up(fn, updates, params)
    count = state.count if needs_count else None
    coeffs = leaves.spread(coefficients(active(params), lr, count))
    new = [
        u if c is None or u is None else rule(u, p, c)
        for u, p, c in zip(leaves.updates, leaves.params, coeffs)
    ]
    return jax.tree_util.tree_unflatten(leaves.treedef, new), new_state

  return optax.GradientTransformation(init_fn, update_fn)


def _shapes(tree: Any) -> tuple[list[str], list[tuple[int, ...]]]:
  with_path, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [_paths.path_str(kp) for kp, _ in with_path], [
      tuple(jnp.shape(x)) for _, x in with_path
  ]


def guarded(
    fn: str,
    tx: optax.GradientTransformation,
    learning_rate: optax.ScalarOrSchedule,
    *,
    every_update: bool = False,
    eps: tuple[Any, Any] | None = None,
) -> optax.GradientTransformation:
  r"""A whole optimiser ``tx`` whose inputs are checked before optax sees them.

  The decay inside an optimiser checks what reaches it, but optax's Adam or
  momentum runs first and would fail deep inside JAX, or broadcast an update
  of the wrong shape silently. So ``init`` checks that every params leaf is
  an array and that a static ``learning_rate`` does not overflow a leaf's
  dtype; ``update`` checks the updates against the params as the decays do
  (``every_update``: no ``None`` update where there is a parameter, for
  optimisers whose moments need one), and the state against the state
  ``init`` would give these params, naming the first differing path. All of it
  runs while tracing, and the state is ``tx``'s own.

  ``eps``, Adam's ``(eps, eps_root)``: ``init`` warns, once, of a floating
  leaf in whose dtype both are 0 (1e-8 is 0 in float16), where Adam's step
  :math:`\hat m / (\sqrt{\hat v + \epsilon_r} + \epsilon)` is 0/0 = NaN at
  every coordinate whose gradients so far are all 0. A warning, not an
  error: ``optax.adamw`` runs so, and ``wdax.adamw`` matches it bit for bit.
  """

  def init_fn(params: optax.Params) -> Any:
    all_paths, p_leaves = check_params(fn, params)
    warned = eps is None
    for path, p in zip(all_paths, p_leaves):
      _checks.fits(fn, 'learning_rate', learning_rate, p.dtype, path)
      if not warned:
        why = _checks.vanishing_eps(fn, eps, p.dtype, path)
        if why is not None:
          warnings.warn(why, UserWarning, stacklevel=2)
          warned = True
    return tx.init(params)

  def update_fn(updates, state, params=None, **extra_args):
    if updates is not None:
      leaves = line_up(fn, updates, params)
      if every_update:
        for path, u, p in zip(leaves.paths, leaves.updates, leaves.params):
          if u is None and p is not None:
            raise ValueError(
                f'{fn}: the update for parameter path {path!r} is None; this '
                'optimiser needs an update for every parameter (use '
                'optax.masked or optax.set_to_zero to leave one unchanged).'
            )
      with warnings.catch_warnings():
        # init warned already; this is only its state's shapes.
        warnings.simplefilter('ignore', _precision.LostDecayWarning)
        expected = jax.eval_shape(tx.init, params)
      s_paths, s_shapes = _shapes(state)
      e_paths, e_shapes = _shapes(expected)
      _checks.same_paths(fn, 'state', s_paths, e_paths, 'a state for these params')
      for path, got, want in zip(s_paths, s_shapes, e_shapes):
        if got != want:
          raise ValueError(
              f'{fn}: the state does not fit the params: state path {path!r} '
              f'has shape {got} where a state for these params has {want}; was '
              'it initialised with other params?'
          )
    return tx.update(updates, state, params, **extra_args)

  return optax.GradientTransformationExtraArgs(init_fn, update_fn)
