"""Tests for wdax.masks."""

import dataclasses
import functools
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import wdax
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


# Value equality: equal masks are one compiled program.


def test_equal_masks_compare_and_hash_equal():
  same = [
      (masks.include('kernel', 'bias'), masks.include('kernel', 'bias')),
      (masks.flax_default(), masks.flax_default()),
      (masks.min_ndim(2) & ~masks.include('bias'), masks.min_ndim(2) & ~masks.include('bias')),
      (masks.as_mask({'a': True, 'b': False}), masks.as_mask({'a': True, 'b': False})),
      (masks.as_mask(None), masks.as_mask(None)),
  ]
  for a, b in same:
    assert a == b and hash(a) == hash(b), (a, b)
  different = [
      (masks.include('kernel'), masks.exclude('kernel')),
      (masks.include('kernel'), masks.include('bias')),
      (masks.flax_default(), masks.flax_default(embeddings=True)),
      (masks.min_ndim(2) & masks.include('a'), masks.include('a') & masks.min_ndim(2)),
      (masks.as_mask({'a': True, 'b': False}), masks.as_mask({'a': True, 'b': True})),
      (masks.as_mask({'a': True}), masks.as_mask([True])),
  ]
  for a, b in different:
    assert a != b, (a, b)
  fn = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
  assert masks.as_mask(fn) == masks.as_mask(fn)
  assert masks.as_mask(fn) != masks.as_mask(lambda p: fn(p))
  assert len({masks.include('w'), masks.include('w'), masks.exclude('w')}) == 2


def test_equal_masks_reuse_a_compiled_program():
  chex.clear_trace_counter()
  params = _params()

  # Five calls with masks built anew each time, two of them distinct: two
  # traces, as a command line or a sweep that rebuilds its masks needs.
  @functools.partial(jax.jit, static_argnums=0)
  @chex.assert_max_traces(n=2)
  def decay(mask, params):
    tx = wdax.decoupled(0.1, mask=mask)
    return tx.update(params, tx.init(params), params)[0]

  for _ in range(3):
    decay(masks.flax_default() & ~masks.include('Embed_0'), params)
  decay(masks.as_mask(jax.tree.map(lambda x: x.ndim == 2, params)), params)
  decay(masks.as_mask(jax.tree.map(lambda x: x.ndim == 2, params)), params)


# optax's rule for callable masks.


@dataclasses.dataclass
class _CallableModule:
  """Equinox-style: a pytree that is also callable."""

  w: Any

  def __call__(self, x):
    return self.w * x


jax.tree_util.register_pytree_node(
    _CallableModule, lambda m: ((m.w,), None), lambda _, c: _CallableModule(*c)
)


def test_a_callable_pytree_of_bools_is_a_mask_tree():
  # optax decides by the leaves: bools, so a tree, though callable.
  params = {'a': _CallableModule(jnp.ones(3)), 'b': _CallableModule(jnp.ones(2))}
  mask = {'a': _CallableModule(True), 'b': _CallableModule(False)}
  assert callable(mask['a'])
  assert masks.resolve(mask, params) == [True, False]
  module = _CallableModule(jnp.array([1.0, 2.0]))
  tx = wdax.decoupled(0.5, mask=_CallableModule(True))
  out, _ = tx.update(_CallableModule(jnp.zeros(2)), tx.init(module), module)
  np.testing.assert_allclose(out.w, [-0.5, -1.0])
  frozen = wdax.decoupled(0.5, mask=_CallableModule(False))
  out, _ = frozen.update(_CallableModule(jnp.zeros(2)), frozen.init(module), module)
  np.testing.assert_array_equal(out.w, [0.0, 0.0])


# Masks shown part of the tree by optax.


def _mlp_params():
  return {
      'Dense_0': {'kernel': jnp.ones((4, 3)), 'bias': jnp.ones(3)},
      'LayerNorm_0': {'scale': jnp.ones(3), 'bias': jnp.ones(3)},
      'Dense_1': {'kernel': jnp.ones((3, 2)), 'bias': jnp.ones(2)},
  }


