r"""Named decay kinds: ready-made ``optimizer`` factories for the sweep.

Each kind is Adam at learning rate :math:`\eta` (optax defaults otherwise)
with one kind of decay at rate :math:`\lambda`:

=====================  ======================================================
kind                   optimiser
=====================  ======================================================
``adamw``              :func:`wdax.adamw`, :math:`c_t = \eta\lambda`
``adamw-corrected``    :func:`wdax.adamw` with ``coupling='corrected'``
``adamw-none``         :func:`wdax.adamw` with ``coupling='none'``
``adamw-schedule``     :func:`wdax.adamw` with ``coupling='schedule'``
``cautious``           Adam, then :func:`wdax.cautious` tied to :math:`\eta`
``decoupled``          Adam, then :func:`wdax.decoupled` tied to :math:`\eta`
``l1``                 Adam, then :func:`wdax.l1` tied to :math:`\eta`
``l2``                 :func:`wdax.l2`, then Adam (coupled L2)
=====================  ======================================================

:func:`kind` makes one a sweep's ``optimizer``: a callable taking ``rate``
and ``lr``, either of which the space may sweep.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import optax

import wdax
from wdax import rate as _rate

# A named kind builds the optimiser from the rate, learning rate and mask.
Builder = Callable[[Any, optax.ScalarOrSchedule, Any], optax.GradientTransformation]


def _l2(rate, lr, mask):
  return optax.chain(wdax.l2(rate, mask=mask), optax.adam(lr))


def _after_adam(decay_fn):
  def build(rate, lr, mask):
    return optax.chain(optax.adam(lr), decay_fn(rate, lr=lr, mask=mask))

  return build


def _traced(value: Any) -> bool:
  return isinstance(value, jax.core.Tracer)


def _adamw(coupling):
  def build(rate, lr, mask):
    chosen = coupling
    # A swept lr is a traced constant, whose peak is itself: 'schedule'
    # (c = rate * lr / peak) is then exactly 'none', and 'corrected'
    # (c = rate * lr^2 / peak) exactly 'lr'.
    if _traced(lr) and coupling in ('schedule', 'corrected'):
      chosen = {'schedule': 'none', 'corrected': 'lr'}[coupling]
    return wdax.adamw(lr, weight_decay=rate, mask=mask, coupling=chosen)

  return build


KINDS: dict[str, Builder] = {
    'adamw': _adamw('lr'),
    'adamw-corrected': _adamw('corrected'),
    'adamw-none': _adamw('none'),
    'adamw-schedule': _adamw('schedule'),
    'cautious': _after_adam(wdax.cautious),
    'decoupled': _after_adam(wdax.decoupled),
    'l1': _after_adam(wdax.l1),
    'l2': _l2,
}
"""The named kinds, each ``(rate, lr, mask) -> optax.GradientTransformation``."""


@dataclasses.dataclass(frozen=True)
class Kind:
  """A named kind as a sweep ``optimizer``: ``kind(rate=..., lr=...)``.

  Made by :func:`kind`. Frozen and compared by its fields, so two equal
  kinds share compiled programs.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import sweep
    >>> adamw = sweep.kind('adamw', lr=1e-2)
    >>> adamw == sweep.kind('adamw', lr=1e-2)
    True
    >>> state = adamw(rate=0.1).init({'w': jnp.ones(2)})  # lr 1e-2 from the kind
  """

  name: str
  lr: optax.ScalarOrSchedule
  rate: Any
  mask: Any

  def __call__(self, rate: Any = None, lr: Any = None) -> optax.GradientTransformation:
    rate = self.rate if rate is None else rate
    if rate is None:
      raise ValueError(
          f"kind {self.name!r} has no rate: put 'rate' in the space, or give "
          'kind(..., rate=...).'
      )
    return KINDS[self.name](rate, self.lr if lr is None else lr, self.mask)


def kind(
    name: str,
    *,
    lr: optax.ScalarOrSchedule = 1e-3,
    rate: Any = None,
    mask: Any = None,
) -> Kind:
  r"""The named decay kind ``name`` as a sweep ``optimizer``.

  .. math::

    \theta_{t+1} = \theta_t + \mathrm{Adam}_\eta(g_t) - c_t(\lambda, \eta)\,
    \theta_t

  for the decoupled kinds, where :math:`\theta_t` are the parameters,
  :math:`g_t` the gradient, :math:`\eta` the learning rate ``lr``,
  :math:`\lambda` the decay rate ``rate`` and :math:`c_t` the kind's decay per
  step (see the table in :mod:`wdax.sweep.kinds`; ``l2`` adds
  :math:`\lambda\theta_t` to :math:`g_t` instead). ``adamw`` is Loshchilov &
  Hutter, "Decoupled Weight Decay Regularization", 2019, arXiv:1711.05101.

  The result takes ``rate`` and ``lr``: a space naming either sweeps it, and
  the values given here stand for names the space leaves out. With a swept
  (traced) learning rate, ``adamw-schedule`` equals ``adamw-none`` and
  ``adamw-corrected`` equals ``adamw``, as they do for any constant rate.

  Args:
    name: a key of :data:`KINDS`.
    lr: Adam's learning rate, a number or an optax schedule.
    rate: the decay rate when the space does not sweep ``rate``.
    mask: which parameters decay (:mod:`wdax.masks`); by default every
      floating leaf. ``wdax.masks.flax_default()`` spares biases and scales.

  Returns:
    A :class:`Kind`.

  Examples:
    >>> from wdax import sweep
    >>> tx = sweep.kind('l2', lr=1e-2)(rate=0.1)
    >>> sweep.kind('adamx')
    Traceback (most recent call last):
      ...
    ValueError: unknown kind 'adamx'; the kinds are 'adamw', 'adamw-corrected', 'adamw-none', 'adamw-schedule', 'cautious', 'decoupled', 'l1', 'l2'.
  """
  if name not in KINDS:
    raise ValueError(
        f'unknown kind {name!r}; the kinds are {", ".join(map(repr, sorted(KINDS)))}.'
    )
  _rate.check_rate(lr, f'kind({name!r}): lr')
  if rate is not None:
    _rate.check_rate(rate, f'kind({name!r}): rate')
  return Kind(name, lr, rate, mask)
