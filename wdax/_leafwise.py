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
import numpy as np
import optax

from wdax import _checks
from wdax import masks as _masks
from wdax import paths as _paths
from wdax import precision as _precision
from wdax import rate as _rates
from wdax import schedules as _schedules

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


class Selection(NamedTuple):
  """What ``init`` resolves for each parameter leaf, in flattening order.

  ``rates``: the decay rate, ``None`` where nothing decays (the mask, a static
  zero rate, or a frozen learning rate rule it out). ``lrs``: the leaf's own
  learning rate (``None`` without one). ``peaks``: the peak of that learning
  rate for the ``'schedule'`` and ``'corrected'`` couplings of a per-group
  learning rate, else ``None``. ``live``: for a per-layer learning rate with
  zero entries, which layers are not frozen, else ``None``. ``ndims``: each
  leaf's rank, to lay per-layer values along its leading axis.
  """

  rates: list[Any]
  lrs: list[Any]
  peaks: list[Any]
  live: list[Any]
  ndims: list[int]


def _peak(fn: str, lr: Any, given: Any, path: str) -> Any:
  """A leaf's peak learning rate: ``given``, a constant itself, or read."""
  where = f'{fn}: learning rate for parameter path {path!r}'
  if given is not None:
    return _checks.positive(given, f'{where}: peak_lr', traced=True)
  if isinstance(lr, np.ndarray):
    return lr  # constant per layer: each layer its own peak, ratio 1
  if _checks.is_traced(lr):
    raise ValueError(
        f'{where} is a traced value (as optax.inject_hyperparams passes it), '
        'so its peak cannot be read; pass peak_lr.'
    )
  if callable(lr):
    try:
      return _schedules.peak(lr)
    except ValueError as e:
      raise ValueError(f'{where}: {e}') from e
  return _checks.positive(lr, where)


def _peaks(
    fn: str, lrs: list[Any], peak_lr: Any, all_paths: list[str], hidden: list[str]
) -> list[Any]:
  given = (
      _rates.resolve(peak_lr, all_paths, hidden, name=f'{fn}: peak_lr')
      if peak_lr is not None
      else [None] * len(lrs)
  )
  return [
      None if lr is None or _rates.is_frozen(lr) else _peak(fn, lr, g, path)
      for lr, g, path in zip(lrs, given, all_paths)
  ]


def select(
    fn: str,
    rate: _rates.RateLike,
    mask: _masks.Mask,
    params: optax.Params,
    *,
    lr: Any = None,
    rate_name: str = 'rate',
    bound: _rates.RateLike | None = None,
    coupling: str = 'lr',
    peak_lr: Any = None,
) -> Selection:
  """Each leaf's rate and learning rate; see :class:`Selection`.

  Raises the mask's and the rates' errors (a pattern that names no parameter,
  a tree that does not fit, a per-layer array of the wrong length, a leaf no
  learning rate covers), and those of a leaf that is not an array or of a
  static coefficient (``lr`` times the rate, or times ``bound``, static rates
  that a scheduled rate never exceeds) that overflows its leaf's dtype:
  called by ``init``, this is where they surface.
  """
  all_paths, p_leaves = check_params(fn, params)
  hidden = _paths.hidden_paths(params)
  if not all_paths and not hidden:
    return Selection([], [], [], [], [])
  selected = mask.select(params)
  leaf_rates = _rates.resolve(
      rate, all_paths, hidden, name=f'{fn}: {rate_name} tree'
  )
  lrs = _rates.resolve_lr(lr, all_paths, hidden, fn=fn)
  shapes = [tuple(jnp.shape(p)) for p in p_leaves]
  if isinstance(lr, _rates.Rates):
    for path, shape, lr_leaf in zip(all_paths, shapes, lrs):
      _rates.check_layers(lr_leaf, shape, path, f'{fn}: lr')
  active = [
      r if on and not _checks.is_static_zero(r) and not _rates.is_frozen(eta)
      else None
      for on, r, eta in zip(selected, leaf_rates, lrs)
  ]
  # Only a rates() spec holds per-layer values; a schedule is traced
  # abstractly for its shape only there (follow() may wrap a per-layer array).
  if isinstance(rate, _rates.Rates):
    for path, shape, r in zip(all_paths, shapes, active):
      if r is not None:
        _rates.check_layers(r, shape, path, f'{fn}: {rate_name}')
  _check_fits(fn, rate_name, active, lrs, bound, all_paths, hidden, p_leaves, coupling)
  per_group = isinstance(lr, _rates.Rates) and coupling in ('schedule', 'corrected')
  peaks = (
      _peaks(fn, lrs, peak_lr, all_paths, hidden) if per_group else [None] * len(lrs)
  )
  live = [
      None if (rows := _rates.frozen_rows(eta)) is None else ~rows for eta in lrs
  ]
  return Selection(active, lrs, peaks, live, [len(s) for s in shapes])


