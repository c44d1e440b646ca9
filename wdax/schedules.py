r"""Decay rates that follow a learning-rate schedule, and decay timescales.

How much a decay shrinks the weights per step, :math:`c_t`, depends on how the
rate is tied to the learning rate :math:`\eta_t`. :func:`wdax.decoupled` with
``lr`` gives :math:`c_t = \eta_t r` (PyTorch and optax). The schedules here
give the other conventions from the literature: :func:`follow` tracks the
schedule's *shape* but not its base value, and :func:`corrected` is AdamC's
correction. :func:`from_timescale` and :func:`timescale` convert between a
rate and the averaging timescale it implies.

Every schedule counts steps from 0, as optax's learning-rate schedules do, so
the same ``lr_schedule`` object can drive both the optimiser and the decay.
"""

from __future__ import annotations

import fractions
import math
import sys
import weakref
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from wdax import _checks
from wdax import rate as _rates

# How far peak() looks for the maximum of a schedule it is not told the peak
# of: the first 2**20 steps. Warmups are far shorter than this.
PEAK_HORIZON = 2**20

# Each schedule's peak, read once: optimisers with the 'schedule' or
# 'corrected' coupling are built again at every trace under
# optax.inject_hyperparams. Weak keys, so that a schedule's entry goes with it.
_PEAKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _read_peak(fn: str, lr: optax.Schedule) -> float:
  """Evaluates ``lr`` on steps ``0 .. PEAK_HORIZON - 1`` and returns its maximum."""
  steps = np.arange(PEAK_HORIZON, dtype=np.int32)

  def evaluate(t: jax.Array) -> jax.Array:
    return jnp.broadcast_to(jnp.asarray(lr(t), jnp.float32), t.shape)

  try:
    # Compiled ahead of time and called on a concrete array, so it runs now
    # even where the optimiser is built inside a jitted function. Standard
    # promotion, as optax's schedules mix int32 counts with Python floats.
    with jax.numpy_dtype_promotion('standard'):
      compiled = jax.jit(evaluate).lower(
          jax.ShapeDtypeStruct(steps.shape, steps.dtype)
      ).compile()
      values = np.asarray(compiled(steps), np.float64)
  except Exception as e:  # noqa: BLE001 - any failure means "cannot read it"
    raise ValueError(
        f'{fn}: cannot read the peak of the learning-rate schedule by '
        f'evaluating it on an array of steps ({type(e).__name__}: {e}); pass '
        'peak_lr.'
    ) from e
  if not np.all(np.isfinite(values)):
    raise ValueError(
        f'{fn}: the learning-rate schedule is not finite on steps 0..'
        f'{PEAK_HORIZON - 1}; pass peak_lr.'
    )
  if values[-1] > values[-2]:
    raise ValueError(
        f'{fn}: the learning-rate schedule is still rising at step '
        f'{PEAK_HORIZON - 1}, the last step searched for its peak; pass '
        'peak_lr.'
    )
  return _checks.positive(float(values.max()), f'{fn}: the schedule\'s peak')


def _peak(fn: str, lr: Any, peak_lr: Any) -> Any:
  """The peak: ``peak_lr``, a constant lr itself, or read from the schedule.

  A traced ``peak_lr`` (injected) passes through; a traced learning rate
  without one is an error, since its schedule, if any, is out of sight.
  """
  if peak_lr is not None:
    return _checks.positive(peak_lr, f'{fn}: peak_lr', traced=True)
  if _checks.is_traced(lr):
    raise ValueError(
        f'{fn}: the learning rate is a traced value (as optax.inject_hyperparams '
        'passes it, one step at a time), so its peak cannot be read; pass '
        'peak_lr.'
    )
  if not callable(lr):
    return _checks.positive(lr, f'{fn}: the learning rate')
  try:
    return _PEAKS[lr]
  except (KeyError, TypeError):  # not read yet; or unhashable, not weakly referable
    pass
  value = _read_peak(fn, lr)
  try:
    _PEAKS[lr] = value
  except TypeError:
    pass
  return value


