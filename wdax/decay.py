"""Weight decay as optax gradient transformations.

Where a decay term enters the chain decides what it means. :func:`l2` adds
``rate * theta`` to the gradient before the optimiser sees it, so momentum and
Adam's preconditioner act on it (coupled L2). :func:`decoupled` goes after the
whole optimiser, learning-rate scaling included, and shrinks the weights
directly (AdamW's decoupled decay). For plain SGD the two coincide; with
momentum or Adam they do not.

The other decays here also go after the optimiser and take the same ``rate``,
``lr`` and ``mask``: :func:`l1` soft-thresholds the proposed weights (exact
zeros), :func:`toward` pulls them toward reference weights instead of zero, and
:func:`cautious` decays only coordinates the optimiser is already moving toward
zero.
"""

from __future__ import annotations

from typing import Any
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from wdax import masks as _masks
from wdax import paths as _paths
from wdax import rate as _rates


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


def _active(rate, mask, params, all_paths) -> list[Any]:
  """Each leaf's rate, or ``None`` where the mask or a static zero rules it out."""
  selected = _masks.resolve(mask, params)
  leaf_rates = _rates.resolve(rate, all_paths)
  return [
      r if on and not _rates.is_static_zero(r) else None
      for on, r in zip(selected, leaf_rates)
  ]


def _coefficients(rate, lr, mask, params, all_paths, count):
  """Per-leaf decay coefficient ``c_t``, or ``None`` where nothing decays."""
  cache: dict[int, Any] = {}
  lr_t = _at(lr, count, cache)
  out = []
  for r in _active(rate, mask, params, all_paths):
    if r is None:
      out.append(None)
      continue
    r_t = _at(r, count, cache)
    out.append(r_t if lr is None else lr_t * r_t)
  return out


# A leaf rule maps (update, param, c_t) to the new update of one leaf.


