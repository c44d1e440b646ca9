"""Tests for wdax.toward: decay toward reference weights (L2-SP).

The reference lives in the state as a tree shaped like the params, with
``optax.MaskedNode()`` where nothing decays: optax's tree utilities, wdax's
sharding and checkpoints all find it under each parameter's own path.
"""

import itertools

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest
from flax import nnx
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from support.decay_trees import params as _params
from support.decay_trees import updates as _updates

import wdax
from wdax import masks
from wdax.reference import TowardState

_normal = st.floats(-4, 4, width=32, allow_subnormal=False)


@pytest.mark.parametrize('lr', [None, 0.5])
def test_toward_given_reference(lr, strict_dtypes):
  params = {'w': jnp.array([2.0, -1.0, 0.5]), 'n': jnp.array([1], jnp.int32)}
  ref = {'w': jnp.array([1.0, 1.0, 0.5]), 'n': jnp.array([0], jnp.int32)}
  u = {'w': jnp.array([0.25, 0.25, 0.25]), 'n': jnp.array([0], jnp.int32)}
  tx = wdax.toward(ref, 0.1, lr=lr)
  state = tx.init(params)
  assert isinstance(state, TowardState)
  updates, state = tx.update(u, state, params)
  c = 0.1 * (lr or 1.0)
  np.testing.assert_allclose(
      updates['w'], [0.25 - c * 1.0, 0.25 + c * 2.0, 0.25], rtol=1e-6
  )
  np.testing.assert_array_equal(updates['n'], [0])
  assert int(state.count) == 1


def test_toward_init_captures_the_first_params(strict_dtypes):
  init = {'a': jnp.array([1.0, 2.0]), 'b': jnp.array([3.0])}
  tx = wdax.toward('init', 0.5, mask=masks.include('a'))
  state = tx.init(init)
  # A tree shaped like the params: the decayed leaf is stored, the other is a
  # MaskedNode.
  assert isinstance(state.reference['b'], optax.MaskedNode)
  np.testing.assert_array_equal(state.reference['a'], [1.0, 2.0])
  assert jax.tree.leaves(state) == [state.count, state.reference['a']]
  moved = {'a': jnp.array([3.0, 0.0]), 'b': jnp.array([7.0])}
  zero = jax.tree.map(jnp.zeros_like, moved)
  updates, _ = tx.update(zero, state, moved)
  np.testing.assert_allclose(updates['a'], [-1.0, 1.0])
  np.testing.assert_array_equal(updates['b'], [0.0])


def test_toward_init_copies_the_params():
  params = {'w': jnp.array([1.0, 2.0])}
  state = wdax.toward('init', 0.5).init(params)
  assert state.reference['w'] is not params['w']
  assert (
      state.reference['w'].unsafe_buffer_pointer()
      != params['w'].unsafe_buffer_pointer()
  )


def test_toward_zero_reference_is_decoupled(strict_dtypes):
  params = _params()
  ref = jax.tree.map(jnp.zeros_like, params)
  u = _updates(params)
  tx = wdax.toward(ref, 0.3, lr=0.1)
  a, _ = tx.update(u, tx.init(params), params)
  b, _ = wdax.decoupled(0.3, lr=0.1).update(u, optax.EmptyState(), params)
  chex.assert_trees_all_equal(a, b)


@settings(deadline=None, max_examples=15)
@given(
    p=st.lists(_normal, min_size=3, max_size=3),
    u=st.lists(_normal, min_size=3, max_size=3),
    c=st.floats(0, 10),
    from_init=st.booleans(),
)
def test_toward_law_identity_at_the_reference(p, u, c, from_init):
  params = {'w': jnp.array(p, jnp.float32)}
  updates = {'w': jnp.array(u, jnp.float32)}
  tx = wdax.toward('init' if from_init else params, c)
  got, _ = tx.update(updates, tx.init(params), params)
  np.testing.assert_array_equal(got['w'], updates['w'])


