"""Tests of wdax.sweep._orders: the seeded orders of visit."""

import numpy as np

from wdax.sweep import _orders


def test_orders_list_the_training_examples_first_in_a_seeded_order():
  table = np.array([[1, 0, 1, 1, 0], [0, 1, 1, 1, 1]])
  out = _orders.orders([7], table, [3], 2, 6)
  assert out.shape == (1, 2, 2, 6)
  noise = np.random.default_rng([7, 3]).random(5)
  for k, row in enumerate(table):
    members = np.flatnonzero(row)
    np.testing.assert_array_equal(out[0, k, 0, : len(members)], members[np.argsort(noise[members])])
    assert set(out[0, k, 0, :5].tolist()) == set(range(5))
  np.testing.assert_array_equal(out[..., 5], 0)