def _add(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  return (u + jnp.asarray(c, p.dtype) * p).astype(u.dtype)


def _subtract(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  return (u - jnp.asarray(c, p.dtype) * p).astype(u.dtype)


def _soft_threshold(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  # Work in the wider of the two dtypes, the one optax.apply_updates adds in:
  # there p + (-p) is exactly 0, so thresholded weights land on exact zeros.
  with jax.numpy_dtype_promotion('standard'):
    dtype = jnp.promote_types(u.dtype, p.dtype)
  u, p, c = u.astype(dtype), p.astype(dtype), jnp.asarray(c, dtype)
  z = p + u
  # u - c*sign(z) equals prox(z) - p without the cancellation of forming
  # prox(z) first, so c = 0 returns u bit for bit. A NaN z fails the test and
  # stays NaN instead of being zeroed.
  return jnp.where(jnp.abs(z) <= c, -p, u - c * jnp.sign(z))


def _cautious(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  # Signs, not the product u * p, which can underflow to 0 in bfloat16.
  away = ((u > 0) & (p > 0)) | ((u < 0) & (p < 0))
  return jnp.where(away, u, _subtract(u, p, c))


def _transform(
    fn: str, rate: Any, lr: Any, mask: Any, leaf
) -> optax.GradientTransformation:
  rate = _rates.check(rate, f'{fn}: rate')
  if lr is not None:
    lr = _rates.check_rate(lr, f'{fn}: lr')
  needs_count = callable(lr) or _rates.has_schedule(rate)

  def update_fn(updates, state, params=None):
    all_paths, u_leaves, p_leaves, u_def = _leaves(fn, updates, params)
    count = state.count if needs_count else None
    coeffs = _coefficients(rate, lr, mask, params, all_paths, count)
    new = [
        u if c is None else leaf(u, p, c)
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
  return _transform('l2(...)', rate, None, mask, _add)


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
  return _transform('decoupled(...)', rate, lr, mask, _subtract)


def l1(
    rate: Any, *, lr: optax.ScalarOrSchedule | None = None, mask: Any = None
) -> optax.GradientTransformation:
  r"""Proximal L1 decay: soft-thresholds the weights the optimiser proposes.

  .. math::

    \theta_{t+1} = \operatorname{sign}(z_t)\,\max(\lvert z_t\rvert - c_t, 0),
    \qquad z_t = \theta_t + u_t, \qquad
    c_t = \begin{cases} \eta_t \, r_t & \text{if } \texttt{lr} \text{ is given}
    \\ r_t & \text{otherwise} \end{cases}

  where :math:`u_t` is the optimiser's update after its learning-rate scaling,
  :math:`\theta_t` the parameters, :math:`z_t` the point the optimiser
  proposes, :math:`r_t` the rate and :math:`\eta_t` the learning rate at step
  :math:`t`. This is the proximal step of the penalty
  :math:`r\lVert\theta\rVert_1` (forward-backward splitting: Duchi & Singer,
  "Efficient Online and Batch Learning Using Forward Backward Splitting",
  JMLR 2009). Unlike a subgradient of :math:`\lvert\theta\rvert`, it leaves
  coordinates at exactly zero. With Adam it is the plain Euclidean proximal
  step, not the one in Adam's metric that Deleu & Bengio derive
  ("Structured Sparsity Inducing Adaptive Optimizers for Deep Learning",
  2021, arXiv:2102.03869).

  Place it *last* in the chain, like :func:`decoupled`. The returned update is
  :math:`\theta_{t+1} - \theta_t`, formed so that ``optax.apply_updates``
  lands on exactly ``0.0`` wherever :math:`\lvert z_t\rvert \le c_t`, in any
  float dtype. It is computed in the wider of the update's and the
  parameter's dtype, which is also the dtype of the returned update.

  Args:
    rate: the coefficient :math:`r`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    lr: the learning rate :math:`\eta` (number or schedule) the threshold is
      tied to, or ``None`` for a threshold independent of the learning rate.
    mask: which leaves to threshold (see :mod:`wdax.masks`); by default every
      floating leaf.

  Returns:
    An ``optax.GradientTransformation``; its state is ``optax.EmptyState``
    unless ``rate`` or ``lr`` holds a schedule, then a step count.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> tx = optax.chain(optax.sgd(1.0), wdax.l1(0.5))
    >>> params = {'w': jnp.array([2.0, 0.25, -1.0])}
    >>> g = {'w': jnp.array([0.0, 0.0, 0.0])}
    >>> updates, _ = tx.update(g, tx.init(params), params)
    >>> optax.apply_updates(params, updates)['w']
    Array([ 1.5,  0. , -0.5], dtype=float32)
  """
  return _transform('l1(...)', rate, lr, mask, _soft_threshold)


def cautious(
    rate: Any, *, lr: optax.ScalarOrSchedule | None = None, mask: Any = None
) -> optax.GradientTransformation:
  r"""Cautious weight decay: decoupled decay only where the step heads to zero.

  .. math::

    u_t \leftarrow u_t - c_t \, \mathbb{1}[u_t \theta_t \le 0] \, \theta_t,
    \qquad c_t = \begin{cases} \eta_t \, r_t & \text{if } \texttt{lr}
    \text{ is given} \\ r_t & \text{otherwise} \end{cases}

  elementwise, where :math:`u_t` is the optimiser's update after its
  learning-rate scaling (the step that will be *added* to the weights),
  :math:`\theta_t` the parameters, :math:`r_t` the rate, :math:`\eta_t` the
  learning rate and :math:`\mathbb{1}[\cdot]` the indicator. A coordinate
  whose step moves it away from zero (:math:`u_t` and :math:`\theta_t` of
  the same sign, both non-zero) is left exactly as the optimiser proposed;
  every other coordinate, including those where :math:`u_t = 0`, gets
  :func:`decoupled`'s decay. The sign test compares signs, so an update too
  small for its product with :math:`\theta_t` to be represented still counts.

  This is Algorithm 1 of Chen et al., "Cautious Weight Decay", 2025,
  arXiv:2510.12402, which writes the step as :math:`x_{t+1} = x_t -
  \eta_t(\tilde u_t + \lambda\,\mathbb{1}[\tilde u_t x_t \ge 0]\,x_t)` with
  :math:`\tilde u_t` the direction that is *subtracted*; with
  :math:`u_t = -\eta_t \tilde u_t` the two tests are the same, equality
  included. Place it *last* in the chain, like :func:`decoupled`.

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
    >>> tx = wdax.cautious(0.5)
    >>> params = {'w': jnp.array([1.0, 1.0])}
    >>> u = {'w': jnp.array([-0.1, 0.1])}  # toward zero, away from zero
    >>> tx.update(u, tx.init(params), params)[0]['w']
    Array([-0.6,  0.1], dtype=float32)
  """
  return _transform('cautious(...)', rate, lr, mask, _cautious)


class TowardState(NamedTuple):
  """State of :func:`toward`: step count and the reference weights."""

  count: jax.Array  # shape=(), dtype=jnp.int32
  # One array per decayed leaf, in the params' flattening order, and
  # optax.MaskedNode() for every other leaf.
  reference: tuple[Any, ...]


def _reference_leaves(
    fn: str, reference: Any, all_paths: list[str], p_leaves: list[Any]
) -> list[Any]:
  r_paths, r_leaves, _ = _paths.leaves_with_paths(reference)
  if r_paths != all_paths:
    ref, par = next(
        (a, b) for a, b in zip(r_paths + [None], all_paths + [None]) if a != b
    )
    raise ValueError(
        f'{fn}: reference and params differ in structure: reference path '
        f'{ref!r} where params have {par!r}; {_paths.listing(all_paths)}.'
    )
  for path, r, p in zip(all_paths, r_leaves, p_leaves):
    if jnp.shape(r) != jnp.shape(p):
      raise ValueError(
          f'{fn}: reference for parameter path {path!r} has shape '
          f'{jnp.shape(r)}, the parameter {jnp.shape(p)}.'
      )
  return r_leaves


def toward(
    reference: Any,
    rate: Any,
    *,
    lr: optax.ScalarOrSchedule | None = None,
    mask: Any = None,
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

  ``init`` copies the reference of every decayed leaf into the state (as
  plain arrays, in the params' leaf order, with ``optax.MaskedNode()`` for
  the other leaves), so it travels with checkpoints and is not baked into
  compiled steps as a constant. This also works with ``nnx.Optimizer``, which
  initialises with variables and updates with plain arrays.

  Args:
    reference: a tree with the params' structure and shapes, or ``'init'`` to
      take the params given to ``init``. A mismatch is a ``ValueError`` at
      ``init`` naming the first differing path.
    rate: the coefficient :math:`r`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    lr: the learning rate :math:`\eta` (number or schedule) the decay is tied
      to, or ``None`` for decay independent of the learning rate.
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
  if lr is not None:
    lr = _rates.check_rate(lr, f'{fn}: lr')

  def init_fn(params: optax.Params) -> TowardState:
    all_paths, p_leaves, _ = _paths.leaves_with_paths(params)
    if isinstance(reference, str):
      r_leaves = p_leaves
    else:
      r_leaves = _reference_leaves(fn, reference, all_paths, p_leaves)
    active = _active(rate, mask, params, all_paths)
    # A copy, so that donating the params to a jitted step cannot also
    # donate the reference.
    stored = tuple(
        optax.MaskedNode() if r is None
        else jnp.array(ref, dtype=p.dtype, copy=True)
        for r, ref, p in zip(active, r_leaves, p_leaves)
    )
    return TowardState(count=jnp.zeros([], jnp.int32), reference=stored)

  def update_fn(updates, state, params=None):
    all_paths, u_leaves, p_leaves, u_def = _leaves(fn, updates, params)
    coeffs = _coefficients(rate, lr, mask, params, all_paths, state.count)
    if len(state.reference) != len(u_leaves):
      raise ValueError(
          f'{fn}: the state holds {len(state.reference)} reference leaves but '
          f'the params have {len(u_leaves)}; was it initialised with other '
          'params?'
      )
    new = []
    for path, u, p, c, ref in zip(
        all_paths, u_leaves, p_leaves, coeffs, state.reference
    ):
      if (c is None) != isinstance(ref, optax.MaskedNode):
        raise ValueError(
            f'{fn}: parameter path {path!r} is decayed now but was not at '
            'init, or the reverse; the mask and rates must select the same '
            'leaves at init and update.'
        )
      if c is None:
        new.append(u)
      else:
        new.append((u - jnp.asarray(c, p.dtype) * (p - ref)).astype(u.dtype))
    state = TowardState(
        count=optax.safe_increment(state.count), reference=state.reference
    )
    return jax.tree_util.tree_unflatten(u_def, new), state

  return optax.GradientTransformation(init_fn, update_fn)
