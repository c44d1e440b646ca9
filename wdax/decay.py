"""Weight decay as optax gradient transformations.

Where a decay term enters the chain decides what it means. :func:`l2` adds
``rate * theta`` to the gradient before the optimiser sees it, so momentum and
Adam's preconditioner act on it (coupled L2). :func:`decoupled` goes after the
whole optimiser, learning-rate scaling included, and shrinks the weights
directly (AdamW's decoupled decay). For plain SGD the two coincide; with
momentum or Adam they do not.

The other decays here also go after the optimiser and take the same ``rate``,
``lr`` and ``mask``: :func:`l1` soft-thresholds the proposed weights (exact
zeros), and :func:`cautious` decays only coordinates the optimiser is already
moving toward zero. :func:`wdax.toward` (``reference.py``) pulls them toward
reference weights instead of zero, under the same conventions.

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

from typing import Any

import jax
import jax.numpy as jnp
import optax

from wdax import _leafwise
from wdax import masks as _masks
from wdax import rate as _rates
from wdax._leafwise import DecayState

__all__ = [
    'DecayState',
    'cautious',
    'decoupled',
    'l1',
    'l2',
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
