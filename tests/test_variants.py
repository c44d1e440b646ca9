"""Tests for wdax.l1 and wdax.cautious, and the properties they share with wdax.toward."""


import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from support.decay_trees import params as _params
from support.decay_trees import updates as _updates

import wdax
from wdax import masks


def _mask_forms():
  """The same selection (Dense_0/kernel) in every form a mask may take."""
  return {
      'include': masks.include('Dense_0/kernel'),
      'tree': {
          'Dense_0': {'kernel': True, 'bias': False},
          'LayerNorm_0': {'scale': False},
          'step': False,
      },
      'prefix': {
          'Dense_0': {'kernel': True, 'bias': False},
          'LayerNorm_0': False,
          'step': False,
      },
      'callable': lambda p: jax.tree.map(lambda x: x.ndim == 2, p),
  }


# Reference implementations of each rule, in float64 numpy, per leaf.


def _ref_l1(u, p, c):
  z = p + u
  return np.sign(z) * np.maximum(np.abs(z) - c, 0) - p


def _ref_cautious(u, p, c):
  away = np.sign(u) * np.sign(p) > 0
  return np.where(away, u, u - c * p)


def _ref_toward(ref):
  return lambda u, p, c: u - c * (p - ref)


def _f64(x):
  return np.asarray(x, np.float64)


# XLA flushes subnormal floats to zero on CPU, so a subnormal step counts as
# no step at all: the laws are stated for normal floats and zeros.
_normal = st.floats(-4, 4, width=32, allow_subnormal=False)


# l1: proximal step.


def test_l1_hand_built(strict_dtypes):
  params = {'w': jnp.array([2.0, 0.25, -1.0, 0.5, -0.3, 0.0])}
  u = {'w': jnp.array([0.0, 0.0, 0.0, -0.7, 0.1, 0.75])}
  tx = wdax.l1(0.5)
  updates, state = tx.update(u, tx.init(params), params)
  assert state == optax.EmptyState()
  new = optax.apply_updates(params, updates)['w']
  # z = [2, .25, -1, -.2, -.2, .75]; soft-threshold at 0.5.
  np.testing.assert_allclose(new, [1.5, 0.0, -0.5, 0.0, 0.0, 0.25], rtol=1e-6)
  for i in (1, 3, 4):
    assert new[i] == 0.0 and not np.signbit(new[i]), (i, new[i])


@pytest.mark.parametrize('lr', [None, 0.5])
def test_l1_threshold_uses_lr(lr, strict_dtypes):
  params = {'w': jnp.array([1.0, -1.0, 0.05])}
  u = {'w': jnp.array([0.0, 0.0, 0.0])}
  tx = wdax.l1(0.2, lr=lr)
  updates, _ = tx.update(u, tx.init(params), params)
  c = 0.2 * (lr or 1.0)
  np.testing.assert_allclose(updates['w'], [-c, c, -0.05], rtol=1e-6)


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_l1_exact_zeros(dtype, strict_dtypes):
  k1, k2 = jax.random.split(jax.random.key(1))
  params = {'w': jax.random.normal(k1, (4096,), dtype)}
  u = {'w': (0.1 * jax.random.normal(k2, (4096,))).astype(dtype)}
  c = 0.4
  tx = wdax.l1(c)
  updates, _ = tx.update(u, tx.init(params), params)
  assert updates['w'].dtype == dtype
  new = optax.apply_updates(params, updates)['w']
  assert new.dtype == dtype
  # The proposed point as optax.apply_updates forms it, in the param dtype.
  z = _f64((params['w'] + u['w']).astype(dtype))
  zeroed = np.abs(z) <= _f64(jnp.asarray(c, dtype))
  assert 0.2 < zeroed.mean() < 0.5  # both branches well exercised
  got = _f64(new)
  np.testing.assert_array_equal(got[zeroed], 0.0)
  assert not np.any(np.signbit(got[zeroed]))
  assert np.all(got[~zeroed] != 0)
  tol = 1e-6 if dtype == jnp.float32 else 2e-2
  want = np.sign(z) * np.maximum(np.abs(z) - c, 0)
  np.testing.assert_allclose(got, want, rtol=tol, atol=tol)