def test_toward_rate_zero_is_identity_and_stores_nothing(strict_dtypes):
  params = _params()
  tx = wdax.toward('init', 0.0)
  state = tx.init(params)
  assert jax.tree.leaves(state.reference) == []
  assert isinstance(state.reference['Dense_0']['kernel'], optax.MaskedNode)
  moved = jax.tree.map(lambda p: p + 1 if p.dtype != jnp.int32 else p, params)
  u = _updates(params)
  got, _ = tx.update(u, state, moved)
  chex.assert_trees_all_equal(got, u)


def test_toward_eval_shape(strict_dtypes):
  params = _params()
  tx = wdax.toward('init', wdax.rates({'kernel': 0.5}, default=0.0))
  shapes = jax.eval_shape(tx.init, params)
  assert isinstance(shapes.reference['Dense_0']['bias'], optax.MaskedNode)
  assert shapes.reference['Dense_0']['kernel'].shape == (4, 3)
  chex.assert_trees_all_equal_shapes_and_dtypes(shapes, tx.init(params))


def test_toward_with_nnx_optimizer():
  model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
  start = nnx.state(model, nnx.Param)
  start = jax.tree.map(lambda x: jnp.array(x, copy=True), start)
  tx = optax.chain(
      optax.sgd(0.1), wdax.toward('init', 0.5, lr=0.1, mask=masks.include('kernel'))
  )
  opt = nnx.Optimizer(model, tx, wrt=nnx.Param)
  x = jnp.ones((4, 3))
  for _ in range(3):
    grads = nnx.grad(lambda m: jnp.mean(m(x) ** 2))(model)
    opt.update(model, grads)
  # The stored reference is plain arrays, equal to the starting kernel.
  leaves = jax.tree.leaves(opt.opt_state)
  assert all(isinstance(x, jax.Array) for x in leaves)
  refs = [
      r for r in jax.tree.leaves(
          opt.opt_state, is_leaf=lambda x: isinstance(x, TowardState)
      ) if isinstance(r, TowardState)
  ]
  (state,) = refs
  (kernel_ref,) = jax.tree.leaves(state.reference)
  assert wdax.leaf_paths(state.reference) == ['kernel']
  np.testing.assert_array_equal(jnp.asarray(kernel_ref), start['kernel'][...])


def test_toward_errors(strict_dtypes):
  params = {'a': jnp.ones(2), 'b': {'c': jnp.ones(3)}}
  with pytest.raises(ValueError, match=r"'init'"):
    wdax.toward('initial', 0.1)
  with pytest.raises(ValueError, match='non-negative'):
    wdax.toward('init', -0.1)
  with pytest.raises(ValueError, match='finite'):
    wdax.toward('init', float('nan'))
  with pytest.raises(ValueError, match=r"reference path 'b/d' where params have 'b/c'"):
    wdax.toward({'a': jnp.ones(2), 'b': {'d': jnp.ones(3)}}, 0.1).init(params)
  with pytest.raises(ValueError, match=r"reference path None where params have 'b/c'"):
    wdax.toward({'a': jnp.ones(2)}, 0.1).init(params)
  with pytest.raises(ValueError, match=r"'b/c' has shape \(2,\)"):
    wdax.toward({'a': jnp.ones(2), 'b': {'c': jnp.ones(2)}}, 0.1).init(params)
  tx = wdax.toward('init', 0.1)
  # A state initialised with other params: the first differing path is named.
  with pytest.raises(ValueError, match=r"reference path 'b/c' where params have None"):
    tx.update({'a': jnp.ones(2)}, tx.init(params), {'a': jnp.ones(2)})


