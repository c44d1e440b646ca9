"""Cheap diagnostics of decay at work, safe to log every step under jit."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from wdax import masks as _masks
from wdax import paths as _paths


def norms(params: Any, mask: Any = None) -> dict[str, jax.Array]:
  r"""Global L2 norm of ``params``, and of its decayed and undecayed parts.

  .. math::

    \lVert\theta\rVert = \sqrt{\textstyle\sum_i \theta_i^2}

  summed in float32 over floating leaves, whatever their dtype. ``decayed``
  covers the leaves ``mask`` selects (every floating leaf when ``mask`` is
  ``None``), ``not_decayed`` the other floating leaves.

  Args:
    params: the parameter tree.
    mask: a wdax or optax mask, as given to the decay transform.

  Returns:
    A dict of float32 scalars: ``global``, ``decayed`` and ``not_decayed``.

  Examples:
    >>> import jax.numpy as jnp
    >>> import wdax
    >>> params = {'b': jnp.array([3.0]), 'kernel': jnp.array([[4.0]])}
    >>> n = wdax.diagnostics.norms(params, mask=wdax.masks.include('kernel'))
    >>> [float(n[k]) for k in ('global', 'decayed', 'not_decayed')]
    [5.0, 4.0, 3.0]
  """
  _, leaves, _ = _paths.leaves_with_paths(params)
  selected = _masks.resolve(mask, params)
  zero = jnp.zeros([], jnp.float32)
  sums = {True: zero, False: zero}
  for leaf, on in zip(leaves, selected):
    if _paths.is_float(leaf):
      x = jnp.asarray(leaf).astype(jnp.float32)
      sums[on] = sums[on] + jnp.sum(x * x)
  return {
      'global': jnp.sqrt(sums[True] + sums[False]),
      'decayed': jnp.sqrt(sums[True]),
      'not_decayed': jnp.sqrt(sums[False]),
  }
