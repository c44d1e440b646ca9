"""The small params tree, and updates shaped like it, that the decay tests share.

A linen-style tree with a kernel, a bias, a LayerNorm scale and an integer
leaf, so that masks, per-group rates and the "non-float leaves are left
alone" rule all have something to act on.
"""

import jax
import jax.numpy as jnp


def params(dtype=jnp.float32):
  k = jax.random.split(jax.random.key(0), 3)
  return {
      'Dense_0': {
          'kernel': jax.random.normal(k[0], (4, 3), dtype),
          'bias': jax.random.normal(k[1], (3,), dtype),
      },
      'LayerNorm_0': {'scale': 1 + jax.random.normal(k[2], (3,), dtype)},
      'step': jnp.array(3, jnp.int32),
  }


def updates(params, i=0):
  """Deterministic updates of the params' shapes and dtypes; zero on ints."""

  def leaf(p):
    if p.dtype == jnp.int32:
      return jnp.zeros_like(p)
    return (0.3 * jnp.sin(5 * p.astype(jnp.float32) + i)).astype(p.dtype)

  return jax.tree.map(leaf, params)
