r"""Feature scaling fitted on the training set alone, applied to held-out
data too (what the command line does to its built-in data sets)."""

from __future__ import annotations

from typing import Any

import numpy as np


def standardize(train: Any, *others: Any, dtype: Any = np.float32) -> tuple[np.ndarray, ...]:
  r"""Standardises features with the training set's statistics only.

  .. math::

    z = \frac{x - \mu}{\sigma}

  where :math:`\mu` and :math:`\sigma` are the per-feature mean and standard
  deviation over the rows of ``train`` (a feature constant there has
  :math:`\sigma = 1`: it is only centred), applied to ``train`` and each of
  ``others``. Each feature is first scaled by the power of two that brings
  its largest magnitude in ``train`` into :math:`[\tfrac12, 1)`: exact in
  floating point, so it changes no bit of :math:`z`, but the sums of squares
  no longer overflow for values past :math:`10^{154}`.

  Returns:
    The standardised arrays, in ``dtype``, ``train`` first. A value of
    ``others`` too far from the training values for ``dtype`` becomes
    infinite (check with ``np.isfinite``).

  Examples:
    >>> import numpy as np
    >>> from wdax import sweep
    >>> a, b = sweep.standardize(np.array([[0.0, 5.0], [2.0, 5.0]]), np.array([[4.0, 6.0]]))
    >>> a.tolist(), b.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [[3.0, 1.0]])
    >>> sweep.standardize(np.array([[1e300], [-1e300]]))[0].ravel()
    array([ 1., -1.], dtype=float32)
  """
  train = np.asarray(train, np.float64)
  _, exponent = np.frexp(np.abs(train).max(axis=0))
  scale = np.ldexp(1.0, -exponent)
  out = []
  with np.errstate(over='ignore'):
    scaled = train * scale
    mean, std = scaled.mean(axis=0), scaled.std(axis=0)
    # A constant feature is only centred, in its own units.
    std = np.where(std == 0, scale, std)
    for a in (train, *others):
      out.append(((np.asarray(a, np.float64) * scale - mean) / std).astype(dtype))
  return tuple(out)