def test_l1_update_dtype_is_the_wider_one():
  # bf16 updates on float32 params: the update comes back float32, since -p
  # in bf16 would not cancel a float32 p exactly.
  params = {'w': jnp.array([0.1234567, 3.0], jnp.float32)}
  u = {'w': jnp.array([0.0, 0.0], jnp.bfloat16)}
  tx = wdax.l1(0.5)
  updates, _ = tx.update(u, tx.init(params), params)
  assert updates['w'].dtype == jnp.float32
  new = optax.apply_updates(params, updates)['w']
  assert new[0] == 0.0
  np.testing.assert_allclose(new[1], 2.5)


def test_l1_keeps_nan():
  params = {'w': jnp.array([1.0, 0.1])}
  u = {'w': jnp.array([jnp.nan, 0.0])}
  updates, _ = wdax.l1(0.5).update(u, optax.EmptyState(), params)
  assert np.isnan(updates['w'][0])
  assert updates['w'][1] == -0.1


@settings(deadline=None, max_examples=30)
@given(
    p=st.lists(_normal, min_size=4, max_size=4),
    u=st.lists(_normal, min_size=4, max_size=4),
    scheduled=st.booleans(),
)
def test_l1_rate_zero_is_identity(p, u, scheduled):
  params = {'w': jnp.array(p, jnp.float32)}
  updates = {'w': jnp.array(u, jnp.float32)}
  rate = (lambda t: jnp.zeros([], jnp.float32)) if scheduled else 0.0
  tx = wdax.l1(rate)
  got, _ = tx.update(updates, tx.init(params), params)
  np.testing.assert_array_equal(got['w'], updates['w'])


@settings(deadline=None, max_examples=30)
@given(
    p=st.lists(_normal, min_size=4, max_size=4),
    u=st.lists(_normal, min_size=4, max_size=4),
    c=st.floats(0, 3),
    dtype=st.sampled_from([jnp.float32, jnp.bfloat16]),
)
def test_l1_law_exact_zeros(p, u, c, dtype):
  params = {'w': jnp.array(p, dtype)}
  updates = {'w': jnp.array(u, dtype)}
  got, _ = wdax.l1(c).update(updates, optax.EmptyState(), params)
  new = _f64(optax.apply_updates(params, got)['w'])
  z = _f64((params['w'] + updates['w']).astype(dtype))
  zeroed = np.abs(z) <= _f64(jnp.asarray(c, dtype))
  np.testing.assert_array_equal(new[zeroed], 0.0)
  # Elsewhere the weight keeps z's sign and is shrunk toward zero.
  assert np.all(np.sign(new[~zeroed]) * np.sign(z[~zeroed]) >= 0)
  assert np.all(np.abs(new[~zeroed]) <= np.abs(z[~zeroed]))


# cautious: sign-gated decoupled decay.


def test_cautious_hand_built(strict_dtypes):
  params = {'w': jnp.array([1.0, 1.0, -1.0, -1.0, 0.0, 2.0])}
  u = {'w': jnp.array([-0.1, 0.1, 0.1, -0.1, 0.3, 0.0])}
  tx = wdax.cautious(0.5)
  updates, _ = tx.update(u, tx.init(params), params)
  # Decayed where u * theta <= 0: entries 0 and 2 (toward zero), 4 (theta = 0)
  # and 5 (u = 0); entries 1 and 3 move away from zero and are left alone.
  np.testing.assert_allclose(
      updates['w'], [-0.6, 0.1, 0.6, -0.1, 0.3, -1.0], rtol=1e-6
  )