def _check_fits(
    fn, rate_name, active, lrs, bound, all_paths, hidden, p_leaves, coupling
) -> None:
  if bound is not None:
    bounds = _rates.resolve(bound, all_paths, hidden)
    active = [b if r is not None else None for b, r in zip(bounds, active)]
  with_lr = coupling in ('lr', 'corrected')
  for path, r, p, lr in zip(all_paths, active, p_leaves, lrs):
    static_lr = lr is None or not (callable(lr) or _checks.is_traced(lr))
    if r is not None and static_lr:
      use_lr = with_lr and lr is not None
      c = r if not use_lr or callable(r) or _checks.is_traced(r) else lr * r
      what = f'lr * {rate_name}' if use_lr else rate_name
      _checks.fits(fn, what, c, p.dtype, path)


def at(value: Any, count: jax.Array | None, cache: dict[int, Any]) -> Any:
  """A rate or lr at ``count``; each schedule is evaluated once per trace."""
  if not callable(value):
    return value
  if id(value) not in cache:
    cache[id(value)] = value(count)
  return cache[id(value)]


def _ratio(lr_t: Any, peak: Any) -> Any:
  """``lr_t / peak``, 0 for a frozen layer (whose peak is 0)."""
  if isinstance(peak, np.ndarray):
    return np.asarray(lr_t) / np.where(peak == 0, 1.0, peak)
  # The multiplier alone, in float32: for a constant lr it is exactly 1.
  return jnp.asarray(lr_t, jnp.float32) / jnp.asarray(peak, jnp.float32)


def coefficients(
    sel: Selection, count: jax.Array | None, *, coupling: str = 'lr'
) -> list[Any]:
  r"""Per-leaf decay coefficient ``c_t``, by ``coupling``, else ``None``.

  ``'lr'``: :math:`\eta_t r_t`; ``'none'``: :math:`r_t`; ``'schedule'``:
  :math:`r_t \eta_t/\eta_{\max}`; ``'corrected'``:
  :math:`\eta_t r_t \eta_t/\eta_{\max}`, each leaf with its own learning
  rate :math:`\eta` and its peak; just :math:`r_t` for a leaf without one.
  Per-layer values are laid along the leaf's leading axis.
  """
  cache: dict[int, Any] = {}
  out: list[Any] = []
  for r, lr, top, ndim in zip(sel.rates, sel.lrs, sel.peaks, sel.ndims):
    if r is None:
      out.append(None)
      continue
    r_t = at(r, count, cache)
    lr_t = at(lr, count, cache)
    if lr is None or coupling == 'none':
      c = r_t
    elif coupling == 'lr':
      c = lr_t * r_t
    elif coupling == 'schedule':
      c = r_t * _ratio(lr_t, top)
    else:
      c = lr_t * (r_t * _ratio(lr_t, top))
    out.append(_rates.along_layers(c, ndim))
  return out


def apply(rule: Rule, u: Any, p: Any, c: Any, live: Any) -> Any:
  """``rule(u, p, c)``, leaving ``u`` as it is on frozen layers."""
  if c is None or u is None:
    return u
  new = rule(u, p, c)
  if live is None:
    return new
  return jnp.where(_rates.along_layers(live, p.ndim), new, u)


