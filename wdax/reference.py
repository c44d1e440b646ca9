"""Weight decay toward reference weights instead of toward zero (L2-SP).

:func:`toward` is a decoupled decay like :func:`wdax.decoupled`, with the same
``rate``, ``lr`` and ``mask`` and the same handling of the params (see
``decay.py``), that pulls each decayed weight toward its own reference
value, typically the pre-trained starting point of fine-tuning. Its state
carries the reference, so it needs a module of its own: the state's layout,
the checks that the reference fits the params, and the per-leaf pull.
"""

from __future__ import annotations

import functools
from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from wdax import _checks
from wdax import _leafwise
from wdax import masks as _masks
from wdax import paths as _paths
from wdax import precision as _precision
from wdax import rate as _rates

__all__ = [
    'TowardState',
    'toward',
]



def _toward(u: jax.Array, p: jax.Array, c: Any, ref: jax.Array) -> jax.Array:
  c = jnp.asarray(c, p.dtype)
  diff = p - ref
  # p - ref overflows when they are large and of opposite signs, though
  # c (p - ref) may be representable: then take c p - c ref. Only there,
  # since near the reference c (p - ref) is the more accurate of the two.
  term = jnp.where(jnp.isinf(diff), c * p - c * ref, c * diff)
  return (u - term).astype(u.dtype)


class TowardState(NamedTuple):
  """State of :func:`toward`: step count and the reference weights."""

  # optax's own states type their step count so (ScaleByAdamState.count):
  # what optax.safe_increment returns. The field name is the public state
  # layout, shared with optax, though it shadows tuple.count.
  count: jax.typing.ArrayLike  # type: ignore[assignment]  # shape=(), int32
  # The params' tree: a copy of the reference weight at each decayed leaf,
  # optax.MaskedNode() at every other leaf.
  reference: optax.Params


def _reference_leaves(
    fn: str, reference: optax.Params, all_paths: list[str], p_leaves: list[Any]
) -> list[Any]:
  r_paths, r_leaves, _ = _paths.leaves_with_paths(reference)
  _checks.same_paths(fn, 'reference', r_paths, all_paths, 'params')
  r_leaves = _checks.leaves(fn, 'reference', r_paths, r_leaves)
  for path, r, p in zip(all_paths, r_leaves, p_leaves):
    if jnp.shape(r) != jnp.shape(p):
      raise ValueError(
          f'{fn}: reference for parameter path {path!r} has shape '
          f'{jnp.shape(r)}, the parameter {jnp.shape(p)}.'
      )
    real = not jnp.issubdtype(p.dtype, jnp.complexfloating)
    if real and jnp.issubdtype(r.dtype, jnp.complexfloating):
      raise ValueError(
          f'{fn}: reference for parameter path {path!r} is {r.dtype}, the '
          f'parameter real ({p.dtype}); its imaginary part would be dropped.'
      )
  return r_leaves


def _stored(fn: str, reference: Any, params_def: Any, all_paths: list[str]) -> list[Any]:
  """The state's reference, one entry (array or MaskedNode) per param leaf."""
  try:
    return params_def.flatten_up_to(reference)
  except (ValueError, TypeError):
    with_path, _ = jax.tree_util.tree_flatten_with_path(
        reference, is_leaf=lambda x: isinstance(x, optax.MaskedNode)
    )
    _checks.same_paths(
        fn, 'reference', [_paths.path_str(kp) for kp, _ in with_path], all_paths,
        'params',
    )
    raise