def test_cautious_rule_flips_between_steps(strict_dtypes):
  # SGD with lr 0.1 and cautious decay 0.5 (c = 0.05 per step, lr-coupled).
  tx = optax.chain(optax.sgd(0.1), wdax.cautious(0.5, lr=0.1))
  params = {'w': jnp.array([1.0, -1.0])}
  state = tx.init(params)
  expected = np.array([1.0, -1.0])
  # Step 0: gradient -1 on both, so the step is +0.1. Entry 0 (positive)
  # moves away from zero: no decay. Entry 1 (negative) moves toward zero:
  # decayed. Step 1: gradient +1, the step is -0.1, and the roles swap.
  # Step 2: gradient -20, the step is +2, which carries entry 1 across zero;
  # it was negative, so it is decayed. Step 3: gradient -1 again; entry 1 is
  # now positive and pushed up, so the rule that decayed it now spares it.
  for g in (-1.0, 1.0, -20.0, -1.0):
    step = np.full(2, -0.1 * g)
    away = np.sign(step) * np.sign(expected) > 0
    expected = expected + np.where(away, step, step - 0.05 * expected)
    updates, state = tx.update({'w': jnp.full(2, g)}, state, params)
    params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params['w'], expected, rtol=1e-6)
  # By hand: [1.1, -0.85], [0.945, -0.95], [2.945, -0.95 + 2 + 0.0475],
  # [3.045, 1.0975 + 0.1].
  np.testing.assert_allclose(params['w'], [3.045, 1.1975], rtol=1e-6)


def test_cautious_sign_test_survives_underflow(strict_dtypes):
  # u * theta underflows to 0 in float32, which a product test would read as
  # "u * theta <= 0" and decay; the signs say the step moves away from zero.
  params = {'w': jnp.array([1e-30, -1e-30], jnp.float32)}
  u = {'w': jnp.array([1e-30, -1e-30], jnp.float32)}
  assert float(params['w'][0] * u['w'][0]) == 0.0
  updates, _ = wdax.cautious(0.5).update(u, optax.EmptyState(), params)
  np.testing.assert_array_equal(updates['w'], u['w'])


def test_cautious_equals_decoupled_when_every_step_heads_to_zero(strict_dtypes):
  params = _params()
  u = jax.tree.map(
      lambda p: -0.1 * p if p.dtype != jnp.int32 else jnp.zeros_like(p), params
  )
  a, _ = wdax.cautious(0.3, lr=0.1).update(u, optax.EmptyState(), params)
  b, _ = wdax.decoupled(0.3, lr=0.1).update(u, optax.EmptyState(), params)
  chex.assert_trees_all_equal(a, b)


@settings(deadline=None, max_examples=40)
@given(
    p=st.lists(_normal, min_size=5, max_size=5),
    u=st.lists(_normal, min_size=5, max_size=5),
    c=st.floats(0, 2),
)
def test_cautious_law_never_decays_a_step_away_from_zero(p, u, c):
  params = {'w': jnp.array(p, jnp.float32)}
  updates = {'w': jnp.array(u, jnp.float32)}
  got, _ = wdax.cautious(c).update(updates, optax.EmptyState(), params)
  pw, uw, gw = _f64(params['w']), _f64(updates['w']), _f64(got['w'])
  away = ((uw > 0) & (pw > 0)) | ((uw < 0) & (pw < 0))
  np.testing.assert_array_equal(gw[away], uw[away])
  np.testing.assert_allclose(
      gw[~away], (uw - c * pw)[~away], rtol=1e-6, atol=1e-6
  )


# Shared properties of the three.

_RULES = {
    'l1': (wdax.l1, _ref_l1),
    'cautious': (wdax.cautious, _ref_cautious),
}


def _make(name, rate, **kw):
  if name == 'toward':
    return wdax.toward(kw.pop('reference'), rate, **kw)
  return _RULES[name][0](rate, **kw)


def _reference_for(name, params):
  return jax.tree.map(
      lambda p: (0.5 * p).astype(p.dtype) if p.dtype != jnp.int32 else p, params
  )


