"""Tests of wdax.sweep.planning: chunks, budgets, evaluation points, devices."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wdax.sweep import planning


@pytest.mark.parametrize(
    ('configurations', 'devices', 'limit', 'expected'),
    [
        (80, 1, 80, (80, 1)),
        (80, 1, 18, (16, 5)),  # 5 chunks of 16 pad nothing; 5 of 18 would
        (80, 2, 38, (20, 4)),  # 4 of 20 pad nothing; 3 of 28 would pad 4
        (7, 2, 100, (8, 1)),  # a multiple of the device count
        (3, 8, 1, (8, 1)),  # never fewer than one per device
    ],
)
def test_chunk_sizes(configurations, devices, limit, expected):
  assert planning.chunking(configurations, devices, 1, limit, None, 0) == expected


def test_memory_budget_sets_the_chunk_size():
  # 3 configurations fit the budget: 4 chunks of 3 would pad 2; 5 of 2 pad none.
  assert planning.chunking(10, 1, 1000, None, 3000, 0) == (2, 5)
  # Without a budget argument, the default one applies; 2 per device fit.
  assert planning.chunking(10, 2, 1000, None, None, 2000) == (2, 5)


def test_evaluation_points():
  np.testing.assert_array_equal(planning.evaluation_points(20, 10), np.arange(2, 21, 2))
  np.testing.assert_array_equal(planning.evaluation_points(7, 10), np.arange(1, 8))
  np.testing.assert_array_equal(planning.evaluation_points(13, 5), [3, 5, 8, 10, 13])


def test_traced_counts_what_is_materialised():
  def fn(a, b):
    c = a @ b  # (4, 3) float32: 48 bytes
    return jnp.sum(jnp.exp(c) + 1.0, axis=0)  # (3,): 12 bytes; the exp fuses

  a = jax.ShapeDtypeStruct((4, 5), jnp.float32)
  b = jax.ShapeDtypeStruct((5, 3), jnp.float32)
  size, out = planning.traced(fn, a, b)
  assert size == 48 + 12 and out.shape == (3,)


def test_bytes_per_configuration_by_hand():
  params = {'w': jax.ShapeDtypeStruct((10,), jnp.float32)}
  opt_state = (jax.ShapeDtypeStruct((10,), jnp.float32),) * 2
  state = {'mean': jax.ShapeDtypeStruct((5,), jnp.float32)}
  expected = 4 * 40 + 80 + 2 * 20 + 2 * 100 * 7
  assert planning.bytes_per_configuration(params, opt_state, state, 100.0, 7) == expected


def test_devices():
  assert planning.devices(None) == jax.devices()
  assert planning.devices(1) == jax.devices()[:1]
  with pytest.raises(ValueError, match='devices=99'):
    planning.devices(99)
