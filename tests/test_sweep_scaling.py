"""Tests of wdax.sweep.scaling: standardising with the training statistics."""

import numpy as np

from wdax import sweep


def test_standardize_uses_the_training_statistics():
  train = np.array([[1.0, 4.0], [3.0, 4.0]])
  other = np.array([[5.0, 0.0]])
  a, b = sweep.standardize(train, other)
  np.testing.assert_allclose(a, [[-1.0, 0.0], [1.0, 0.0]])
  np.testing.assert_allclose(b, [[3.0, -4.0]])
  assert a.dtype == np.float32