def peak(lr_schedule: optax.ScalarOrSchedule) -> float:
  r"""The peak of a learning rate, as :func:`follow` reads it.

  .. math::

    \eta_{\max} = \max_{0 \le t < 2^{20}} \eta_t

  where :math:`\eta_t` is the learning rate at step :math:`t`. A number is
  its own peak. A schedule is evaluated on the array of steps
  :math:`0, \dots, 2^{20} - 1` (``PEAK_HORIZON``), which works for optax's
  schedules and any schedule written with ``jax.numpy``, once: the peak is
  remembered for as long as the schedule object lives, so building an
  optimiser again (as ``optax.inject_hyperparams`` does at every trace) does
  not read it again. A schedule that
  cannot be evaluated on an array, is not finite there, or is still rising at
  the last step searched has no readable peak: that is a ``ValueError``, and
  the caller must give the peak explicitly.

  Args:
    lr_schedule: a learning rate: a positive number or an optax schedule.

  Returns:
    The peak as a Python float.

  Examples:
    >>> import optax
    >>> from wdax import schedules
    >>> lr = optax.warmup_cosine_decay_schedule(0.0, 0.5, 100, 1000)
    >>> schedules.peak(lr), schedules.peak(3e-4)
    (0.5, 0.0003)
  """
  lr = _checks.rate(lr_schedule, 'peak(...): lr_schedule')
  return float(_peak('peak(...)', lr, None))


def multiplied(
    fn: str,
    lr_schedule: optax.ScalarOrSchedule | np.ndarray,
    rate: _rates.RateLike,
    peak_lr: Any,
) -> _rates.RateLike:
  """``rate`` times the multiplier ``lr_t / peak``, keeping the rate's form.

  What :func:`follow` and :func:`corrected` return, and what the optimisers'
  ``'schedule'`` and ``'corrected'`` couplings use; ``fn`` names the caller in
  errors.

  Examples:
    >>> import optax
    >>> from wdax import schedules
    >>> r = schedules.multiplied('mine', optax.linear_schedule(2.0, 0.0, 10), 0.1, None)
    >>> print(f'{r(0):.3f} {r(5):.3f}')  # the multiplier is lr_t / 2.0
    0.100 0.050
  """
  lr = _checks.rate(lr_schedule, f'{fn}: lr_schedule')
  rate = _rates.check(rate, f'{fn}: rate')
  top = _peak(fn, lr, peak_lr)

  def scale(r: Any) -> Any:
    if _checks.is_static_zero(r):
      return r

    def schedule(count: jax.Array) -> jax.Array:
      r_t = r(count) if callable(r) else r
      lr_t = lr(count) if callable(lr) else lr
      # The multiplier first: for a constant lr it is exactly 1.
      return r_t * (jnp.asarray(lr_t, jnp.float32) / jnp.asarray(top, jnp.float32))

    return schedule

  return _rates.map_rates(scale, rate)


def follow(
    lr_schedule: optax.ScalarOrSchedule,
    rate: _rates.RateLike,
    *,
    peak_lr: float | None = None,
) -> _rates.RateLike:
  r"""A rate that follows the shape of a learning-rate schedule.

  .. math::

    r_t = r \, \frac{\eta_t}{\eta_{\max}}

  where :math:`r` is ``rate``, :math:`\eta_t` the learning rate at step
  :math:`t` and :math:`\eta_{\max}` its peak. Give the result to
  :func:`wdax.decoupled` *without* ``lr``: the decay per step is then
  :math:`c_t = r\,\eta_t/\eta_{\max}`. It follows the schedule's warmup and
  decay but not the base learning rate, so retuning the learning rate leaves
  the decay alone. This is the "schedule multiplier" of Loshchilov & Hutter,
  "Decoupled Weight Decay Regularization", 2019, arXiv:1711.05101, and the
  "independent" decay of Wortsman et al., "Small-scale proxies for large-scale
  Transformer training instabilities", 2023, arXiv:2309.14322.

  The peak :math:`\eta_{\max}` is ``peak_lr`` when given, else read from the
  schedule by :func:`peak` (a number is its own peak); a schedule whose peak
  cannot be read is a ``ValueError`` asking for ``peak_lr``.

  Args:
    lr_schedule: the optimiser's learning rate :math:`\eta`: a number or an
      optax schedule.
    rate: the coefficient :math:`r`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    peak_lr: :math:`\eta_{\max}`, if it should not be read from the schedule.

  Returns:
    A schedule (or, for per-group rates, the same form of rates, holding
    schedules) to pass as ``rate`` to :func:`wdax.decoupled`.

  Examples:
    >>> import optax
    >>> import wdax
    >>> lr = optax.linear_schedule(1e-3, 0.0, 100)
    >>> r = wdax.schedules.follow(lr, 0.1)
    >>> print(f'{r(0):.3f} {r(50):.3f}')  # the rate halves with the lr
    0.100 0.050
    >>> tx = optax.chain(optax.adam(lr), wdax.decoupled(r))
  """
  return multiplied('follow(...)', lr_schedule, rate, peak_lr)