def toward(
    reference: optax.Params | str,
    rate: _rates.RateLike,
    *,
    lr: _rates.LrLike | None = None,
    mask: _masks.MaskLike = None,
) -> optax.GradientTransformation:
  r"""Decay toward reference weights instead of toward zero (L2-SP).

  .. math::

    u_t \leftarrow u_t - c_t \, (\theta_t - \theta^{\mathrm{ref}}), \qquad
    c_t = \begin{cases} \eta_t \, r_t & \text{if } \texttt{lr} \text{ is given}
    \\ r_t & \text{otherwise} \end{cases}

  where :math:`u_t` is the optimiser's update after its learning-rate scaling,
  :math:`\theta_t` the parameters, :math:`\theta^{\mathrm{ref}}` the reference
  weights (typically the pre-trained starting point of fine-tuning),
  :math:`r_t` the rate and :math:`\eta_t` the learning rate at step
  :math:`t`. Place it *last* in the chain, like :func:`decoupled`; with a
  zero reference it is :func:`decoupled`. The penalty is from Li, Grandvalet &
  Davoine, "Explicit Inductive Bias for Transfer Learning with Convolutional
  Networks", 2018, arXiv:1802.01483, applied here in decoupled form.

  ``init`` copies the reference of every decayed leaf into the state, a tree
  shaped like the params with ``optax.MaskedNode()`` where nothing decays. So
  it travels with checkpoints under each parameter's own path, is placed by
  :mod:`wdax.sharding` like its parameter, works with
  ``optax.tree.map_params``, and is not baked into compiled steps as a
  constant. This also works with ``nnx.Optimizer``, which initialises with
  variables and updates with plain arrays.

  Args:
    reference: a tree with the params' structure and shapes, or ``'init'`` to
      take the params given to ``init``. A mismatch is a ``ValueError`` at
      ``init`` naming the first differing path.
    rate: the coefficient :math:`r`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    lr: the learning rate :math:`\eta` (number, schedule or :func:`wdax.rates`,
      each leaf then following its own group's; 0 freezes a group: no decay)
      the decay is tied to, or ``None`` for decay independent of the learning rate.
    mask: which leaves to decay (see :mod:`wdax.masks`); by default every
      floating leaf.

  Returns:
    An ``optax.GradientTransformation`` whose state is a :class:`TowardState`.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> tx = wdax.toward('init', 0.5)
    >>> state = tx.init({'w': jnp.array([1.0])})
    >>> params = {'w': jnp.array([3.0])}  # moved away from the reference 1.0
    >>> tx.update({'w': jnp.array([0.0])}, state, params)[0]['w']
    Array([-1.], dtype=float32)
  """
  fn = 'toward(...)'
  if isinstance(reference, str) and reference != 'init':
    raise ValueError(
        f"{fn}: reference must be a params-shaped tree or 'init'; got "
        f'{reference!r}.'
    )
  rate = _rates.check(rate, f'{fn}: rate')
  lr = _leafwise.check_lr(lr, f'{fn}: lr')
  mask = _masks.as_mask(mask)

  def active(params: optax.Params) -> _leafwise.Selection:
    return _leafwise.select(fn, rate, mask, params, lr=lr)

  def init_fn(params: optax.Params) -> TowardState:
    p_leaves, r_leaves = _initial_leaves(fn, reference, params)
    sel = active(params)
    _precision.check(fn, params, sel.rates, sel.lrs)
    # A copy, so that donating the params to a jitted step cannot also
    # donate the reference.
    stored = [
        optax.MaskedNode() if r is None
        else jnp.array(ref, dtype=p.dtype, copy=True)
        for r, ref, p in zip(sel.rates or [None] * len(p_leaves), r_leaves, p_leaves)
    ]
    return TowardState(
        count=jnp.zeros([], jnp.int32),
        reference=jax.tree_util.tree_unflatten(jax.tree_util.tree_structure(params), stored),
    )

  def update_fn(updates, state, params=None):
    new_state = TowardState(
        count=optax.safe_increment(state.count), reference=state.reference
    )
    if updates is None:
      return None, new_state
    leaves = _leafwise.line_up(fn, updates, params)
    all_paths, _, p_def = _paths.leaves_with_paths(params)
    refs = leaves.spread(_stored(fn, state.reference, p_def, all_paths))
    sel = active(params)
    coeffs = leaves.spread(_leafwise.coefficients(sel, state.count))
    live = leaves.spread(sel.live)
    new = [
        _pull_leaf(fn, *args)
        for args in zip(leaves.paths, leaves.updates, leaves.params, coeffs, refs, live)
    ]
    return jax.tree_util.tree_unflatten(leaves.treedef, new), new_state

  return optax.GradientTransformation(init_fn, update_fn)


def _initial_leaves(fn: str, reference: Any, params: optax.Params) -> tuple[list[Any], list[Any]]:
  """The params' leaves, checked, and the reference's beside them (the
  params' own for ``'init'``)."""
  all_paths, p_leaves = _leafwise.check_params(fn, params)
  if isinstance(reference, str) or not p_leaves:
    # A tree without leaves (optax.tree.map_params initialises with one)
    # has nothing to compare the reference with.
    return p_leaves, p_leaves
  return p_leaves, _reference_leaves(fn, reference, all_paths, p_leaves)


def _pull_leaf(fn: str, path: str, u: Any, p: Any, c: Any, ref: Any, rows: Any) -> Any:
  """One leaf's update pulled toward its reference, after checking that the
  state was made for this leaf."""
  if p is None:
    return u
  if (c is None) != isinstance(ref, optax.MaskedNode):
    raise ValueError(
        f'{fn}: parameter path {path!r} is decayed now but was not at '
        'init, or the reverse; the mask and rates must select the same '
        'leaves at init and update.'
    )
  if c is None or u is None:
    return u
  if jnp.shape(ref) != jnp.shape(p):
    raise ValueError(
        f'{fn}: the state does not fit the params: its reference for '
        f'parameter path {path!r} has shape {jnp.shape(ref)}, the parameter '
        f'{jnp.shape(p)}; was it initialised with other params?'
    )
  return _leafwise.apply(functools.partial(_toward, ref=ref), u, p, c, rows)
