"""optax 0.2.8's own tests of its decay and wrappers, re-expressed with wdax.

Each test below is a case of optax's test suite (file and test named in its
docstring), with wdax in place of optax's decay: ``wdax.l2`` for
``add_decayed_weights``, wdax masks (``wdax.masks.as_mask``) for optax's mask
trees and functions, wdax's optimisers and transforms inside
``inject_hyperparams``, ``MultiSteps`` and ``apply_if_finite``. Expected values
are optax's where the arithmetic is the same, and re-derived by hand (in the
comments) where the decay changes them. The count of cases re-expressed, and
of those left out with the reason, is in ``tests/test_optax_parity_alias.py``.
"""

import copy
import dataclasses
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdax
from wdax import masks

# optax's own cases, re-expressed: the full suite runs them, the fast loop not.
pytestmark = pytest.mark.slow

# optax/transforms/_adding_test.py


def test_add_decayed_weights():
  """_adding_test.py::test_add_decayed_weights, with wdax.l2."""
  mask = (True, {'a': True, 'b': False})
  tx = wdax.l2(0.1, mask=mask)
  updates = (jnp.zeros(2), {'a': jnp.zeros(2), 'b': jnp.zeros(2)})
  weights = (jnp.ones(2), {'a': jnp.ones(2), 'b': jnp.ones(2)})
  expected = (0.1 * jnp.ones(2), {'a': 0.1 * jnp.ones(2), 'b': jnp.zeros(2)})
  new_updates, _ = jax.jit(tx.update)(updates, tx.init(weights), weights)
  chex.assert_trees_all_close(new_updates, expected)


def test_add_decayed_weights_none_argument():
  """_adding_test.py::test_none_argument, with wdax.l2."""
  weights = (jnp.ones(2), {'a': jnp.ones(2), 'b': jnp.ones(2)})
  assert wdax.l2(0.1, mask=None).update(None, 0, weights)[0] is None


# optax/transforms/_masking_test.py, with wdax masks given to optax.masked.


def _build_sgd():
  return optax.sgd(1.0)


def _build_stateful_sgd():
  return optax.sgd(1.0, momentum=0.0)


def test_masked_tree_map_params():
  """_masking_test.py::test_tree_map_params (its three subtests)."""
  params = {
      'a': {'b': (jnp.zeros((1, 2)), jnp.zeros((2, 2)))},
      'c': {'d': jnp.zeros((1, 2)), 'e': (jnp.zeros((1, 2)), jnp.zeros((1, 2)))},
  }
  sharding_axes = {'a': {'b': (1, 2)}, 'c': {'d': 1, 'e': (1, 2)}}
  mask = masks.as_mask({'a': {'b': (True, False)}, 'c': {'d': True, 'e': (False, True)}})
  expected = {
      'a': {'b': (jnp.ones((1, 2)), jnp.zeros((2, 2)))},
      'c': {'d': jnp.ones((1, 2)), 'e': (jnp.ones((1, 2)), jnp.ones((1, 2)))},
  }

  def init_fn(params):
    return {'count': 1, 'params': params, 'params_copy': params}

  inner = optax.GradientTransformation(init_fn, lambda u, s, p=None: (u, s))
  masked = optax.masked(inner, mask)

  def increment_dim_1(v):
    return v + 1 if v.shape[0] == 1 else v

  state = inner.init(params)
  result = optax.tree.map_params(inner, increment_dim_1, state)
  chex.assert_trees_all_equal(result, inner.init(expected))
  state = masked.init(params)
  result = optax.tree.map_params(masked, increment_dim_1, state)
  chex.assert_trees_all_equal(result, masked.init(expected))
  new_state = optax.tree.map_params(
      masked,
      lambda p, axis: None if isinstance(p, optax.MaskedNode) else axis,
      state,
      sharding_axes,
      is_leaf=lambda v: isinstance(v, optax.MaskedNode),
      transform_non_params=lambda v: None,
  )
  sharded = {'a': {'b': (1, None)}, 'c': {'d': 1, 'e': (None, 2)}}
  assert new_state.inner_state['count'] is None
  assert new_state.inner_state['params'] == sharded
  assert new_state.inner_state['params_copy'] == sharded


_MASK = {'a': True, 'b': [False, True], 'c': {'d': True, 'e': (False, True)}}
_PARAMS = {'a': 1.0, 'b': [2.0, 3.0], 'c': {'d': 4.0, 'e': (5.0, 6.0)}}


