"""wdax.labels: param_labels for optax.partition, with the typo guard."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import wdax


def _params():
  return {
      'embed': {'embedding': jnp.arange(6.0).reshape(3, 2)},
      'Dense_0': {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones(2)},
      'head': {'kernel': jnp.full((2, 1), 2.0)},
  }


def test_first_matching_pattern_wins_and_default_takes_the_rest():
  got = wdax.labels({'embed': 'frozen', 'kernel': 'matrix'}, default='other')(_params())
  assert got == {
      'embed': {'embedding': 'frozen'},
      'Dense_0': {'kernel': 'matrix', 'bias': 'other'},
      'head': {'kernel': 'matrix'},
  }


def test_labels_drive_partition_with_set_to_zero():
  params = _params()
  grads = jax.tree.map(jnp.ones_like, params)
  tx = optax.partition(
      {'frozen': optax.set_to_zero(), 'train': optax.sgd(0.5)},
      wdax.labels({'embed': 'frozen'}, default='train'),
  )
  updates, _ = tx.update(grads, tx.init(params), params)
  want = jax.tree.map(lambda g: -0.5 * g, grads)
  want['embed']['embedding'] = jnp.zeros((3, 2))
  chex.assert_trees_all_equal(updates, want)


def test_a_typo_is_an_error_at_init_naming_the_pattern():
  tx = optax.partition(
      {'frozen': optax.set_to_zero(), 'train': optax.sgd(0.5)},
      wdax.labels({'embd': 'frozen'}, default='train'),
  )
  with pytest.raises(ValueError, match="labels\\(\\): pattern 'embd' matches no parameter"):
    tx.init(_params())


def test_a_pattern_shadowed_by_earlier_ones_is_an_error():
  labels = wdax.labels({'kernel': 'a', 'head/kernel': 'b'}, default='c')
  with pytest.raises(ValueError, match="pattern 'head/kernel' has no effect"):
    labels(_params())


def test_without_default_an_unmatched_leaf_is_named():
  with pytest.raises(ValueError, match="parameter path 'Dense_0/bias'"):
    wdax.labels({'kernel': 'a', 'embed': 'b'})(_params())


def test_labels_work_on_an_nnx_state():
  class Model(nnx.Module):
    def __init__(self, rngs):
      self.embed = nnx.Embed(3, 2, rngs=rngs)
      self.head = nnx.Linear(2, 1, rngs=rngs)

  model = Model(nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  tx = optax.partition(
      {'frozen': optax.set_to_zero(), 'train': optax.sgd(1.0)},
      wdax.labels({'embed': 'frozen'}, default='train'),
  )
  grads = jax.tree.map(jnp.ones_like, state)
  updates, _ = tx.update(grads, tx.init(state), state)
  flat = dict(zip(wdax.leaf_paths(updates), jax.tree.leaves(updates)))
  assert np.all(flat['embed/embedding'] == 0)
  assert np.all(flat['head/kernel'] == -1.0)
