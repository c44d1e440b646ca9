"""Tests for wdax.masks."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

from wdax import masks
from wdax.paths import leaf_paths


def _params():
  return {
      'Embed_0': {'embedding': jnp.ones((7, 4))},
      'Dense_0': {'kernel': jnp.ones((4, 4)), 'bias': jnp.ones((4,))},
      'LayerNorm_0': {'scale': jnp.ones((4,)), 'bias': jnp.ones((4,))},
      'attn_bias': {'bias': jnp.ones((4, 4))},
      'step': jnp.zeros((), jnp.int32),
  }


def _selected(mask_tree):
  return sorted(
      wdax_path
      for wdax_path, on in zip(
          leaf_paths(mask_tree),
          jax.tree.leaves(mask_tree),
      )
      if on
  )


def test_flax_default_decays_kernels_only_whatever_their_rank():
  assert _selected(masks.flax_default()(_params())) == ['Dense_0/kernel']


def test_flax_default_with_embeddings():
  got = _selected(masks.flax_default(embeddings=True)(_params()))
  assert got == ['Dense_0/kernel', 'Embed_0/embedding']


def test_flax_default_on_scanned_linen_params():
  class Block(nn.Module):
    @nn.compact
    def __call__(self, x, _):
      return nn.LayerNorm()(nn.Dense(4)(x)), None

  scanned = nn.scan(
      Block, variable_axes={'params': 0}, split_rngs={'params': True}, length=3
  )
  params = scanned().init(jax.random.key(0), jnp.ones((1, 4)), None)['params']
  chosen = masks.flax_default()(params)
  # Stacked biases and scales are 2-D here; the rule is by name, not rank.
  assert chosen['Dense_0']['bias'] is False
  assert chosen['LayerNorm_0']['scale'] is False
  assert chosen['Dense_0']['kernel'] is True
  assert params['Dense_0']['bias'].ndim == 2


def test_flax_default_on_nnx_state():
  class Model(nnx.Module):
    def __init__(self, rngs):
      self.embed = nnx.Embed(5, 4, rngs=rngs)
      self.linear = nnx.Linear(4, 4, rngs=rngs)
      self.norm = nnx.LayerNorm(4, rngs=rngs)

  state = nnx.state(Model(nnx.Rngs(0)), nnx.Param)
  got = masks.resolve(masks.flax_default(), state)
  # Flattening order: embed/embedding, linear/bias, linear/kernel, norm/bias,
  # norm/scale.
  assert got == [False, False, True, False, False]
  assert masks.resolve(masks.flax_default(), nnx.as_pure(state)) == got


def test_include_exclude_min_ndim():
  params = _params()
  assert _selected(masks.include('Dense_0', 'Embed_0')(params)) == [
      'Dense_0/bias',
      'Dense_0/kernel',
      'Embed_0/embedding',
  ]
  assert _selected(masks.exclude('bias', 'scale')(params)) == [
      'Dense_0/kernel',
      'Embed_0/embedding',
  ]
  assert _selected(masks.min_ndim(2)(params)) == [
      'Dense_0/kernel',
      'Embed_0/embedding',
      'attn_bias/bias',
  ]


def test_algebra():
  params = _params()
  both = masks.min_ndim(2) & ~masks.include('bias')
  assert _selected(both(params)) == ['Dense_0/kernel', 'Embed_0/embedding']
  either = masks.include('scale') | masks.flax_default()
  assert _selected(either(params)) == ['Dense_0/kernel', 'LayerNorm_0/scale']
  assert repr(both) == "(min_ndim(2) & ~include('bias'))"


def test_algebra_with_plain_optax_masks():
  params = _params()
  tree = jax.tree.map(lambda x: x.ndim == 2, params)
  assert _selected((masks.exclude('Embed_0') & tree)(params)) == [
      'Dense_0/kernel',
      'attn_bias/bias',
  ]
  fn = lambda p: {k: k.startswith('D') for k in p}  # noqa: E731 - prefix mask
  assert _selected((fn | masks.include('scale'))(params)) == [
      'Dense_0/bias',
      'Dense_0/kernel',
      'LayerNorm_0/scale',
  ]


def test_integer_leaves_never_selected():
  params = _params()
  assert masks.resolve(None, params)[-1] is False
  assert masks.resolve(masks.exclude('Dense_0'), params)[-1] is False
  assert masks.resolve(True, params)[-1] is False


def test_prefix_tree_broadcasts():
  params = _params()
  prefix = {
      'Embed_0': False,
      'Dense_0': True,
      'LayerNorm_0': False,
      'attn_bias': False,
      'step': False,
  }
  got = masks.resolve(prefix, params)
  assert got == [p.startswith('Dense_0/') for p in leaf_paths(params)]
  assert masks.resolve({'Dense_0': True}, {'Dense_0': params['Dense_0']}) == [
      True,
      True,
  ]


def test_mask_works_inside_optax():
  params = {'w': jnp.ones((2, 2)), 'b': jnp.ones(2)}
  tx = optax.adamw(0.1, weight_decay=0.5, mask=masks.include('w'))
  updates, _ = tx.update(
      jax.tree.map(jnp.zeros_like, params), tx.init(params), params
  )
  # Adam's step is zero for zero gradients, so only the decay shows: -lr*wd*p.
  np.testing.assert_allclose(updates['w'], -0.05 * np.ones((2, 2)))
  np.testing.assert_array_equal(updates['b'], np.zeros(2))


@pytest.mark.parametrize(
    'make, message',
    [
        (lambda: masks.include('kernal'), "pattern 'kernal' matches no parameter"),
        (lambda: masks.exclude('nope'), "pattern 'nope' matches no parameter"),
        (lambda: masks.flax_default(embeddings=True) & masks.include('x'), 'named'),
    ],
)
def test_pattern_matching_nothing_raises(make, message):
  params = {'Dense_0': {'kernel': jnp.ones((2, 2))}}
  with pytest.raises(ValueError, match=message) as err:
    make()(params)
  assert 'Dense_0/kernel' in str(err.value) or 'embedding' in str(err.value)


def test_flax_default_without_kernels_raises():
  with pytest.raises(ValueError, match="no parameter is named 'kernel'"):
    masks.flax_default()({'w': jnp.ones(2)})


def test_structure_mismatch_names_path():
  params = {'a': {'x': jnp.ones(2), 'y': jnp.ones(2)}}
  with pytest.raises(ValueError, match="no entry for parameter path 'a/y'"):
    masks.resolve({'a': {'x': True}}, params)
  with pytest.raises(ValueError, match="entry 'a/z' names no parameter"):
    masks.resolve({'a': {'x': True, 'y': True, 'z': False}}, params)
  with pytest.raises(ValueError, match="'a/x' must be a bool"):
    masks.resolve({'a': {'x': 0.5, 'y': True}}, params)


def test_traced_mask_raises():
  params = {'w': jnp.ones(2)}

  def f(flag):
    return masks.resolve({'w': flag}, params)

  with pytest.raises(ValueError, match='static'):
    jax.jit(f)(jnp.array(True))


@pytest.mark.parametrize('bad', [-1, 1.5, True])
def test_min_ndim_validates(bad):
  with pytest.raises(ValueError, match='min_ndim'):
    masks.min_ndim(bad)


def test_empty_pattern_list_raises():
  with pytest.raises(ValueError, match='at least one pattern'):
    masks.include()