@pytest.mark.parametrize('use_fn', [False, True])
@pytest.mark.parametrize('builder', [_build_sgd, _build_stateful_sgd])
def test_masked(builder, use_fn):
  """_masking_test.py::test_masked, 4 cases."""
  mask = masks.as_mask(lambda _: _MASK) if use_fn else masks.as_mask(_MASK)
  params = jax.tree.map(jnp.asarray, _PARAMS)
  input_updates = jax.tree.map(lambda x: x / 10.0, params)

  def masked_negate(updates):
    return jax.tree.map(lambda u, m: -u if m else u, updates, _MASK)

  init_fn, update_fn = optax.masked(builder(), mask)
  update_fn = jax.jit(update_fn)
  state = jax.jit(init_fn)(params)
  result = optax.tree.map_params(init_fn, lambda v: v, state)
  chex.assert_trees_all_equal_structs(result, state)
  updates, state = update_fn(input_updates, state, params)
  chex.assert_trees_all_close(updates, masked_negate(input_updates))
  updates, _ = update_fn(updates, state)
  chex.assert_trees_all_close(updates, input_updates)


@pytest.mark.parametrize('builder', [_build_sgd, _build_stateful_sgd])
def test_masked_prefix_mask(builder):
  """_masking_test.py::test_prefix_mask, 2 cases."""
  mask = {'a': True, 'b': False, 'c': {'d': False, 'e': True}}
  params = jax.tree.map(
      jnp.asarray, {'a': 1.0, 'b': {'f': 2.0}, 'c': {'d': 3.0, 'e': ([4.0, 5.0], 6.0)}}
  )
  input_updates = jax.tree.map(lambda x: x / 10.0, params)

  def negate_masked(m, u):
    return jax.tree.map(lambda x: -x, u) if m else u

  init_fn, update_fn = optax.masked(builder(), masks.as_mask(mask))
  update_fn = jax.jit(update_fn)
  state = jax.jit(init_fn)(params)
  updates, state = update_fn(input_updates, state, params)
  correct = jax.tree.map(negate_masked, mask, input_updates)
  chex.assert_trees_all_close(updates, correct)
  updates, _ = update_fn(updates, state)
  chex.assert_trees_all_close(updates, jax.tree.map(negate_masked, mask, correct))


@pytest.mark.parametrize('form', ['wdax_l2', 'masked_wdax_l2'])
def test_masked_update_requires_params(form):
  """_masking_test.py::test_update_requires_params: the masked decay is wdax.l2."""
  wd = 0.1
  params = jax.tree.map(jnp.asarray, _PARAMS)
  input_updates = jax.tree.map(lambda x: x / 10.0, params)
  if form == 'wdax_l2':
    init_fn, update_fn = wdax.l2(wd, mask=_MASK)
  else:
    init_fn, update_fn = optax.masked(wdax.l2(wd), masks.as_mask(_MASK))
  update_fn = jax.jit(update_fn)

  def expect(updates, params):
    return jax.tree.map(lambda m, u, p: u + wd * p if m else u, _MASK, updates, params)

  state = jax.jit(init_fn)(params)
  updates, state = update_fn(input_updates, state, params)
  correct = expect(input_updates, params)
  chex.assert_trees_all_close(updates, correct)
  params = optax.apply_updates(params, updates)
  updates, _ = update_fn(correct, state, params)
  chex.assert_trees_all_close(updates, expect(correct, params))


@pytest.mark.parametrize('container', [list, tuple, dict])
def test_masked_empty(container):
  """_masking_test.py::test_empty, 3 cases."""
  init_fn, update_fn = optax.masked(_build_sgd(), masks.as_mask(container()))
  update_fn(container(), init_fn(container()))
  init_fn, update_fn = wdax.decoupled(0.1, mask=container())
  assert update_fn(container(), init_fn(container()), container())[0] == container()


@pytest.mark.parametrize('use_fn', [False, True])
@pytest.mark.parametrize('extra_key_in_mask', [False, True])
def test_masked_tree_mismatch_fails(extra_key_in_mask, use_fn):
  """_masking_test.py::test_tree_mismatch_fails, 4 cases: a ValueError at init."""
  mask = copy.deepcopy(_MASK)
  params = jax.tree.map(jnp.asarray, _PARAMS)
  if extra_key_in_mask:
    mask['c']['extra'] = True
  else:
    params['c']['extra'] = 7
  wdax_mask = masks.as_mask(lambda _: mask) if use_fn else masks.as_mask(mask)
  message = "entry 'c/extra' names no parameter" if extra_key_in_mask else (
      "no entry for parameter path 'c/extra'"
  )
  with pytest.raises(ValueError, match=message):
    optax.masked(_build_sgd(), wdax_mask).init(params)
  with pytest.raises(ValueError, match=message):
    wdax.decoupled(0.1, mask=wdax_mask).init(params)


