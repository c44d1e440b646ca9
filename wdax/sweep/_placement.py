"""Moving arrays between the host and the devices, across processes.

Every process of a multi-host sweep holds the same host values; each puts
on its own devices their part of a sharded array, and gathers the whole of
one back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding


def put(tree: Any, sharding: NamedSharding) -> Any:
  """Host values onto ``sharding``, across processes: every process holds
  the same values and gives the devices it owns their part."""
  if sharding.is_fully_addressable:
    return jax.device_put(tree, sharding)

  def leaf(a):
    if jax.dtypes.issubdtype(getattr(a, 'dtype', None), jax.dtypes.prng_key):
      data = np.asarray(jax.random.key_data(a))
      placed = jax.make_array_from_callback(data.shape, sharding, lambda i: data[i])
      return jax.random.wrap_key_data(placed, impl=jax.random.key_impl(a))
    a = np.asarray(a)
    return jax.make_array_from_callback(a.shape, sharding, lambda i: a[i])

  return jax.tree.map(leaf, tree)


def host(tree: Any) -> Any:
  """Arrays sharded over any processes' devices, whole on this host (numpy,
  but for random keys)."""

  def leaf(a):
    if jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key):
      return a if a.is_fully_addressable else jax.random.wrap_key_data(
          host(jax.random.key_data(a)), impl=jax.random.key_impl(a)
      )
    if a.is_fully_addressable:
      return np.asarray(a)
    return np.asarray(multihost_utils.process_allgather(a, tiled=True))

  return jax.tree.map(leaf, tree)


def _is_key(a: Any) -> bool:
  return jax.dtypes.issubdtype(a.dtype, jax.dtypes.prng_key)


def stack(arrays: Sequence[Any]) -> Any:
  """Arrays stacked on a new leading axis, on the host but for random keys."""
  if _is_key(arrays[0]):
    return jnp.stack(arrays)
  return np.stack([np.asarray(a) for a in arrays])


def concatenate(arrays: Sequence[Any]) -> Any:
  """Arrays joined on their leading axis, on the host but for random keys."""
  if _is_key(arrays[0]):
    return jnp.concatenate(arrays)
  return np.concatenate(arrays)
