"""Cheap diagnostics of decay at work, safe to log every step under jit."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wdax import _checks
from wdax import masks as _masks
from wdax import paths as _paths


def norms(params: Any, mask: _masks.MaskLike = None) -> dict[str, jax.Array]:
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


def equilibrium_norm(
    lr: float | jax.Array, rate: float | jax.Array, size: int | jax.Array
) -> jax.Array:
  r"""Predicted steady-state norm of a scale-invariant weight under AdamW.

  .. math::

    \widehat{\lVert\theta\rVert} = \sqrt{\frac{\eta\, C}{2 \lambda}}

  where :math:`\eta` is the learning rate, :math:`\lambda` the weight decay in
  the ``optax.adamw`` / :func:`wdax.adamw` convention (decay per step
  :math:`\eta\lambda`) and :math:`C` the number of elements of the weight
  vector, e.g. one neuron's fan-in, or a whole tensor if it is normalised as
  one.

  A weight is scale-invariant when the loss depends only on its direction, as
  for a layer followed by normalisation. Its gradient is then orthogonal to
  it, so each Adam step grows its squared norm by about
  :math:`\eta^2 C` (Adam's normalised update has unit RMS per element), while
  decay shrinks it by :math:`2\eta\lambda\lVert\theta\rVert^2`. The norm
  settles where the two balance, whatever it started at; the weight then turns
  by about :math:`\sqrt{2\eta\lambda}` radians per step. This is the AdamW
  entry of Kosson, Messmer & Jaggi, "Rotational Equilibrium: How Weight Decay
  Balances Learning Across Neural Networks", 2024, arXiv:2305.17212, derived
  for random, uncorrelated gradients and to first order in
  :math:`\eta\lambda`; it does not depend on Adam's :math:`\beta_1`.

  For other couplings, pass the ``rate`` with the same decay per step:
  :math:`c_t/\eta` (e.g. ``rate / lr`` for ``coupling='none'``).

  Args:
    lr: :math:`\eta`, a positive number or scalar array.
    rate: :math:`\lambda`, a positive number or scalar array.
    size: :math:`C`, a positive int, or an array whose number of elements it
      is.

  Returns:
    The predicted norm, a float32 scalar.

  Examples:
    >>> import wdax
    >>> print(f'{wdax.diagnostics.equilibrium_norm(1e-3, 0.1, 512):.4f}')
    1.6000
  """
  fn = 'equilibrium_norm(...)'
  lr = _checks.positive(lr, f'{fn}: lr', traced=True)
  rate = _checks.positive(rate, f'{fn}: rate', traced=True)
  if hasattr(size, 'shape') or isinstance(size, (list, tuple)):
    size = int(np.prod(np.shape(size)))
  size = _checks.count(size, f'{fn}: size (an int, or an array)', minimum=1)
  lr = jnp.asarray(lr, jnp.float32)
  rate = jnp.asarray(rate, jnp.float32)
  return jnp.sqrt(lr * jnp.float32(size) / (2 * rate))
