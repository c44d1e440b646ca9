r"""Decay lost to rounding: which low-precision leaves a decay cannot change.

A decay shrinks a weight by :math:`c\,\theta` per step. In a dtype with
machine epsilon :math:`\varepsilon` (the spacing of the numbers in
:math:`[1, 2)`; :math:`2^{-7}` for bfloat16, :math:`2^{-10}` for float16),
the neighbours of :math:`\theta` lie between :math:`\varepsilon|\theta|/4` and
:math:`\varepsilon|\theta|` away, so rounding to nearest gives
:math:`\theta(1 - c)` back as :math:`\theta` for some weights once
:math:`c < \varepsilon/2`, and for all of them once :math:`c <
\varepsilon/4`. Every step, however many steps there are.

Every wdax decay and optimiser checks this at ``init`` (:func:`check`) and
warns with a :class:`LostDecayWarning` naming the leaves. :func:`lost_decay`
is the check itself, for a tree of decays per step you computed;
:func:`wdax.describe` shows it per leaf.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import types
import warnings
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
import optax

from wdax import _checks
from wdax import paths as _paths
from wdax import rate as _rates
from wdax import schedules as _schedules

__all__ = [
    'LostDecay',
    'LostDecayWarning',
    'check',
    'lost_decay',
    'lost_leaf',
    'peak_decays',
    'threshold',
]

_SHOWN = 5


class LostDecayWarning(UserWarning):
  """A decay per step too small to change low-precision weights.

  Raised at ``init`` by every wdax decay and optimiser, once, naming the
  leaves. Silence it, once you have decided the decay may be lost, with
  ``warnings.filterwarnings('ignore', category=wdax.LostDecayWarning)``.
  """


@dataclasses.dataclass(frozen=True)
class LostDecay:
  """One leaf whose decay per step rounding erases.

  ``c`` is the largest decay per step (over the schedule and the layers
  concerned); ``layers``, for per-layer values, the indices along the leading
  axis whose decay is lost (else ``None``); ``everywhere``, whether
  :math:`c < \\varepsilon/4`, so that no weight of the leaf decays at all.
  """

  path: str
  dtype: str
  c: float
  layers: tuple[int, ...] | None
  everywhere: bool


def threshold(dtype: Any) -> float | None:
  r"""The decay per step below which rounding erases it for some weights.

  .. math::

    c_{\min} = \varepsilon / 2

  where :math:`\varepsilon` is the dtype's machine epsilon. ``None`` for
  float32 and wider, and for non-floating dtypes, which are not checked.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import precision
    >>> precision.threshold(jnp.bfloat16), precision.threshold(jnp.float32)
    (0.00390625, None)
  """
  # Before jnp.dtype, which cannot interpret extended dtypes (PRNG keys).
  if not jnp.issubdtype(dtype, jnp.floating):
    return None
  dtype = jnp.dtype(dtype)
  if dtype.itemsize >= 4:
    return None
  return float(jnp.finfo(dtype).eps) / 2


def lost_leaf(path: str, leaf: Any, c: Any) -> LostDecay | None:
  """The :class:`LostDecay` of one leaf (array or ``ShapeDtypeStruct``), or ``None``.

  ``c``: the leaf's decay per step, a number or one per layer (a 1-D array
  along the leaf's leading axis), or ``None`` where it is unknown.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import precision
    >>> precision.lost_leaf('w', jnp.ones(2, jnp.bfloat16), 1e-3).everywhere
    True
    >>> print(precision.lost_leaf('w', jnp.ones(2, jnp.bfloat16), 1e-2))
    None
  """
  limit = threshold(leaf.dtype)
  if limit is None or c is None:
    return None
  values = np.asarray(c, np.float64)
  lost = (values > 0) & (values < limit)
  if not lost.any():
    return None
  layers = tuple(int(i) for i in np.flatnonzero(lost)) if values.ndim else None
  top = float(values[lost].max())
  return LostDecay(path, str(jnp.dtype(leaf.dtype)), top, layers, top < limit / 2)


def lost_decay(params: optax.Params, coefficients: Any) -> list[LostDecay]:
  r"""The leaves of ``params`` whose decay per step rounding erases.

  .. math::

    0 < c < \varepsilon / 2

  where :math:`c` is a leaf's decay per step (its peak, for a schedule) and
  :math:`\varepsilon` its dtype's machine epsilon; only dtypes narrower than
  float32 are checked.

  Args:
    params: the parameter tree.
    coefficients: each leaf's decay per step: a tree with the params'
      structure (or a prefix of it) of numbers, 1-D arrays (per-layer values,
      along a leaf's leading axis) or ``None`` (not checked).

  Returns:
    One :class:`LostDecay` per leaf concerned, in the params' order.

  Examples:
    >>> import jax.numpy as jnp
    >>> from wdax import precision
    >>> params = {'a': jnp.ones(3, jnp.bfloat16), 'b': jnp.ones(3)}
    >>> [x.path for x in precision.lost_decay(params, 1e-5)]
    ['a']
  """
  all_paths, leaves, _ = _paths.leaves_with_paths(params)
  values = _rates.resolve(coefficients, all_paths, name='lost_decay(): coefficients')
  found = [lost_leaf(path, p, c) for path, p, c in zip(all_paths, leaves, values)]
  return [x for x in found if x is not None]


def _peak(value: Any) -> Any:
  """A rate's or learning rate's largest value, or None where it is unknown."""
  if value is None or _checks.is_traced(value):
    return None
  if callable(value):
    try:
      return _schedules.peak(value)
    except ValueError:  # unreadable; wdax does not guess
      return None
  return np.asarray(value, np.float64)


def _caller_stacklevel() -> int:
  """The stack level of the first frame outside wdax, optax and JAX."""
  skip = tuple(
      os.path.dirname(str(m.__file__)) + os.sep
      for m in (sys.modules['wdax'], sys.modules['optax'], sys.modules['jax'])
      if getattr(m, '__file__', None)
  )
  frame: types.FrameType | None = sys._getframe(1)
  level = 1
  while frame is not None and frame.f_code.co_filename.startswith(skip):
    frame, level = frame.f_back, level + 1
  return level


def _message(fn: str, found: Sequence[LostDecay]) -> str:
  shown = []
  for x in found[:_SHOWN]:
    where = repr(x.path) if x.layers is None else f'{x.path!r} layers {list(x.layers)}'
    shown.append(f'{where} ({x.dtype}, c={x.c:.3g})')
  if len(found) > _SHOWN:
    shown.append(f'... ({len(found) - _SHOWN} more)')
  limits = sorted({f'{threshold(x.dtype):.3g} for {x.dtype}' for x in found})
  leaves = 'leaf' if len(found) == 1 else 'leaves'
  return (
      f'{fn}: the decay per step c is too small to change {len(found)} '
      f'low-precision {leaves}, so rounding erases it every step (it must be at '
      f'least eps/2: {", ".join(limits)}): {", ".join(shown)}. Add '
      'wdax.stochastic_rounding() last in the chain (this check cannot see '
      'it: then filter wdax.LostDecayWarning), keep float32 master weights, '
      'or use a larger c.'
  )


def peak_decays(
    rates: Sequence[Any], lrs: Sequence[Any], *, coupling: str = 'lr'
) -> list[Any]:
  r"""Each leaf's largest decay per step, or ``None`` where it is not known.

  .. math::

    \hat c = \begin{cases} \max_t r_t \cdot \max_t \eta_t &
    \texttt{'lr'}, \texttt{'corrected'} \\ \max_t r_t &
    \texttt{'none'}, \texttt{'schedule'}, \text{or no } \eta \end{cases}

  where :math:`r_t` is the leaf's rate and :math:`\eta_t` its learning rate
  at step :math:`t` (``'corrected'``'s :math:`c_t = r\eta_t^2/\eta_{\max}`
  peaks at :math:`r\eta_{\max}`; ``'schedule'``'s
  :math:`r\eta_t/\eta_{\max}` at :math:`r`). The product of two peaks
  bounds the peak of the product, so a leaf is never reported wrongly.
  ``None`` for a leaf whose rate is ``None`` (not decayed), traced, or a
  schedule whose peak cannot be read. Per-layer values stay arrays.

  Args:
    rates: each leaf's rate (number, array, schedule), or ``None``.
    lrs: each leaf's learning rate, or ``None`` for none.
    coupling: as in :func:`wdax.adamw`.

  Returns:
    One float, float64 array or ``None`` per leaf.

  Examples:
    >>> import optax
    >>> from wdax import precision
    >>> warmup = optax.linear_schedule(0.0, 1e-3, 100)
    >>> [f'{c:.3g}' for c in precision.peak_decays([0.1, 0.1], [warmup, 1e-4])]
    ['0.0001', '1e-05']
  """
  peaks: dict[int, Any] = {}

  def peak(value: Any) -> Any:
    if id(value) not in peaks:
      peaks[id(value)] = _peak(value)
    return peaks[id(value)]

  out: list[Any] = []
  for r, eta in zip(rates, lrs):
    if r is None:
      out.append(None)
      continue
    with_lr = eta is not None and coupling in ('lr', 'corrected')
    c, scale = peak(r), (peak(eta) if with_lr else 1.0)
    out.append(None if c is None or scale is None else c * scale)
  return out


def check(
    fn: str,
    params: optax.Params,
    rates: Sequence[Any],
    lr: Any,
    *,
    coupling: str = 'lr',
) -> None:
  """Warns once, with :class:`LostDecayWarning`, of leaves whose decay is lost.

  Called by ``init`` of every wdax decay. ``rates`` holds each leaf's rate, or
  ``None`` where the leaf is not decayed (as the transforms resolve them);
  ``lr`` is one learning rate, or one per leaf (``None``: no learning rate).
  The decay per step is :func:`peak_decays`'s. Only leaves narrower than
  float32 are looked at, so float32 models pay nothing for the check.
  """
  all_paths, leaves, _ = _paths.leaves_with_paths(params)
  lrs = list(lr) if isinstance(lr, (list, tuple)) else [lr] * len(all_paths)
  narrow = [threshold(getattr(p, 'dtype', np.float32)) is not None for p in leaves]
  if not any(n and r is not None for n, r in zip(narrow, rates)):
    return
  rates = [r if n else None for r, n in zip(rates, narrow)]
  found = [
      x
      for path, p, c in zip(all_paths, leaves, peak_decays(rates, lrs, coupling=coupling))
      if c is not None and (x := lost_leaf(path, p, c)) is not None
  ]
  if found:
    warnings.warn(
        _message(fn, found), LostDecayWarning, stacklevel=_caller_stacklevel()
    )