def test_muon_weight_decay_mask_sees_only_the_matrices():
  params = _mlp_params()
  grads = jax.tree.map(lambda x: jnp.full_like(x, 0.1), params)
  tx = optax.contrib.muon(
      1e-2, weight_decay=0.5, weight_decay_mask=masks.exclude('bias', 'scale')
  )
  ref = optax.contrib.muon(
      1e-2, weight_decay=0.5,
      weight_decay_mask=lambda p: jax.tree.map(lambda x: True, p),
  )
  got, _ = tx.update(grads, tx.init(params), params)
  want, _ = ref.update(grads, ref.init(params), params)
  chex.assert_trees_all_equal(got, want)
  # A typo still fails, at init, naming the parameters there are.
  typo = optax.contrib.muon(
      1e-2, weight_decay=0.5, weight_decay_mask=masks.exclude('bais', 'scale')
  )
  with pytest.raises(ValueError, match="pattern 'bais' matches no parameter") as err:
    typo.init(params)
  assert 'Dense_0/bias' in str(err.value)


def test_a_mask_inside_an_optax_partition_branch():
  params = _mlp_params()
  labels = {
      'Dense_0': {'kernel': 'a', 'bias': 'a'},
      'LayerNorm_0': {'scale': 'b', 'bias': 'b'},
      'Dense_1': {'kernel': 'a', 'bias': 'a'},
  }
  # Branch 'b' sees only the LayerNorm: 'kernel' matches nothing shown there,
  # but names parameters branch 'a' has; flax_default too.
  for mask in (masks.include('kernel'), masks.flax_default()):
    tx = optax.partition(
        {
            'a': optax.chain(optax.sgd(0.1), wdax.decoupled(0.5, mask=mask)),
            'b': optax.chain(optax.sgd(0.1), wdax.decoupled(0.5, mask=mask)),
        },
        labels,
    )
    zero = jax.tree.map(jnp.zeros_like, params)
    got, _ = tx.update(zero, tx.init(params), params)
    np.testing.assert_allclose(got['Dense_0']['kernel'], -0.5 * np.ones((4, 3)))
    np.testing.assert_allclose(got['Dense_1']['kernel'], -0.5 * np.ones((3, 2)))
    for path in [('Dense_0', 'bias'), ('LayerNorm_0', 'scale'), ('LayerNorm_0', 'bias')]:
      np.testing.assert_array_equal(got[path[0]][path[1]], 0.0)
  typo = optax.partition(
      {'a': optax.sgd(0.1), 'b': wdax.decoupled(0.5, mask=masks.include('kernal'))},
      labels,
  )
  with pytest.raises(ValueError, match="'kernal' matches no parameter"):
    typo.init(params)


def test_the_typo_guard_fires_for_a_wdax_transforms_own_mask():
  params = _mlp_params()
  for mask in (masks.include('kernal'), masks.exclude('bais')):
    with pytest.raises(ValueError, match='matches no parameter'):
      wdax.decoupled(0.1, mask=mask).init(params)
    with pytest.raises(ValueError, match='matches no parameter'):
      optax.adamw(1e-3, mask=mask).init(params)


def test_a_pattern_matching_only_hidden_parameters_selects_nothing():
  shown = {'Dense_0': {'kernel': jnp.ones((4, 3)), 'bias': optax.MaskedNode()}}
  assert masks.resolve(masks.include('bias'), shown) == [False]
  assert masks.resolve(masks.exclude('bias'), shown) == [True]
  assert wdax.rates({'bias': 0.1}, default=0.2).resolve(['Dense_0/kernel'], ['Dense_0/bias']) == [0.2]
  with pytest.raises(ValueError, match="'bais' matches no parameter"):
    masks.resolve(masks.include('bais'), shown)
