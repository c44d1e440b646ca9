"""Preparing data for a sweep, and the built-in transformer of ``describe``.

This is library logic, not command-line logic: the stratified hold-out split,
the standardisation of features and the tiny transformer belong in
:mod:`wdax.sweep`, and move there, as they are, once it becomes a package.
Until then the command line keeps them together here, so that the move
touches this file and the imports of :mod:`wdax.cli.running` only.
"""

from __future__ import annotations


def holdout(codes, fraction: float, seed: int):
  """Stratified split: about ``fraction`` of each class is held out.

  Each class with at least two examples keeps at least one for training and
  holds out at least one; a class with one example keeps it for training.

  Args:
    codes: the class of each example, integers.
    fraction: the fraction of each class to hold out, in (0, 1).
    seed: the seed of the shuffle within each class.

  Returns:
    ``(train, test)``: the indices of the training and the held-out examples,
    each increasing.

  Examples:
    >>> import numpy as np
    >>> train, test = holdout(np.array([0, 0, 0, 0, 1, 1]), 0.5, seed=0)
    >>> len(train), len(test)
    (3, 3)
  """
  import numpy as np

  rng = np.random.default_rng(seed)
  test = []
  for c in np.unique(codes):
    members = rng.permutation(np.flatnonzero(codes == c))
    k = int(round(fraction * len(members)))
    k = min(max(k, 1), len(members) - 1) if len(members) > 1 else 0
    test.extend(members[:k].tolist())
  is_test = np.zeros(len(codes), bool)
  is_test[test] = True
  return np.flatnonzero(~is_test), np.flatnonzero(is_test)


def standardise(x_train, x_test):
  r"""Standardises both splits with the training split's statistics only.

  .. math::

    z_{ij} = \frac{x_{ij} - \mu_j}{\sigma_j}

  where :math:`\mu_j` and :math:`\sigma_j` are the mean and the standard
  deviation of feature :math:`j` over the training examples (a constant
  feature, :math:`\sigma_j = 0`, is only centred). Each feature is first
  scaled by a power of two that brings its largest training magnitude into
  :math:`[\tfrac12, 1)`: exact in floating point, so it changes no bit of
  :math:`z`, but the sums no longer overflow for values past
  :math:`10^{154}`.

  Returns:
    ``(z_train, z_test)`` as float32; a held-out value too far from the
    training values becomes infinite.

  Examples:
    >>> import numpy as np
    >>> z_train, z_test = standardise(np.array([[1.0, 5.0], [3.0, 5.0]]),
    ...                               np.array([[5.0, 6.0]]))
    >>> z_train.tolist(), z_test.tolist()
    ([[-1.0, 0.0], [1.0, 0.0]], [[3.0, 1.0]])
    >>> standardise(np.array([[1e300], [-1e300]]), np.array([[0.0]]))[0].ravel()
    array([ 1., -1.], dtype=float32)
  """
  import numpy as np

  _, exponent = np.frexp(np.abs(x_train).max(axis=0))
  scale = np.ldexp(1.0, -exponent)
  with np.errstate(over='ignore'):
    x_train, x_test = x_train * scale, x_test * scale
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    # A constant feature is only centred, in its own units.
    std = np.where(std == 0, scale, std)
    z_train = ((x_train - mean) / std).astype(np.float32)
    z_test = ((x_test - mean) / std).astype(np.float32)
  return z_train, z_test


def transformer():
  """A tiny Flax transformer classifier: what ``wdax describe`` shows by default."""
  import flax.linen as nn

  class TinyTransformer(nn.Module):
    """Two pre-norm encoder blocks over token embeddings, then a classifier."""

    vocab: int = 1000
    width: int = 64
    heads: int = 4
    blocks: int = 2
    classes: int = 10

    @nn.compact
    def __call__(self, tokens):
      h = nn.Embed(self.vocab, self.width)(tokens)
      for _ in range(self.blocks):
        h = h + nn.MultiHeadDotProductAttention(self.heads)(nn.LayerNorm()(h))
        z = nn.gelu(nn.Dense(4 * self.width)(nn.LayerNorm()(h)))
        h = h + nn.Dense(self.width)(z)
      return nn.Dense(self.classes)(nn.LayerNorm()(h).mean(axis=1))

  return TinyTransformer()