def add(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  """``u + c p`` with ``c`` cast to the parameter's dtype; keeps ``u``'s dtype."""
  return (u + jnp.asarray(c, p.dtype) * p).astype(u.dtype)


def subtract(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  """``u - c p`` with ``c`` cast to the parameter's dtype; keeps ``u``'s dtype."""
  return (u - jnp.asarray(c, p.dtype) * p).astype(u.dtype)


def transform(
    fn: str,
    rate: _rates.RateLike,
    lr: Any,
    mask: _masks.MaskLike,
    rule: Rule,
    *,
    state_class: Callable[[jax.Array], NamedTuple] = DecayState,
    rate_name: str = 'rate',
    bound: _rates.RateLike | None = None,
    coupling: str = 'lr',
    peak_lr: Any = None,
    check_lost: bool = True,
    scaled_by: Any = None,
) -> optax.GradientTransformation:
  """A decay applying ``rule`` to each leaf ``mask`` and ``rate`` select.

  ``init`` resolves the mask, rates and learning rates against the params, so
  their errors surface there; its state is ``optax.EmptyState()``, or,
  when ``rate`` or ``lr`` holds a schedule, ``state_class(count)``.
  ``rate_name`` names the rate in errors; ``bound``, static rates that a
  scheduled ``rate`` never exceeds, is checked against the leaves' dtypes in
  its place. ``coupling`` says how the decay follows each leaf's ``lr`` (see
  :func:`coefficients`); a leaf whose ``lr`` is the constant 0 is frozen and
  never decayed, whatever the coupling. ``init`` warns of decay lost to
  rounding (:func:`wdax.precision.check`) unless ``check_lost`` is false
  (coupled L2, whose decay per step the optimiser after it sets);
  ``scaled_by`` is the learning rate that scales this transform's output
  later in the chain (optax.adamw's order), a factor of the decay per step.
  """
  rate = _rates.check(rate, f'{fn}: {rate_name}')
  lr = check_lr(lr, f'{fn}: lr')
  mask = _masks.as_mask(mask)
  needs_count = _rates.has_schedule(rate) or (
      lr is not None and _rates.has_schedule(lr)
  )

  def active(params: optax.Params) -> Selection:
    return select(
        fn, rate, mask, params, lr=lr, rate_name=rate_name, bound=bound,
        coupling=coupling, peak_lr=peak_lr,
    )

  def init_fn(params: optax.Params) -> Any:
    sel = active(params)
    if check_lost:
      lrs = sel.lrs
      if scaled_by is not None:
        all_paths, _ = check_params(fn, params)
        hidden = _paths.hidden_paths(params)
        lrs = _rates.resolve_lr(scaled_by, all_paths, hidden, fn=fn)
      _precision.check(fn, params, sel.rates, lrs, coupling=coupling)
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
    sel = active(params)
    coeffs = leaves.spread(coefficients(sel, count, coupling=coupling))
    live = leaves.spread(sel.live)
    new = [
        apply(rule, u, p, c, f)
        for u, p, c, f in zip(leaves.updates, leaves.params, coeffs, live)
    ]
    return jax.tree_util.tree_unflatten(leaves.treedef, new), new_state

  return optax.GradientTransformation(init_fn, update_fn)


def check_lr(lr: Any, name: str) -> Any:
  """Validates a learning rate: ``None``, a number, schedule or :func:`wdax.rates`."""
  if lr is None or isinstance(lr, _rates.Rates):
    return lr
  return _checks.rate(lr, name)


def _shapes(tree: Any) -> tuple[list[str], list[tuple[int, ...]]]:
  with_path, _ = jax.tree_util.tree_flatten_with_path(tree)
  return [_paths.path_str(kp) for kp, _ in with_path], [
      tuple(jnp.shape(x)) for _, x in with_path
  ]


def guarded(
    fn: str,
    tx: optax.GradientTransformation,
    learning_rate: _rates.LrLike,
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
    lrs = _rates.resolve_lr(
        learning_rate, all_paths, _paths.hidden_paths(params), fn=fn
    )
    warned = eps is None
    for path, p, lr in zip(all_paths, p_leaves, lrs):
      _checks.fits(fn, 'learning_rate', lr, p.dtype, path)
      if not warned and eps is not None:
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