def test_masked_mask_fn():
  """_masking_test.py::test_mask_fn, the masked add_decayed_weights as wdax.l2."""
  params = {'a': jnp.ones((1, 2)), 'b': (jnp.ones((1,)), jnp.ones((1, 2, 3)))}
  mask_fn = lambda p: jax.tree.map(lambda x: x.ndim > 1, p)  # noqa: E731
  init_fn, update_fn = wdax.l2(0.1, mask=mask_fn)
  update_fn = jax.jit(update_fn)
  state = jax.jit(init_fn)(params)
  grads = jax.tree.map(lambda x: x * 2, params)
  updates, _ = update_fn(grads, state, params)
  np.testing.assert_allclose(updates['a'], grads['a'] + 0.1 * params['a'])
  np.testing.assert_allclose(updates['b'][0], grads['b'][0])
  np.testing.assert_allclose(updates['b'][1], grads['b'][1] + 0.1 * params['b'][1])


@pytest.mark.parametrize('builder', [_build_sgd, _build_stateful_sgd])
def test_masked_nested_mask(builder):
  """_masking_test.py::test_nested_mask, 2 cases: both masks wdax's."""
  params = {
      'linear_1': {'w': jnp.zeros((1, 1)), 'b': jnp.zeros(1)},
      'linear_2': {'w': jnp.zeros((1, 2)), 'b': jnp.zeros(2)},
      'linear_3': {'w': jnp.zeros((2, 3)), 'b': jnp.zeros(3)},
  }
  inner_mask = jax.tree.map(lambda _: True, params)
  inner_mask['linear_2'] = False
  # The outer mask hides the biases: the inner one, a tree over all the
  # params, is then shown only the matrices.
  inner = optax.masked(builder(), masks.as_mask(inner_mask))
  init_fn, update_fn = optax.masked(inner, masks.min_ndim(2))
  input_updates = jax.tree.map(jnp.ones_like, params)
  correct = copy.deepcopy(input_updates)
  correct['linear_1']['w'] *= -1.0
  correct['linear_3']['w'] *= -1.0
  state = jax.jit(init_fn)(params)
  updates, _ = jax.jit(update_fn)(input_updates, state, params)
  chex.assert_trees_all_close(updates, correct)


def test_masked_state_structure():
  """_masking_test.py::test_masked_state_structure."""
  params = {
      'a': [jnp.ones(1), (jnp.ones(2), jnp.ones(3))],
      'b': {'c': jnp.ones(4), 'd': jnp.ones(5)},
  }
  mask = masks.as_mask({'a': [True, (True, False)], 'b': False})
  trace = jax.jit(optax.masked(_build_stateful_sgd(), mask).init)(params)
  expected = {
      'a': [jnp.zeros(1), (jnp.zeros(2), optax.MaskedNode())],
      'b': optax.MaskedNode(),
  }
  chex.assert_trees_all_equal_structs(trace.inner_state[0].trace, expected)


@dataclasses.dataclass
class _MaskCompatibleModule:
  w: jax.Array

  def __call__(self, x):
    return self.w.dot(x)


jax.tree_util.register_pytree_node(
    _MaskCompatibleModule, lambda m: ((m.w,), None), lambda _, c: _MaskCompatibleModule(*c)
)


def test_masked_mask_compatible_callable_pytree():
  """_masking_test.py::test_mask_compatible_callable_pytree (both subtests)."""
  module = _MaskCompatibleModule(jnp.array([1.0, 2.0, 3.0]))
  mask = _MaskCompatibleModule(False)
  assert callable(mask)
  assert masks.as_mask(mask) == masks.as_mask(_MaskCompatibleModule(False))
  assert masks.resolve(mask, module) == [False]
  opt = optax.masked(_build_sgd(), masks.as_mask(mask))
  new_updates, _ = opt.update(module, opt.init(module))
  chex.assert_trees_all_equal(module, new_updates)
  decay = wdax.decoupled(0.5, mask=mask)
  new_updates, _ = decay.update(module, decay.init(module), module)
  chex.assert_trees_all_equal(module, new_updates)


# optax/schedules/_inject_test.py, with wdax's transforms injected.


