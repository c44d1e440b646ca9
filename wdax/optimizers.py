r"""Drop-in optimisers whose decay convention is a named choice.

:func:`adamw` and :func:`sgdw` take ``coupling``, which says how the decay per
step :math:`c_t` relates to the learning rate :math:`\eta_t` (peak
:math:`\eta_{\max}`) and the weight decay :math:`\lambda`:

========================  =======================================  ==========================
``coupling``              :math:`c_t`                              from
========================  =======================================  ==========================
``'lr'``                  :math:`\eta_t \lambda`                   optax, PyTorch
``'schedule'``            :math:`\lambda\,\eta_t/\eta_{\max}`      Loshchilov & Hutter 2019
``'none'``                :math:`\lambda`                          Wortsman et al. 2023
``'corrected'``           :math:`\lambda\,\eta_t^2/\eta_{\max}`    Defazio 2025 (AdamC)
========================  =======================================  ==========================

:func:`adams` is Adam with the decay divided by the root mean of Adam's
second-moment estimate.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import optax

from wdax import _checks
from wdax import _leafwise
from wdax import learning_rates as _learning_rates
from wdax import masks as _masks
from wdax import paths as _paths
from wdax import rate as _rates
from wdax import schedules as _schedules

COUPLINGS = ('lr', 'schedule', 'none', 'corrected')

# optax keeps the step count of a scheduled add_decayed_weights in a NamedTuple
# it does not export. wdax.adamw(coupling='lr') uses the same class, read off
# such a state, so that its state has optax.adamw's tree structure. It is
# read abstractly: a computation at import would start JAX's backend, after
# which the number of host devices (XLA_FLAGS) can no longer be set.
_OPTAX_DECAY_STATE = type(
    jax.eval_shape(lambda: optax.add_decayed_weights(optax.constant_schedule(0.0)).init({}))
)


def _check_coupling(fn: str, coupling: str, peak_lr: Any) -> None:
  _checks.choice(coupling, 'coupling', COUPLINGS)
  if peak_lr is not None and coupling not in ('schedule', 'corrected'):
    raise ValueError(
        f"{fn}: peak_lr is used only by coupling 'schedule' or 'corrected', "
        f'not {coupling!r}.'
    )


def _decoupled_after(
    fn: str,
    coupling: str,
    learning_rate: _rates.LrLike,
    weight_decay: _rates.RateLike,
    mask: _masks.MaskLike,
    peak_lr: Any,
) -> optax.GradientTransformation:
  """The decay that follows an optimiser whose update is already lr-scaled."""
  if isinstance(learning_rate, _rates.Rates):
    # Each leaf follows its own group's learning rate and that rate's peak.
    return _leafwise.transform(
        fn, weight_decay, learning_rate, mask, _leafwise.subtract,
        coupling=coupling, peak_lr=peak_lr, rate_name='weight_decay',
    )
  if isinstance(peak_lr, _rates.Rates):
    raise ValueError(
        f'{fn}: peak_lr is per group (wdax.rates) but the learning rate is '
        'not; give one peak_lr.'
    )
  if coupling == 'lr':
    return _leafwise.transform(
        fn, weight_decay, learning_rate, mask, _leafwise.subtract, rate_name='weight_decay'
    )
  if coupling == 'none':
    return _leafwise.transform(
        fn, weight_decay, None, mask, _leafwise.subtract, rate_name='weight_decay'
    )
  # The rate is weight_decay times lr_t / peak: weight_decay at the peak.
  rate = _schedules.multiplied(fn, learning_rate, weight_decay, peak_lr)
  lr = None if coupling == 'schedule' else learning_rate
  return _leafwise.transform(
      fn, rate, lr, mask, _leafwise.subtract, bound=weight_decay, rate_name='weight_decay'
  )


def _check_common(
    fn: str, learning_rate: _rates.LrLike, weight_decay: _rates.RateLike
) -> None:
  _leafwise.check_lr(learning_rate, f'{fn}: learning_rate')
  _rates.check(weight_decay, f'{fn}: weight_decay')


def _add_as_optax(u: jax.Array, p: jax.Array, c: Any) -> jax.Array:
  # optax.add_decayed_weights' arithmetic, dtypes included: a float32 rate
  # (an array, or injected in float32) times bfloat16 params is float32, and
  # optax.apply_updates rounds the sum once, at the end.
  return u + c * p


def _optax_decay(
    fn: str,
    weight_decay: _rates.RateLike,
    mask: _masks.MaskLike,
    learning_rate: optax.ScalarOrSchedule,
) -> optax.GradientTransformation:
  """``optax.add_decayed_weights(weight_decay, mask)`` with wdax rates and masks.

  The same float operations and the same state (``optax.masked``'s state
  around the decay's when there is a mask), so that it is bit for bit optax's
  and a checkpoint of either restores into the other.
  """
  decay = _leafwise.transform(
      fn,
      weight_decay,
      None,
      None,
      _add_as_optax,
      state_class=_OPTAX_DECAY_STATE,
      rate_name='weight_decay',
      scaled_by=learning_rate,
  )
  if mask is None:
    return decay
  return optax.masked(decay, _masks.as_mask(mask))


def adamw(
    learning_rate: _rates.LrLike,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    eps_root: float = 0.0,
    mu_dtype: Any | None = None,
    weight_decay: _rates.RateLike = 1e-4,
    mask: _masks.MaskLike = None,
    nesterov: bool = False,
    coupling: str = 'lr',
    peak_lr: float | _rates.Rates | None = None,
) -> optax.GradientTransformation:
  r"""Adam with decoupled weight decay, in the coupling of your choice.

  .. math::

    \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
    - c_t \theta_t, \qquad c_t = \begin{cases}
    \eta_t \lambda & \texttt{coupling='lr'} \\
    \lambda\,\eta_t/\eta_{\max} & \texttt{coupling='schedule'} \\
    \lambda & \texttt{coupling='none'} \\
    \lambda\,\eta_t^2/\eta_{\max} & \texttt{coupling='corrected'}
    \end{cases}

  where :math:`\theta_t` are the parameters, :math:`\hat m_t, \hat v_t` Adam's
  bias-corrected moment estimates (decay rates :math:`\beta_1, \beta_2`),
  :math:`\epsilon` its stability constant, :math:`\eta_t` the learning rate
  at step :math:`t`, :math:`\eta_{\max}` its peak, :math:`\lambda` the weight
  decay and :math:`c_t` the decay per step (on leaves ``mask`` selects).

  * ``'lr'``: optax's and PyTorch's convention. It is built as
    ``optax.adamw`` is (Adam, then :math:`u + \lambda\theta` in optax's
    own arithmetic, then the learning-rate scaling), so it gives bit-for-bit
    the same updates in every dtype (a float32 ``weight_decay`` array on
    bfloat16 params gives float32 updates there, as in optax), and with a
    ``mask`` the same state tree: a checkpoint of one restores into the
    other.
  * ``'schedule'``: Loshchilov & Hutter, "Decoupled Weight Decay
    Regularization", 2019, arXiv:1711.05101: the decay follows the schedule
    multiplier :math:`\eta_t/\eta_{\max}` but not the base learning rate
    (:func:`wdax.schedules.follow`).
  * ``'none'``: decay independent of the learning rate, as in Wortsman et al.,
    "Small-scale proxies for large-scale Transformer training instabilities",
    2023, arXiv:2309.14322 (there with a schedule multiplier: use
    ``'schedule'`` for that).
  * ``'corrected'``: AdamC, Defazio, "Why Gradients Rapidly Increase Near the
    End of Training", 2025, arXiv:2506.02285 (:func:`wdax.schedules.corrected`).

  The peak :math:`\eta_{\max}` is ``peak_lr``, or ``learning_rate`` when that
  is a number, or read from the schedule by :func:`wdax.schedules.peak`. This
  is a complete optimiser: use it in place of ``optax.adamw``.

  It takes ``optax.adamw``'s whole signature, but every argument after the
  learning rate is keyword-only: ``optax.adamw(1e-3, 0.9)`` sets
  :math:`\beta_1`, and ``wdax.adamw(1e-3, 0.9)`` is a ``TypeError`` rather
  than a silent weight decay of 0.9. Every numeric argument can be injected
  with ``optax.inject_hyperparams`` (``static_args=('mask',)`` for a
  callable mask, as for optax); for ``'schedule'`` and ``'corrected'`` an
  injected learning rate needs ``peak_lr``, since the schedule behind it is
  out of sight.

  Args:
    learning_rate: :math:`\eta`, a number or an optax schedule, or
      :func:`wdax.rates` of those (and of per-layer arrays): each group then
      steps, and decays per ``coupling``, with its own learning rate and
      peak, as a PyTorch param group does. A group whose learning rate is
      the constant 0 is frozen: bitwise unchanged, with no moments kept.
    b1: :math:`\beta_1`.
    b2: :math:`\beta_2`.
    eps: :math:`\epsilon`, added to :math:`\sqrt{\hat v_t}`. In float16 the
      default 1e-8 is 0, which makes Adam's step 0/0 = NaN wherever the
      gradients are all 0 (as in ``optax.adamw``): ``init`` warns for float16
      params unless ``eps`` (or ``eps_root``) is at least 6e-8 there (1e-4 is
      usual).
    eps_root: added to :math:`\hat v_t` inside the square root.
    mu_dtype: dtype of the first moment, as in ``optax.scale_by_adam``.
    weight_decay: :math:`\lambda`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    mask: which leaves to decay (see :mod:`wdax.masks`); by default every
      floating leaf. Adam itself updates every leaf.
    nesterov: Nesterov momentum (NAdamW), as in ``optax.adamw``.
    coupling: ``'lr'``, ``'schedule'``, ``'none'`` or ``'corrected'``.
    peak_lr: :math:`\eta_{\max}` for ``'schedule'`` and ``'corrected'``;
      a :func:`wdax.rates` when the learning rate is per group.

  Returns:
    An ``optax.GradientTransformation``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> lr = optax.linear_schedule(1e-3, 0.0, 100)  # peak 1e-3, at step 0
    >>> tx = wdax.adamw(lr, weight_decay=0.1, coupling='none')
    >>> params = {'w': jnp.array([2.0])}
    >>> updates, _ = tx.update({'w': jnp.array([0.0])}, tx.init(params), params)
    >>> updates['w']  # Adam's step is 0 for a zero gradient; decay is 0.1 * w.
    Array([-0.2], dtype=float32)
  """
  fn = 'adamw(...)'
  _check_common(fn, learning_rate, weight_decay)
  _check_coupling(fn, coupling, peak_lr)
  adam = optax.scale_by_adam(
      b1=_checks.number(b1, f'{fn}: b1', below=1),
      b2=_checks.number(b2, f'{fn}: b2', below=1),
      eps=_checks.number(eps, f'{fn}: eps'),
      eps_root=_checks.number(eps_root, f'{fn}: eps_root'),
      mu_dtype=_checks.inexact_dtype(mu_dtype, f'{fn}: mu_dtype'),
      nesterov=_checks.flag(nesterov, f'{fn}: nesterov'),
  )
  if coupling == 'lr':
    # optax.adamw's order and arithmetic, so that the floats are the same.
    tx = optax.chain(
        adam,
        _optax_decay(fn, weight_decay, mask, learning_rate),
        _learning_rates.scale_by_learning_rate(learning_rate),
    )
  else:
    tx = optax.chain(
        adam,
        _learning_rates.scale_by_learning_rate(learning_rate),
        _decoupled_after(fn, coupling, learning_rate, weight_decay, mask, peak_lr),
    )
  tx = _learning_rates.partition_frozen(fn, tx, learning_rate)
  return _leafwise.guarded(
      fn, tx, learning_rate, every_update=True, eps=(eps, eps_root)
  )


def sgdw(
    learning_rate: _rates.LrLike,
    *,
    weight_decay: _rates.RateLike = 1e-4,
    momentum: float | None = None,
    nesterov: bool = False,
    mask: _masks.MaskLike = None,
    coupling: str = 'lr',
    peak_lr: float | _rates.Rates | None = None,
) -> optax.GradientTransformation:
  r"""SGD (with optional momentum) and decoupled weight decay: SGDW.

  .. math::

    b_t = \mu b_{t-1} + g_t, \qquad
    \theta_{t+1} = \theta_t - \eta_t d_t - c_t \theta_t, \qquad
    d_t = \begin{cases} g_t + \mu b_t & \text{Nesterov} \\ b_t &
    \text{otherwise} \end{cases}

  where :math:`g_t` is the gradient, :math:`b_t` the momentum buffer
  (:math:`b_0 = 0`), :math:`\mu` the momentum, :math:`\eta_t` the learning
  rate, :math:`\theta_t` the parameters and :math:`c_t` the decay per step,
  given by ``coupling`` exactly as in :func:`adamw`. The decay bypasses the
  momentum buffer: that is what makes it decoupled (Loshchilov & Hutter,
  "Decoupled Weight Decay Regularization", 2019, arXiv:1711.05101,
  Algorithm 1). Without momentum it equals PyTorch's ``SGD(weight_decay=...)``
  (coupled L2) with ``coupling='lr'``; with momentum it does not, since
  PyTorch feeds the decay through the buffer.

  Args:
    learning_rate: :math:`\eta`, a number or an optax schedule, or
      :func:`wdax.rates` of those (and of per-layer arrays): each group then
      steps, and decays per ``coupling``, with its own learning rate and
      peak, as a PyTorch param group does. A group whose learning rate is
      the constant 0 is frozen: bitwise unchanged, with no moments kept.
    weight_decay: :math:`\lambda`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    momentum: :math:`\mu`, non-negative, or ``None`` for plain SGD without a
      momentum buffer (as in ``optax.sgd``).
    nesterov: use Nesterov momentum (needs ``momentum``).
    mask: which leaves to decay (see :mod:`wdax.masks`); by default every
      floating leaf.
    coupling: ``'lr'``, ``'schedule'``, ``'none'`` or ``'corrected'``.
    peak_lr: :math:`\eta_{\max}` for ``'schedule'`` and ``'corrected'``;
      a :func:`wdax.rates` when the learning rate is per group.

  Every argument after the learning rate is keyword-only, and every numeric
  one can be injected with ``optax.inject_hyperparams``.

  Returns:
    An ``optax.GradientTransformation``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> tx = wdax.sgdw(0.1, weight_decay=0.5)
    >>> params = {'w': jnp.array([2.0])}
    >>> updates, _ = tx.update({'w': jnp.array([1.0])}, tx.init(params), params)
    >>> updates['w']  # -0.1 * 1.0 - 0.1 * 0.5 * 2.0
    Array([-0.2], dtype=float32)
  """
  fn = 'sgdw(...)'
  _check_common(fn, learning_rate, weight_decay)
  _check_coupling(fn, coupling, peak_lr)
  nesterov = _checks.flag(nesterov, f'{fn}: nesterov')
  if momentum is None:
    if nesterov:
      raise ValueError(f'{fn}: nesterov=True needs a momentum.')
  else:
    _checks.number(momentum, f'{fn}: momentum')
  # optax.sgd's chain, with a learning rate per group.
  tx = optax.chain(
      optax.identity() if momentum is None
      else optax.trace(decay=momentum, nesterov=nesterov),
      _learning_rates.scale_by_learning_rate(learning_rate),
      _decoupled_after(fn, coupling, learning_rate, weight_decay, mask, peak_lr),
  )
  tx = _learning_rates.partition_frozen(fn, tx, learning_rate)
  return _leafwise.guarded(fn, tx, learning_rate)


def _scale_by_adam_stable(
    b1: float,
    b2: float,
    eps: float,
    weight_decay: _rates.RateLike,
    mask: _masks.Mask,
) -> optax.GradientTransformation:
  fn = 'adams(...)'
  adam = optax.scale_by_adam(b1=b1, b2=b2, eps=eps)

  def active(params):
    return _leafwise.select(
        fn, weight_decay, mask, params, rate_name='weight_decay'
    )

  def init_fn(params):
    active(params)
    return adam.init(params)

  def update_fn(updates, state, params=None):
    if updates is None:
      return None, state
    leaves = _leafwise.line_up(fn, updates, params)
    # The rate's schedule, if any, is read at the step count before this
    # update, as optax reads learning-rate schedules.
    coeffs = _leafwise.coefficients(active(params), state.count)
    adam_updates, state = adam.update(updates, state, params)
    nu = [v for v in jax.tree.leaves(state.nu) if _paths.is_float(v)]
    # Summed in float32, or float64 if the params are. A complex parameter's
    # second moment is real (|g|^2), kept in a complex array by optax.
    real = [jnp.finfo(v.dtype).dtype for v in nu]
    with jax.numpy_dtype_promotion('standard'):
      acc = functools.reduce(jnp.promote_types, real, jnp.float32)
    total = sum(v.size for v in nu)
    v_sum = sum(jnp.sum(jnp.real(v).astype(acc)) for v in nu)
    bias = 1 - jnp.asarray(b2, acc) ** state.count.astype(acc)
    v_mean = v_sum / bias / jnp.asarray(max(total, 1), acc)
    # While every gradient so far is exactly 0, v_mean is 0 and the paper's
    # term is undefined; decay nothing then, rather than divide by zero.
    positive = v_mean > 0
    inv_root = jnp.where(
        positive, jax.lax.rsqrt(jnp.where(positive, v_mean, 1.0)), 0.0
    )
    u_leaves, u_def = jax.tree.flatten(adam_updates)
    p_leaves = [p for p in leaves.params if p is not None]
    new = [
        u if c is None else _leafwise.add(u, p, jnp.asarray(c, acc) * inv_root)
        for u, p, c in zip(u_leaves, p_leaves, coeffs)
    ]
    return jax.tree.unflatten(u_def, new), state

  return optax.GradientTransformation(init_fn, update_fn)


def adams(
    learning_rate: _rates.LrLike,
    *,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: _rates.RateLike = 1e-4,
    mask: _masks.MaskLike = None,
) -> optax.GradientTransformation:
  r"""Adam with stable (scheduled) weight decay: AdamS.

  .. math::

    \theta_{t+1} = \theta_t - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}
    - \frac{\eta_t \lambda}{\sqrt{\bar v_t}} \theta_t, \qquad
    \bar v_t = \frac{1}{N} \sum_{i=1}^{N} \hat v_{t,i}

  where :math:`\theta_t` are the parameters, :math:`\hat m_t, \hat v_t`
  Adam's bias-corrected moment estimates (decay rates
  :math:`\beta_1, \beta_2`), :math:`\epsilon` its stability constant,
  :math:`\eta_t` the learning rate, :math:`\lambda` the weight decay and
  :math:`\bar v_t` the mean of :math:`\hat v_t` over all :math:`N` floating
  parameter elements of the whole tree (decayed or not).

  Dividing by :math:`\sqrt{\bar v_t}` matches the decay to the size of Adam's
  effective step, so weight decay no longer drives the gradient norm up late
  in training. The mean is over the whole tree, not per leaf, as in the
  paper's Algorithm 2 and its reference code: one scalar rescales the decay of
  every layer alike, so the relative decay between layers stays that of AdamW,
  while a per-leaf mean would give each layer its own decay strength, a
  different method. From Xie, Xu, Zhang, Sato & Sugiyama, "On the Overlooked
  Pitfalls of Weight Decay and How to Mitigate Them: A Gradient-Norm
  Perspective", NeurIPS 2023, arXiv:2011.11152 (there "SWD"). While every
  gradient so far is exactly zero, :math:`\bar v_t = 0` and nothing decays.

  Unlike the other wdax decays, ``init`` does not warn when the decay is too
  small for bfloat16 or float16 weights (:class:`wdax.LostDecayWarning`): its
  decay per step, :math:`\eta_t\lambda/\sqrt{\bar v_t}`, depends on the
  second moment, unknown until the gradients come. Pass
  :math:`\eta\lambda/\sqrt{\bar v}` for a typical :math:`\bar v` to
  :func:`wdax.precision.lost_decay` to check it yourself, or end the chain
  with :func:`wdax.stochastic_rounding`.

  Every argument after the learning rate is keyword-only, and every numeric
  one can be injected with ``optax.inject_hyperparams``.

  Args:
    learning_rate: :math:`\eta`, a number or an optax schedule, or
      :func:`wdax.rates` of those (and of per-layer arrays): each group then
      steps, and decays per ``coupling``, with its own learning rate and
      peak, as a PyTorch param group does. A group whose learning rate is
      the constant 0 is frozen: bitwise unchanged, with no moments kept.
    b1: :math:`\beta_1`.
    b2: :math:`\beta_2`.
    eps: :math:`\epsilon`; ``init`` warns if it is 0 in float16, as
      :func:`adamw` does.
    weight_decay: :math:`\lambda`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    mask: which leaves to decay (see :mod:`wdax.masks`); by default every
      floating leaf. The mean :math:`\bar v_t` covers every leaf regardless.

  Returns:
    An ``optax.GradientTransformation``; its state is optax's Adam state
    followed by the learning-rate schedule's.

  Examples:
    >>> import jax.numpy as jnp
    >>> import optax
    >>> import wdax
    >>> tx = wdax.adams(0.1, weight_decay=0.5)
    >>> params = {'w': jnp.array([1.0, -1.0])}
    >>> g = {'w': jnp.array([2.0, 2.0])}  # v_hat = 4, so sqrt(mean) = 2
    >>> updates, _ = tx.update(g, tx.init(params), params)
    >>> print(updates['w'].round(4))  # -0.1 * (1 + 0.5 * w / 2); Adam's step is 1
    [-0.125 -0.075]
  """
  fn = 'adams(...)'
  _check_common(fn, learning_rate, weight_decay)
  b1 = _checks.number(b1, f'{fn}: b1', below=1)
  b2 = _checks.number(b2, f'{fn}: b2', below=1)
  eps = _checks.number(eps, f'{fn}: eps')
  tx = optax.chain(
      _scale_by_adam_stable(b1, b2, eps, weight_decay, _masks.as_mask(mask)),
      _learning_rates.scale_by_learning_rate(learning_rate),
  )
  tx = _learning_rates.partition_frozen(fn, tx, learning_rate)
  return _leafwise.guarded(
      fn, tx, learning_rate, every_update=True, eps=(eps, 0.0)
  )