def corrected(
    lr_schedule: optax.ScalarOrSchedule,
    rate: _rates.RateLike,
    *,
    peak_lr: float | None = None,
) -> _rates.RateLike:
  r"""AdamC's corrected rate, for decay tied to a learning-rate schedule.

  .. math::

    r_t = r \, \frac{\eta_t}{\eta_{\max}}, \qquad
    c_t = \eta_t \, r_t = r \, \frac{\eta_t^2}{\eta_{\max}}

  where :math:`r` is ``rate``, :math:`\eta_t` the learning rate at step
  :math:`t`, :math:`\eta_{\max}` its peak and :math:`c_t` the decay per step.
  The returned schedule is :math:`r_t`; give it to :func:`wdax.decoupled`
  *with* ``lr=lr_schedule``, which multiplies by :math:`\eta_t` once more, so
  the decay per step is :math:`r\,\eta_t^2/\eta_{\max}`. (The schedule itself
  is the one :func:`follow` returns; only the pairing with ``lr`` differs.)

  Why: for a weight followed by normalisation, the balance at steady state
  between decay shrinking it (:math:`2 c_t \lVert\theta\rVert^2` per step) and
  orthogonal updates growing it (:math:`\eta_t^2 \lVert g\rVert^2` for SGD)
  gives :math:`\lVert g\rVert/\lVert\theta\rVert = \sqrt{2 c_t}/\eta_t`. With
  :math:`c_t = \eta_t r` that is :math:`\sqrt{2r/\eta_t}`, which grows as the
  schedule decays: gradient norms rise at the end of training. With
  :math:`c_t = r\,\eta_t^2/\eta_{\max}` it stays at
  :math:`\sqrt{2r/\eta_{\max}}`. From Defazio, "Why Gradients Rapidly Increase
  Near the End of Training", 2025, arXiv:2506.02285 (AdamC, SGDC), which
  corrects the layers followed by normalisation only: choose them with the
  decay's ``mask``.

  Args:
    lr_schedule: the optimiser's learning rate :math:`\eta`: a number or an
      optax schedule.
    rate: the coefficient :math:`r`: a number, scalar array, optax schedule,
      :func:`wdax.rates` or a prefix tree of rates.
    peak_lr: :math:`\eta_{\max}`, if it should not be read from the schedule
      (see :func:`peak`).

  Returns:
    A schedule (or, for per-group rates, the same form of rates, holding
    schedules) to pass as ``rate`` to :func:`wdax.decoupled` with
    ``lr=lr_schedule``.

  Examples:
    >>> import optax
    >>> import wdax
    >>> lr = optax.linear_schedule(1e-3, 0.0, 100)
    >>> r = wdax.schedules.corrected(lr, 0.1)
    >>> tx = optax.chain(optax.adam(lr), wdax.decoupled(r, lr=lr))
    >>> print(f'{r(50) * lr(50):.2e}')  # c_t = 0.1 * (5e-4)**2 / 1e-3
    2.50e-05
  """
  return multiplied('corrected(...)', lr_schedule, rate, peak_lr)


def _reciprocal(fn: str, what: str, *factors: float) -> float:
  """``1 / prod(factors)`` for positive factors, refused unless float64 holds it.

  Where the product under- or overflows float64 though its reciprocal may
  not, it is taken exactly (as a fraction) and rounded once; a result float64
  cannot hold to full precision is a ValueError rather than ``inf``, ``0.0``
  or a subnormal.
  """
  product = math.prod(factors)
  if sys.float_info.min <= product < math.inf:
    out = 1.0 / product
  else:
    exact = 1 / math.prod(fractions.Fraction(f) for f in factors)
    try:
      out = float(exact)
    except OverflowError:
      out = math.inf
  if not (math.isfinite(out) and out >= sys.float_info.min):
    shown = ' * '.join(f'{f:g}' for f in factors)
    raise ValueError(
        f'{fn}: {what} = 1 / ({shown}) is out of range for float64 (got '
        f'{out!r}); these arguments are out of range.'
    )
  return out


