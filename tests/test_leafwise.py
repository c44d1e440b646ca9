"""Behaviour every wdax transform and optimiser shares (wdax/_leafwise.py).

Errors surface at ``init``; ``None`` updates pass through as in
``optax.add_decayed_weights``; updates that do not agree with the params are
refused at trace time, naming the path.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdax
from wdax import masks


def _params():
  return {
      'Dense_0': {'kernel': jnp.ones((4, 3)), 'bias': jnp.ones(3)},
      'LayerNorm_0': {'scale': jnp.ones(3)},
  }


# Every transform and optimiser that takes a mask and a rate, built with them.
FACTORIES = {
    'l2': lambda rate, mask: wdax.l2(rate, mask=mask),
    'decoupled': lambda rate, mask: wdax.decoupled(rate, lr=0.1, mask=mask),
    'l1': lambda rate, mask: wdax.l1(rate, mask=mask),
    'cautious': lambda rate, mask: wdax.cautious(rate, mask=mask),
    'toward': lambda rate, mask: wdax.toward('init', rate, mask=mask),
    'adamw': lambda rate, mask: wdax.adamw(1e-3, weight_decay=rate, mask=mask),
    'adamw_none': lambda rate, mask: wdax.adamw(
        1e-3, weight_decay=rate, mask=mask, coupling='none'
    ),
    'sgdw': lambda rate, mask: wdax.sgdw(1e-3, weight_decay=rate, mask=mask),
    'adams': lambda rate, mask: wdax.adams(1e-3, weight_decay=rate, mask=mask),
}

# (rate, mask) pairs that do not fit _params(), and what the error says.
BAD = {
    'mask_typo': (0.1, masks.include('kernal'), "pattern 'kernal' matches no parameter"),
    'flax_default_without_kernel': (
        0.1, masks.flax_default(embeddings=True), "no parameter is named 'embedding'"
    ),
    'mask_tree_missing_a_leaf': (
        0.1, {'Dense_0': True}, "no entry for parameter path 'LayerNorm_0/scale'"
    ),
    'mask_tree_extra_entry': (
        0.1,
        {'Dense_0': True, 'LayerNorm_0': False, 'Embed_0': True},
        "entry 'Embed_0' names no parameter",
    ),
    'rates_typo': (
        wdax.rates({'kernal': 0.1}), None, "'kernal' matches no parameter"
    ),
    'rates_shadowed': (
        wdax.rates({'Dense_0': 0.1, 'Dense_0/kernel': 0.2}), None, 'no effect'
    ),
    'rate_tree_missing_a_leaf': (
        {'Dense_0': 0.1}, None, "no entry for parameter path 'LayerNorm_0/scale'"
    ),
}


@pytest.mark.parametrize('bad', sorted(BAD))
@pytest.mark.parametrize('name', sorted(FACTORIES))
def test_what_does_not_fit_the_params_fails_in_init(name, bad):
  rate, mask, message = BAD[bad]
  tx = FACTORIES[name](rate, mask)
  params = _params()
  with pytest.raises(ValueError, match=message) as err:
    tx.init(params)
  if 'typo' in bad:
    assert 'Dense_0/kernel' in str(err.value)  # the available paths are shown
  # The same, abstractly: eval_shape of init checks it too.
  abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
  with pytest.raises(ValueError, match=message):
    jax.eval_shape(tx.init, abstract)


@pytest.mark.parametrize('name', sorted(FACTORIES))
def test_what_fits_inits_and_updates(name):
  tx = FACTORIES[name](wdax.rates({'kernel': 0.1}), masks.exclude('bias'))
  params = _params()
  updates, _ = tx.update(_params(), tx.init(params), params)
  chex.assert_trees_all_equal_shapes_and_dtypes(updates, params)


# None updates, as optax.add_decayed_weights passes them.

DECAYS = ['l2', 'decoupled', 'l1', 'cautious', 'toward']


@pytest.mark.parametrize('name', DECAYS)
def test_a_none_update_passes_through(name):
  tx = FACTORIES[name](0.1, None)
  params = _params()
  state = tx.init(params)
  updates, new_state = tx.update(None, state, params)
  assert updates is None
  chex.assert_trees_all_equal_structs(new_state, state)


@pytest.mark.parametrize('name', DECAYS)
def test_none_leaves_pass_through_and_the_rest_decays(name):
  tx = FACTORIES[name](0.5, None)
  params = _params()
  partial = {
      'Dense_0': {'kernel': jnp.zeros((4, 3)), 'bias': None},
      'LayerNorm_0': {'scale': None},
  }
  whole = {
      'Dense_0': {'kernel': jnp.zeros((4, 3)), 'bias': jnp.zeros(3)},
      'LayerNorm_0': {'scale': jnp.zeros(3)},
  }
  state = tx.init(params)
  moved = jax.tree.map(lambda x: x + 1, params)  # toward: away from the reference
  got, _ = jax.jit(tx.update)(partial, state, moved)
  want, _ = tx.update(whole, state, moved)
  assert got['Dense_0']['bias'] is None and got['LayerNorm_0']['scale'] is None
  np.testing.assert_array_equal(got['Dense_0']['kernel'], want['Dense_0']['kernel'])
  assert not np.array_equal(want['Dense_0']['kernel'], np.zeros((4, 3)))


def test_the_optax_none_argument_case():
  # optax's test_none_argument for add_decayed_weights, with a state of 0.
  weights = (jnp.ones(2), {'a': jnp.ones(2), 'b': jnp.ones(2)})
  assert wdax.l2(0.1).update(None, 0, weights)[0] is None


# Updates that do not agree with the params.


@pytest.mark.parametrize('name', DECAYS)
def test_a_shape_mismatch_names_the_path(name):
  tx = FACTORIES[name](0.1, None)
  params = _params()
  bad = _params()
  bad['LayerNorm_0']['scale'] = jnp.ones(4)
  with pytest.raises(ValueError, match=r"updates and params disagree.*'LayerNorm_0/scale'.*\(4,\) != \(3,\)"):
    jax.jit(tx.update)(bad, tx.init(params), params)


@pytest.mark.parametrize('name', DECAYS)
def test_an_integer_update_of_a_float_parameter_names_the_path(name):
  tx = FACTORIES[name](0.1, None)
  params = _params()
  bad = _params()
  bad['Dense_0']['bias'] = jnp.ones(3, jnp.int32)
  with pytest.raises(ValueError, match=r"'Dense_0/bias': the update is int32 where the parameter is float32"):
    tx.update(bad, tx.init(params), params)


@pytest.mark.parametrize('name', DECAYS)
def test_a_structure_mismatch_names_the_first_differing_path(name):
  tx = FACTORIES[name](0.1, None)
  params = _params()
  bad = {'Dense_0': _params()['Dense_0'], 'LayerNorm_1': {'scale': jnp.ones(3)}}
  with pytest.raises(
      ValueError,
      match=r"updates path 'LayerNorm_1/scale' where params have 'LayerNorm_0/scale'",
  ):
    tx.update(bad, tx.init(params), params)


def test_wider_updates_are_accepted_and_keep_their_dtype():
  # optax.adam(mu_dtype=float32) gives bfloat16 params float32 updates.
  params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), _params())
  tx = optax.chain(optax.adam(1e-2, mu_dtype=jnp.float32), wdax.decoupled(0.1, lr=1e-2))
  updates, _ = tx.update(_params(), tx.init(params), params)
  assert all(u.dtype == jnp.float32 for u in jax.tree.leaves(updates))


def test_the_checks_add_nothing_to_the_compiled_update():
  # They run in Python while tracing: the traced program is the same with
  # chex's assertions turned off.
  tx = wdax.decoupled(0.1, lr=0.1, mask=masks.exclude('bias'))
  params = _params()
  with_checks = str(jax.make_jaxpr(tx.update)(_params(), optax.EmptyState(), params))
  chex.disable_asserts()
  try:
    without = str(jax.make_jaxpr(tx.update)(_params(), optax.EmptyState(), params))
    bad = _params()
    bad['Dense_0']['bias'] = jnp.ones(3, jnp.int32)
    tx.update(bad, optax.EmptyState(), params)  # not checked now
  finally:
    chex.enable_asserts()
  assert with_checks == without