def test_toward_mask_must_select_the_same_leaves():
  calls = itertools.count()
  # A mask that changes its mind between init and update.
  mask = lambda p: {'a': next(calls) == 0, 'b': True}  # noqa: E731
  params = {'a': jnp.ones(2), 'b': jnp.ones(2)}
  tx = wdax.toward('init', 0.1, mask=mask)
  state = tx.init(params)
  with pytest.raises(ValueError, match="'a' is decayed now but was not"):
    tx.update(params, state, params)


def test_bfloat16_reference_values_are_bfloat16():
  # ml_dtypes is what numpy uses for bfloat16 here; the stored reference keeps
  # the params' dtype.
  params = {'w': jnp.ones(3, jnp.bfloat16)}
  state = wdax.toward('init', 0.1).init(params)
  assert state.reference['w'].dtype == jnp.bfloat16
  assert np.asarray(state.reference['w']).dtype == ml_dtypes.bfloat16


# The reference as a params-shaped tree.


def test_reference_is_a_params_shaped_tree_with_masked_nodes():
  params = _params()
  state = wdax.toward('init', 0.1, mask=masks.flax_default()).init(params)
  assert jax.tree.structure(
      state.reference, is_leaf=lambda x: isinstance(x, optax.MaskedNode)
  ) == jax.tree.structure(params)
  assert wdax.leaf_paths(state.reference) == ['Dense_0/kernel']
  for path in [('Dense_0', 'bias'), ('LayerNorm_0', 'scale')]:
    assert isinstance(state.reference[path[0]][path[1]], optax.MaskedNode)
  assert isinstance(state.reference['step'], optax.MaskedNode)  # never decayed


def test_optax_tree_map_params_maps_the_reference():
  params = _params()
  tx = optax.chain(optax.adam(1e-2), wdax.toward('init', 0.1, mask=masks.flax_default()))
  state = tx.init(params)
  doubled = optax.tree.map_params(
      tx, lambda p: 2 * p, state, transform_non_params=lambda x: x
  )
  np.testing.assert_array_equal(
      doubled[1].reference['Dense_0']['kernel'], 2 * params['Dense_0']['kernel']
  )
  np.testing.assert_array_equal(
      doubled[0][0].mu['Dense_0']['kernel'], 2 * state[0][0].mu['Dense_0']['kernel']
  )
  assert int(doubled[1].count) == 0  # not a parameter tree: left alone
  # The optax test's no-op map keeps the state's structure.
  same = optax.tree.map_params(tx, lambda v: v, state)
  chex.assert_trees_all_equal_structs(same, state)


def test_checkpoints_key_the_reference_by_the_parameters_path(tmp_path):
  from wdax import checkpoint

  params = _params()
  tx = wdax.toward('init', 0.1, mask=masks.flax_default())
  state = tx.init(params)
  assert wdax.leaf_paths({'opt_state': state}) == [
      'opt_state/count', 'opt_state/reference/Dense_0/kernel'
  ]
  checkpoint.save(tmp_path / 'ckpt', {'opt_state': state})
  fresh = tx.init(jax.tree.map(jnp.zeros_like, params))
  restored = checkpoint.restore(tmp_path / 'ckpt', {'opt_state': fresh})
  chex.assert_trees_all_equal(restored['opt_state'], state)


class TowardJitAndEager(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  def test_the_rule_with_jit_and_without(self):
    params = _params()
    ref = jax.tree.map(lambda p: (0.5 * p).astype(p.dtype), params)
    tx = wdax.toward(ref, 0.4, lr=0.5, mask=masks.include('Dense_0/kernel'))
    state = tx.init(params)
    got, state = self.variant(tx.update)(_updates(params), state, params)
    p = np.asarray(params['Dense_0']['kernel'], np.float64)
    u = np.asarray(_updates(params)['Dense_0']['kernel'], np.float64)
    want = u - 0.2 * (p - 0.5 * p)
    np.testing.assert_allclose(got['Dense_0']['kernel'], want, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(got['Dense_0']['bias'], _updates(params)['Dense_0']['bias'])
    assert int(state.count) == 1