def _steps_per_epoch(fn: str, steps_per_epoch: Any) -> float:
  if steps_per_epoch is None:
    return 1.0
  return float(_checks.positive(steps_per_epoch, f'{fn}: steps_per_epoch'))


def from_timescale(
    tau: float, lr: float, *, steps_per_epoch: float | None = None
) -> float:
  r"""The decoupled-decay rate whose weights average over ``tau`` steps.

  .. math::

    r = \frac{1}{\eta \, \tau_{\mathrm{iter}}}, \qquad
    \tau_{\mathrm{iter}} = \begin{cases} \tau \, S & \text{with
    } \texttt{steps\_per\_epoch} = S \\ \tau & \text{otherwise} \end{cases}

  where :math:`\eta` is the (peak) learning rate and :math:`\tau` the
  timescale. With decoupled decay :math:`\theta_{t+1} = (1 - \eta r)\theta_t
  + u_t`, the weights are an exponential moving average of recent updates
  with timescale :math:`\tau_{\mathrm{iter}} = 1/(\eta r)` iterations. Wang &
  Aitchison, "How to set AdamW's weight decay as you scale model and dataset
  size", 2024, arXiv:2405.13698, find the best timescale in *epochs* roughly
  constant across model and dataset sizes, so fix :math:`\tau` in epochs and
  derive the rate for each run.

  The rate is in the convention of :func:`wdax.decoupled` with ``lr`` (and
  ``optax.adamw``, PyTorch's ``AdamW``): the decay per step is
  :math:`\eta r = 1/\tau_{\mathrm{iter}}`.

  Args:
    tau: the timescale :math:`\tau`, in iterations, or in epochs when
      ``steps_per_epoch`` is given; positive.
    lr: the learning rate :math:`\eta`, a positive number (for a schedule,
      its peak).
    steps_per_epoch: optimiser steps per epoch :math:`S`.

  Returns:
    The rate :math:`r` as a Python float.

  Examples:
    >>> from wdax import schedules
    >>> schedules.from_timescale(1000, 1e-3)
    1.0
    >>> schedules.from_timescale(2, 1e-3, steps_per_epoch=500)
    1.0
  """
  fn = 'from_timescale(...)'
  tau = float(_checks.positive(tau, f'{fn}: tau'))
  per_epoch = _steps_per_epoch(fn, steps_per_epoch)
  lr = float(_checks.positive(lr, f'{fn}: lr'))
  return _reciprocal(fn, 'the rate', lr, tau, per_epoch)


def timescale(
    rate: float, lr: float, *, steps_per_epoch: float | None = None
) -> float:
  r"""The averaging timescale of decoupled decay; inverse of :func:`from_timescale`.

  .. math::

    \tau = \frac{1}{\eta \, r \, S}

  where :math:`r` is the rate in :func:`wdax.decoupled`'s ``lr`` convention,
  :math:`\eta` the (peak) learning rate and :math:`S` the steps per epoch (1
  when ``steps_per_epoch`` is not given, so :math:`\tau` is in iterations).
  See :func:`from_timescale` for the reading (Wang & Aitchison, 2024,
  arXiv:2405.13698).

  Args:
    rate: the rate :math:`r`, non-negative; 0 gives an infinite timescale.
    lr: the learning rate :math:`\eta`, a positive number.
    steps_per_epoch: optimiser steps per epoch :math:`S`.

  Returns:
    :math:`\tau` as a Python float, in iterations or epochs.

  Examples:
    >>> from wdax import schedules
    >>> schedules.timescale(0.1, 1e-3)
    10000.0
    >>> schedules.timescale(0.1, 1e-3, steps_per_epoch=100)
    100.0
  """
  fn = 'timescale(...)'
  if callable(rate) or _checks.is_traced(rate):
    raise ValueError(f'{fn}: rate must be a number; got {rate!r}.')
  r = float(np.asarray(_checks.rate(rate, f'{fn}: rate')))
  per_epoch = _steps_per_epoch(fn, steps_per_epoch)
  lr = float(_checks.positive(lr, f'{fn}: lr'))
  if r == 0:
    return math.inf
  return _reciprocal(fn, 'the timescale', lr, r, per_epoch)