def test_inject_updates():
  """_inject_test.py::test_updates: a scheduled rate, injected, in wdax.l2."""
  optim = optax.inject_hyperparams(wdax.l2)(
      rate=optax.piecewise_constant_schedule(3.0, {1: 5, 7: 2, 12: 1.5})
  )
  params = [jnp.ones([], jnp.float32)]
  state = jax.jit(optim.init)(params)
  state = optax.tree.map_params(optim, lambda v: v, state)
  update_fn = jax.jit(optim.update)
  # l2 on a zero gradient and a unit weight: the update is the rate itself.
  expected = [3.0] * 2 + [15.0] * 6 + [30.0] * 5 + [45.0] * 3
  grads = [jnp.zeros([], jnp.float32)]
  for i in range(15):
    updates, state = update_fn(grads, state, params=params)
    np.testing.assert_almost_equal(updates[0], expected[i + 1])


def test_inject_hyperparams_state():
  """_inject_test.py::test_hyperparams_state: sgdw's momentum, scheduled."""
  optim = optax.inject_hyperparams(wdax.sgdw)(
      0.1,
      momentum=optax.piecewise_constant_schedule(0.8, {3: 0.5, 9: 1.25}),
      nesterov=True,
  )
  params = [jnp.zeros([2, 3]) for _ in range(3)]
  state = jax.jit(optim.init)(params)
  update_fn = jax.jit(optim.update)
  expected = [0.8] * 4 + [0.4] * 6 + [0.5] * 2
  grads = jax.tree.map(jnp.ones_like, params)
  for i in range(12):
    np.testing.assert_almost_equal(state.hyperparams['momentum'], expected[i])
    _, state = update_fn(grads, state, params)
  np.testing.assert_almost_equal(state.hyperparams['momentum'], expected[-1])


def test_inject_constant_hyperparams():
  """_inject_test.py::test_constant_hyperparams: wdax.adamw with b1 = b2 = 0."""
  optim = optax.inject_hyperparams(wdax.adamw)(1.0, b1=0.0, b2=0.0, weight_decay=0.0)
  params = [jnp.zeros([2, 3]) for _ in range(3)]
  state = jax.jit(optim.init)(params)
  update_fn = jax.jit(optim.update)
  grads = jax.tree.map(jnp.ones_like, params)
  for _ in range(5):
    updates, state = update_fn(grads, state, params)
    for name, value in [('b1', 0.0), ('b2', 0.0), ('eps', 1e-8), ('eps_root', 0.0)]:
      np.testing.assert_almost_equal(state.hyperparams[name], value)
    # Adam with b1 = b2 = 0 steps by g / |g| = 1, scaled by -lr.
    chex.assert_trees_all_close(updates, jax.tree.map(jnp.negative, grads))


def test_inject_overriding_hyperparam():
  """_inject_test.py::test_overriding_hyperparam: the rate of wdax.decoupled."""
  optim = optax.inject_hyperparams(wdax.decoupled)(0.1)
  params = jnp.ones((3, 5, 7))
  state = jax.jit(optim.init)(params)
  update_fn = jax.jit(optim.update)
  grads = jnp.zeros_like(params)
  for i in range(5):
    state.hyperparams['rate'] = i
    updates, state = update_fn(grads, state, params)
    assert np.isclose(jnp.linalg.norm(updates.ravel()), i * jnp.linalg.norm(params))


@pytest.mark.parametrize('static_args', ['mask', ['mask']])
def test_inject_static_args(static_args):
  """_inject_test.py::test_static_args, 2 cases: a wdax mask kept static."""
  optim = optax.inject_hyperparams(wdax.decoupled, static_args=static_args)(
      0.1, mask=masks.min_ndim(2)
  )
  params = [jnp.ones((1, 2)), jnp.ones(2), jnp.ones((1, 1, 1))]
  grads = jax.tree.map(jnp.zeros_like, params)
  state = jax.jit(optim.init)(params)
  updates, state = jax.jit(optim.update)(grads, state, params)
  expected = jax.tree.map(lambda x: -0.1 * x if x.ndim > 1 else 0 * x, params)
  assert set(state.hyperparams) == {'rate'}, state.hyperparams
  chex.assert_trees_all_close(updates, expected)


@pytest.mark.parametrize('static_args', ['b1', ['b1', 'b2']])
def test_inject_numeric_static_args(static_args):
  """_inject_test.py::test_numeric_static_args, 2 cases, on wdax.adamw."""
  optim = optax.inject_hyperparams(wdax.adamw, static_args=static_args)(
      1e-3, b1=0.9, b2=0.95
  )
  params = [jnp.ones((1, 2)), jnp.ones(2), jnp.ones((1, 1, 1))]
  state = jax.jit(optim.init)(params)
  _, state = jax.jit(optim.update)(params, state, params)
  static = {static_args} if isinstance(static_args, str) else set(static_args)
  assert not set(state.hyperparams).intersection(static)


