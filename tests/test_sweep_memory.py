"""Tests of wdax.sweep._memory: the memory model of one configuration."""

import jax
import jax.numpy as jnp

from wdax.sweep import _memory


def test_traced_counts_what_is_materialised():
  def fn(a, b):
    c = a @ b  # (4, 3) float32: 48 bytes
    return jnp.sum(jnp.exp(c) + 1.0, axis=0)  # (3,): 12 bytes; the exp fuses

  a = jax.ShapeDtypeStruct((4, 5), jnp.float32)
  b = jax.ShapeDtypeStruct((5, 3), jnp.float32)
  size, out = _memory.traced(fn, a, b)
  assert size == 48 + 12 and out.shape == (3,)


def test_bytes_per_configuration_by_hand():
  params = {'w': jax.ShapeDtypeStruct((10,), jnp.float32)}
  opt_state = (jax.ShapeDtypeStruct((10,), jnp.float32),) * 2
  state = {'mean': jax.ShapeDtypeStruct((5,), jnp.float32)}
  expected = 4 * 40 + 80 + 2 * 20 + 2 * 100 * 7
  assert _memory.bytes_per_configuration(params, opt_state, state, 100.0, 7) == expected
