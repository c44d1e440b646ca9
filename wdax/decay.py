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

All of them behave alike around the rule itself. ``init`` resolves the mask
and rates against the params, so a pattern that names no parameter or a tree
that does not fit is a ``ValueError`` there (see :mod:`wdax.masks` for the
typo guard when optax shows a transform only part of the tree). ``update``
passes ``None`` updates, whole or per leaf, through unchanged, as
``optax.add_decayed_weights`` does, and checks with chex, while tracing, that
each update fits its parameter: the same structure (else the first differing
path is named), shape, and kind of dtype (a floating parameter needs a
floating update, possibly wider, as optax's Adam with ``mu_dtype`` gives).

What the params may hold: floating leaves (bfloat16 and float16 included) and
complex ones are decayed; integer and bool leaves never are, and their
updates pass through unchanged; a zero-size leaf gives a zero-size update; a
``None`` (an empty subtree to JAX, as for a frozen part) needs a ``None``
update and gives one back; a tree without leaves gives its updates back. A
Python number is taken as JAX takes it (``jnp.asarray``: float32 for a
float). Anything else, such as a string, is a ``ValueError`` at ``init``
naming its path.
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
from wdax._leafwise import DecayState

__all__ = [
    'DecayState',
    'TowardState',
    'cautious',
    'decoupled',
    'l1',
    'l2',
    'toward',
]


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
  if jnp.issubdtype(p.dtype, jnp.complexfloating):
    # The step heads away from zero when it has a positive component along
    # the weight: Re(conj(u) p) > 0, the real test for one complex coordinate.
    away = jnp.real(jnp.conj(u) * p) > 0
  else:
    # Signs, not the product u * p, which can underflow to 0 in bfloat16.
    away = ((u > 0) & (p > 0)) | ((u < 0) & (p < 0))
  return jnp.where(away, u, _leafwise.subtract(u, p, c))


def _toward(u: jax.Array, p: jax.Array, c: Any, ref: jax.Array) -> jax.Array:
  c = jnp.asarray(c, p.dtype)
  diff = p - ref
  # p - ref overflows when they are large and of opposite signs, though
  # c (p - ref) may be representable: then take c p - c ref. Only there,
  # since near the reference c (p - ref) is the more accurate of the two.
  term = jnp.where(jnp.isinf(diff), c * p - c * ref, c * diff)
  return (u - term).astype(u.dtype)


def l2(
    rate: _rates.RateLike, *, mask: _masks.MaskLike = None
) -> optax.GradientTransformation:
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

  Its decay per step is set by the optimiser after it (the learning rate, a
  preconditioner), so unlike the decays that go last, ``init`` does not check
  whether rounding erases it in bfloat16 or float16
  (:class:`wdax.LostDecayWarning`).

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
  return _leafwise.transform(
      'l2(...)', rate, None, mask, _leafwise.add, check_lost=False
  )


def decoupled(
    rate: _rates.RateLike,
    *,
    lr: _rates.LrLike | None = None,
    mask: _masks.MaskLike = None,
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
    lr: the learning rate :math:`\eta` (number, schedule or :func:`wdax.rates`,
      each leaf then following its own group's; 0 freezes a group: no decay)
      the decay is tied to, or ``None`` for decay independent of the learning rate.
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
  return _leafwise.transform('decoupled(...)', rate, lr, mask, _leafwise.subtract)


def l1(
    rate: _rates.RateLike,
    *,
    lr: _rates.LrLike | None = None,
    mask: _masks.MaskLike = None,
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
    lr: the learning rate :math:`\eta` (number, schedule or :func:`wdax.rates`,
      each leaf then following its own group's; 0 freezes a group: no
      threshold) the threshold is tied to, or ``None`` for a threshold independent of the learning rate.
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
  return _leafwise.transform('l1(...)', rate, lr, mask, _soft_threshold)


def cautious(
    rate: _rates.RateLike,
    *,
    lr: _rates.LrLike | None = None,
    mask: _masks.MaskLike = None,
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
  For a complex coordinate the test is
  :math:`\operatorname{Re}(\bar u_t \theta_t) > 0` for "away from zero".

  This is Algorithm 1 of Chen et al., "Cautious Weight Decay", 2025,
  arXiv:2510.12402, which writes the step as :math:`x_{t+1} = x_t -
  \eta_t(\tilde u_t + \lambda\,\mathbb{1}[\tilde u_t x_t \ge 0]\,x_t)` with
  :math:`\tilde u_t` the direction that is *subtracted*; with
  :math:`u_t = -\eta_t \tilde u_t` the two tests are the same, equality
  included. Place it *last* in the chain, like :func:`decoupled`.

  Args:
    rate: the coefficient :math:`r`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    lr: the learning rate :math:`\eta` (number, schedule or :func:`wdax.rates`,
      each leaf then following its own group's; 0 freezes a group: no decay)
      the decay is tied to, or ``None`` for decay independent of the learning rate.
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
  return _leafwise.transform('cautious(...)', rate, lr, mask, _cautious)


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