@pytest.mark.parametrize('name', ['l1', 'cautious', 'toward'])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize('mask_name', list(_mask_forms()))
def test_rule_dtype_and_mask(name, dtype, mask_name, strict_dtypes):
  params = _params(dtype)
  u = _updates(params)
  mask = _mask_forms()[mask_name]
  kw = {'lr': 0.5, 'mask': mask}
  ref_tree = _reference_for(name, params)
  if name == 'toward':
    kw['reference'] = ref_tree
  tx = _make(name, 0.4, **kw)
  got, _ = tx.update(u, tx.init(params), params)
  chex.assert_trees_all_equal_dtypes(got, u)
  # Only Dense_0/kernel changes, and it follows the rule.
  for path in [('Dense_0', 'bias'), ('LayerNorm_0', 'scale')]:
    np.testing.assert_array_equal(got[path[0]][path[1]], u[path[0]][path[1]])
  np.testing.assert_array_equal(got['step'], u['step'])
  ref_rule = (
      _ref_toward(_f64(ref_tree['Dense_0']['kernel']))
      if name == 'toward'
      else _RULES[name][1]
  )
  p, uk = _f64(params['Dense_0']['kernel']), _f64(u['Dense_0']['kernel'])
  want = ref_rule(uk, p, 0.2)
  tol = 1e-6 if dtype == jnp.float32 else 3e-2
  np.testing.assert_allclose(_f64(got['Dense_0']['kernel']), want, rtol=tol, atol=tol)
  assert not np.allclose(want, uk)  # the rule did something


class RuleSchedules(chex.TestCase):
  """Scheduled rates, with jit (traced once) and without, step by step."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters('l1', 'cautious', 'toward')
  def test_schedule_step_by_step(self, name):
    chex.clear_trace_counter()
    params = _params()
    moved = jax.tree.map(lambda p: p if p.dtype == jnp.int32 else 1.5 * p, params)
    rate = optax.linear_schedule(0.4, 0.0, 4)
    kw = {'lr': optax.constant_schedule(0.5)}
    if name == 'toward':
      kw['reference'] = 'init'
    tx = _make(name, rate, **kw)
    state = tx.init(params)
    ref_rule = {
        'l1': _ref_l1,
        'cautious': _ref_cautious,
        'toward': _ref_toward(_f64(params['Dense_0']['kernel'])),
    }[name]

    @self.variant
    @chex.assert_max_traces(n=1)
    def update(u, state, params):
      return tx.update(u, state, params)

    with jax.numpy_dtype_promotion('strict'):
      for t in range(4):
        u = _updates(moved, t)
        got, state = update(u, state, moved)
        assert int(state.count) == t + 1
        c = 0.5 * 0.4 * (1 - t / 4)  # lr_t * rate_t, read at step t
        p = _f64(moved['Dense_0']['kernel'])
        want = ref_rule(_f64(u['Dense_0']['kernel']), p, c)
        np.testing.assert_allclose(got['Dense_0']['kernel'], want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ['l1', 'cautious'])
def test_rule_inject_hyperparams_and_vmap(name):
  params = {'w': jnp.array([1.0, -0.5, 0.2, -0.1])}
  u = {'w': jnp.array([0.1, 0.3, -0.3, 0.05])}
  factory = _RULES[name][0]
  plain, _ = factory(0.25).update(u, optax.EmptyState(), params)
  injected = optax.inject_hyperparams(factory)(rate=0.25)
  got, _ = injected.update(u, injected.init(params), params)
  np.testing.assert_allclose(got['w'], plain['w'], rtol=1e-6)
  rates = jnp.array([0.0, 0.1, 0.25, 0.5])
  batched = jax.vmap(
      lambda r: factory(r).update(u, optax.EmptyState(), params)[0]['w']
  )(rates)
  for r, row in zip([0.0, 0.1, 0.25, 0.5], batched):
    want = factory(r).update(u, optax.EmptyState(), params)[0]['w']
    np.testing.assert_allclose(row, want, rtol=1e-6)


@pytest.mark.parametrize('name', ['l1', 'cautious'])
def test_rule_errors(name, strict_dtypes):
  factory = _RULES[name][0]
  with pytest.raises(ValueError, match='non-negative'):
    factory(-0.1)
  with pytest.raises(ValueError, match='finite'):
    factory(float('nan'))
  with pytest.raises(ValueError, match='lr'):
    factory(0.1, lr=-1.0)
  with pytest.raises(ValueError, match='needs params'):
    factory(0.1).update({'w': jnp.ones(1)}, optax.EmptyState())
  with pytest.raises(ValueError, match='matches no parameter'):
    factory(0.1, mask=masks.include('nothing')).init({'w': jnp.ones(1)})