@pytest.mark.parametrize(
    'hyperparam_dtype, param_dtype, grad_dtype',
    [
        (jnp.bfloat16, jnp.float32, jnp.bfloat16),
        (jnp.bfloat16, jnp.float32, jnp.float32),
        (jnp.float32, jnp.bfloat16, jnp.bfloat16),
        (jnp.float32, jnp.float32, jnp.bfloat16),
        (jnp.float32, jnp.bfloat16, jnp.float32),
    ],
)
def test_inject_hyperparam_dtypes(hyperparam_dtype, param_dtype, grad_dtype):
  """_inject_test.py::test_hyperparam_dtypes, 5 cases, on wdax.adamw."""
  optim = optax.inject_hyperparams(wdax.adamw, hyperparam_dtype=hyperparam_dtype)(
      1e-3, b1=0.9, b2=0.95
  )
  params = [
      jnp.ones((1, 2), param_dtype), jnp.ones(2, param_dtype),
      jnp.ones((1, 1, 1), param_dtype),
  ]
  grads = jax.tree.map(lambda x: x.astype(grad_dtype), params)
  state = jax.jit(optim.init)(params)
  for name in ('b1', 'b2', 'weight_decay'):
    assert state.hyperparams[name].dtype == hyperparam_dtype
  _, state = jax.jit(optim.update)(grads, state, params)
  for name in ('b1', 'b2', 'weight_decay'):
    assert state.hyperparams[name].dtype == hyperparam_dtype


@pytest.mark.parametrize('param_dtype', [jnp.bfloat16, jnp.float32])
def test_inject_hyperparam_default_dtype(param_dtype):
  """_inject_test.py::test_hyperparam_default_dtype, 2 cases, on wdax.adamw."""
  params = [jnp.ones((1, 2), param_dtype), jnp.ones(2, param_dtype)]
  for b1, b2, want in [
      (0.9, 0.95, (param_dtype, param_dtype)),
      (jnp.asarray(0.9), jnp.asarray(0.95), (param_dtype, param_dtype)),
      (jnp.array(0.9, jnp.float32), jnp.asarray(0.95, jnp.bfloat16),
       (jnp.float32, jnp.bfloat16)),
  ]:
    optim = optax.inject_hyperparams(wdax.adamw)(1e-3, b1=b1, b2=b2)
    state = jax.jit(optim.init)(params)
    assert (state.hyperparams['b1'].dtype, state.hyperparams['b2'].dtype) == want


@pytest.mark.parametrize('static_args', ['lr_x', ['lr_x']])
def test_inject_static_args_error(static_args):
  """_inject_test.py::test_static_args_error, 2 cases: no such argument."""
  with pytest.raises(ValueError):
    optax.inject_hyperparams(wdax.decoupled, static_args=static_args)


def test_inject_starts_with_step_count_zero():
  """_inject_test.py::test_inject_hyperparams_starts_with_step_count_zero."""
  opt = optax.inject_hyperparams(wdax.decoupled)(lambda count: count)
  params = jnp.ones(3)
  grads = jnp.array([-1.0, 0.0, 1.0])
  updates, _ = jax.jit(opt.update)(grads, opt.init(params), params)
  np.testing.assert_array_equal(updates, grads)  # rate 0 at step 0


class _ExampleState(NamedTuple):
  total: jax.Array


class _ExampleStatefulSchedule(optax.schedules.StatefulSchedule):

  def init(self):
    return _ExampleState(total=jnp.zeros([], jnp.float32))

  def update(self, state, **extra_args):
    return _ExampleState(total=state.total + extra_args['addendum'])

  def __call__(self, state, **extra_args):
    return state.total


def test_inject_stateful_hyperparams():
  """_inject_test.py::StatefulTest::test_inject_stateful_hyperparams, as a rate."""
  params = (jnp.ones(3), jnp.ones(2))
  tx = optax.inject_hyperparams(wdax.decoupled)(rate=_ExampleStatefulSchedule())
  state = jax.jit(tx.init)(params)
  extra = {'addendum': 0.3 * jnp.ones([], jnp.float32)}
  zero = jax.tree.map(jnp.zeros_like, params)
  _, state = jax.jit(tx.update)(zero, state, params=params, **extra)
  updates, state = jax.jit(tx.update)(zero, state, params=params, **extra)
  np.testing.assert_allclose(state.hyperparams['rate'], 0.3, atol=0.0)
  np.testing.assert_allclose(state.hyperparams_states['rate'].total, 0.6, rtol=1e-7)
  # The second update used the rate 0.3 (the total after one addendum).
  np.testing.assert_allclose(updates[0], -0.3 * np.ones(3), rtol=1e-6)
