"""wdax.stochastic_rounding: where the updates land, and how it composes.

The reference for "the two neighbours" of a float32 value is the sorted table
of every finite value of the dtype (ml_dtypes via NumPy), searched, not the
bit arithmetic the transform uses.
"""

import json
import os
import pathlib
import subprocess
import sys
import warnings

import chex
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

import wdax

DTYPES = (jnp.bfloat16, jnp.float16)


def _table(dtype):
  """Every finite value of a 16-bit dtype, ascending, as float64."""
  values = np.arange(2**16, dtype=np.uint16).view(np.dtype(dtype))
  with np.errstate(invalid='ignore'):
    values = values.astype(np.float64)
  return np.unique(values[np.isfinite(values)])


def _neighbours(v, dtype):
  """The largest value <= v and the smallest >= v, from the table."""
  table = _table(dtype)
  v = np.asarray(v, np.float64)
  hi = table[np.searchsorted(table, v, side='left')]
  lo = table[np.searchsorted(table, v, side='right') - 1]
  return lo, hi


def _step(tx, params, updates, state):
  new_updates, state = tx.update(updates, state, params)
  return optax.apply_updates(params, new_updates), new_updates, state


def _f64(x):
  return np.asarray(x, np.float64)


def _quiet(fn, *args):
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', wdax.LostDecayWarning)
    return fn(*args)


def _pure_decay(rounding):
  params = {'w': jnp.full((4096,), 0.5, jnp.bfloat16)}
  parts = [wdax.adamw(1e-4, weight_decay=0.1)]
  if rounding:
    parts.append(wdax.stochastic_rounding(seed=3))
  tx = optax.chain(*parts)
  zero = jax.tree.map(jnp.zeros_like, params)
  state = _quiet(tx.init, params)

  def body(carry, _):
    p, s = carry
    u, s = tx.update(zero, s, p)
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.lax.scan(body, (params, state), None, length=2000)
  return params['w']


def test_pure_decay_in_bfloat16_follows_the_closed_form_only_with_rounding():
  # c = lr * weight_decay = 1e-5 per step; 0.5 (1 - c)**2000 = 0.49005.
  want = 0.5 * (1 - 1e-5) ** 2000
  rounded = _pure_decay(rounding=True)
  assert rounded.dtype == jnp.bfloat16
  np.testing.assert_allclose(_f64(rounded).mean(), want, rtol=3e-3)
  plain = _pure_decay(rounding=False)
  np.testing.assert_array_equal(_f64(plain), 0.5)


@pytest.mark.parametrize('dtype', DTYPES)
def test_rounding_is_unbiased_and_lands_on_the_two_neighbours(dtype):
  # 24 (weight, step) pairs across signs, binades and step sizes, each
  # repeated 4000 times: the share rounded up is the distance to the lower
  # neighbour over the spacing, within 5 standard errors.
  rng = np.random.default_rng(0)
  theta = rng.choice([-1, 1], 24) * 2.0 ** rng.uniform(-6, 6, 24)
  step = theta * rng.uniform(-0.4, 0.4, 24) * 10.0 ** rng.integers(-4, 0, 24)
  theta = np.asarray(theta, np.dtype(dtype))
  step = np.asarray(step, np.dtype(dtype))
  v = _f64(theta) + _f64(step)
  lo, hi = _neighbours(v, dtype)
  n = 4000
  params = jnp.asarray(np.repeat(theta, n).reshape(24, n))
  updates = jnp.asarray(np.repeat(step, n).reshape(24, n))
  tx = wdax.stochastic_rounding(seed=1)
  new, u, _ = _step(tx, params, updates, tx.init(params))
  assert new.dtype == dtype and u.dtype == dtype
  new = _f64(new)
  assert ((new == lo[:, None]) | (new == hi[:, None])).all()
  # Landing is exact: apply_updates adds without rounding.
  np.testing.assert_array_equal(_f64(params) + _f64(u), new)
  p_up = np.where(hi > lo, (v - lo) / np.where(hi > lo, hi - lo, 1), 0)
  share = (new == hi[:, None]).mean(axis=1)
  se = np.sqrt(p_up * (1 - p_up) / n) + 1e-12
  assert (np.abs(share - p_up) <= 5 * se).all(), (share, p_up)
  np.testing.assert_allclose(new.mean(axis=1), v, rtol=0, atol=float(
      (5 * se * (hi - lo)).max()))


@pytest.mark.parametrize('dtype', DTYPES)
def test_every_weight_lands_exactly_for_steps_under_half_of_it(dtype):
  # Every finite normal value of the dtype (well inside its range), with
  # steps of relative size +-0.49, +-1e-2 and +-1e-4 of the weight: the new
  # weight is a neighbour of theta + u, and theta + u' is it exactly. Across
  # powers of two too: 1 - 0.49 crosses one, 1 + 0.49 another. XLA on CPU
  # flushes float32 subnormals, so no step is one.
  table = _table(dtype)
  low = max(4 * float(jnp.finfo(dtype).tiny), 2.0**-100)
  theta = table[(np.abs(table) >= low) & (np.abs(table) <= 2.0**10)]
  rel = np.array([0.49, -0.49, 1e-2, -1e-2, 1e-4, -1e-4])
  params = jnp.asarray(np.repeat(theta, rel.size).astype(np.dtype(dtype)))
  updates = jnp.asarray((np.repeat(theta, rel.size) * np.tile(rel, theta.size))
                        .astype(np.dtype(dtype)))
  tx = wdax.stochastic_rounding(seed=2)
  new, u, _ = _step(tx, params, updates, tx.init(params))
  lo, hi = _neighbours(_f64(params) + _f64(updates), dtype)
  new = _f64(new)
  assert ((new == lo) | (new == hi)).all()
  np.testing.assert_array_equal(_f64(params) + _f64(u), new)


def test_zero_and_steps_to_zero_land_exactly():
  params = jnp.array([0.0, 0.0, 0.75, -3.0], jnp.bfloat16)
  updates = jnp.array([2.0**-20, -0.3, -0.75, 3.0], jnp.bfloat16)
  tx = wdax.stochastic_rounding()
  new, _, _ = _step(tx, params, updates, tx.init(params))
  lo, hi = _neighbours(_f64(params) + _f64(updates), jnp.bfloat16)
  assert ((_f64(new) == lo) | (_f64(new) == hi)).all()
  np.testing.assert_array_equal(_f64(new)[2:], 0.0)


def test_float32_and_integer_leaves_and_none_updates_pass_bit_for_bit():
  params = {'f': jnp.array([1.0, 2.0]), 'd': jnp.arange(3),
            'b': jnp.ones(2, jnp.bfloat16)}
  updates = {'f': jnp.array([1e-9, -3e-9]), 'd': jnp.arange(3) * 7, 'b': None}
  tx = wdax.stochastic_rounding()
  got, _ = tx.update(updates, tx.init(params), params)
  chex.assert_trees_all_equal(got, updates, strict=True)


def test_the_key_advances_every_step():
  params = jnp.full((512,), 1.0, jnp.bfloat16)
  updates = jnp.full((512,), 2.0**-9, jnp.bfloat16)  # half a spacing
  tx = wdax.stochastic_rounding(seed=0)
  state = tx.init(params)
  keys, ups = [np.asarray(state.key)], []
  for _ in range(3):
    u, state = tx.update(updates, state, params)
    keys.append(np.asarray(state.key))
    ups.append(np.asarray(u, np.float32))
  assert state.key.dtype == jnp.uint32
  assert len({k.tobytes() for k in keys}) == 4
  assert len({u.tobytes() for u in ups}) == 3
  np.testing.assert_array_equal(
      keys[1], jax.random.key_data(jax.random.split(jax.random.key(0))[1]))
  np.testing.assert_array_equal(keys[0], jax.random.key_data(jax.random.key(0)))


def test_decisions_are_uncorrelated_across_elements_and_steps():
  # Half a spacing: each element rounds up with probability 1/2. Neighbouring
  # elements, elements a row apart, and one step against the next agree as
  # often as independent coins, within 5 standard errors.
  params = jnp.full((256, 512), 1.0, jnp.bfloat16)
  updates = jnp.full((256, 512), 2.0**-8, jnp.bfloat16)
  tx = wdax.stochastic_rounding(seed=4)
  state = tx.init(params)
  ups = []
  for _ in range(2):
    u, state = tx.update(updates, state, params)
    ups.append(np.asarray(u, np.float32) > 0)
  a, b = ups
  n = a.size
  for x, y in ((a[:, 1:], a[:, :-1]), (a[1:], a[:-1]), (a, b)):
    assert abs(np.mean(x == y) - 0.5) < 5 * 0.5 / np.sqrt(x.size)
  assert abs(a.mean() - 0.5) < 5 * 0.5 / np.sqrt(n)


def test_vmap_over_seeds_equals_a_loop():
  params = jnp.full((64,), 1.0, jnp.bfloat16)
  updates = jnp.full((64,), 2.0**-9, jnp.bfloat16)

  def run(seed):
    tx = wdax.stochastic_rounding(seed=seed)
    state = tx.init(params)
    p = params
    for _ in range(3):
      u, state = tx.update(updates, state, p)
      p = optax.apply_updates(p, u)
    return p

  seeds = jnp.arange(4)
  batched = jax.vmap(run)(seeds)
  looped = jnp.stack([run(int(s)) for s in seeds])
  chex.assert_trees_all_equal(batched, looped)
  assert len({np.asarray(b, np.float32).tobytes() for b in batched}) == 4


def test_a_jitted_step_compiles_once():
  tx = optax.chain(optax.sgd(0.1), wdax.stochastic_rounding())
  params = {'w': jnp.ones((8,), jnp.bfloat16), 'f': jnp.ones(3)}

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, grads):
    u, state = tx.update(grads, state, params)
    return optax.apply_updates(params, u), state

  state = tx.init(params)
  grads = jax.tree.map(lambda p: jnp.full_like(p, 1e-3), params)
  eager = params
  eager_state = state
  for _ in range(3):
    params, state = step(params, state, grads)
    u, eager_state = tx.update(grads, eager_state, eager)
    eager = optax.apply_updates(eager, u)
  chex.assert_trees_all_equal(params, eager)
  assert params['w'].dtype == jnp.bfloat16


def test_state_shapes_come_from_eval_shape():
  tx = wdax.stochastic_rounding(seed=5)
  params = {'w': jax.ShapeDtypeStruct((3,), jnp.bfloat16)}
  shapes = jax.eval_shape(tx.init, params)
  assert shapes.key.shape == (2,) and shapes.key.dtype == jnp.uint32


def test_inside_multisteps_the_key_advances_only_when_a_step_is_emitted():
  params = jnp.full((256,), 1.0, jnp.bfloat16)
  grads = jnp.full((256,), -2.0**-9, jnp.bfloat16)
  tx = optax.MultiSteps(
      optax.chain(optax.sgd(1.0), wdax.stochastic_rounding()), every_k_schedule=2
  )
  state = tx.init(params)
  key0 = np.asarray(state.inner_opt_state[1].key)
  p, u, state = _step(tx, params, grads, state)
  np.testing.assert_array_equal(_f64(u), 0.0)
  np.testing.assert_array_equal(np.asarray(state.inner_opt_state[1].key), key0)
  p, u, state = _step(tx, p, grads, state)
  assert not np.array_equal(np.asarray(state.inner_opt_state[1].key), key0)
  assert set(_f64(p).tolist()) == {1.0, 1.0078125}


def test_apply_if_finite_skips_a_nan_step_and_keeps_the_key():
  params = jnp.full((256,), 1.0, jnp.bfloat16)
  tx = optax.apply_if_finite(
      optax.chain(optax.sgd(1.0), wdax.stochastic_rounding()), 3
  )
  state = tx.init(params)
  bad = jnp.full((256,), jnp.nan, jnp.bfloat16)
  p, u, new_state = _step(tx, params, bad, state)
  chex.assert_trees_all_equal(p, params)
  chex.assert_trees_all_equal(new_state.inner_state, state.inner_state)
  good = jnp.full((256,), -2.0**-9, jnp.bfloat16)
  p, _, _ = _step(tx, params, good, new_state)
  assert set(_f64(p).tolist()) == {1.0, 1.0078125}


def test_bad_seed_and_other_narrow_dtypes_are_refused():
  with pytest.raises(ValueError, match='seed must be an int'):
    wdax.stochastic_rounding(seed=0.5)
  with pytest.raises(ValueError, match='seed must be an int'):
    wdax.stochastic_rounding(seed=True)
  tx = wdax.stochastic_rounding()
  with pytest.raises(ValueError, match=r"'a/w' is float8_e4m3fn"):
    tx.init({'a': {'w': jnp.ones(2, ml_dtypes.float8_e4m3fn)}})
  with pytest.raises(ValueError, match='update needs params'):
    tx.update(jnp.ones(2, jnp.bfloat16), tx.init(jnp.ones(2, jnp.bfloat16)))


def _regression(dtype, rounding, steps=1500):
  """Weight norm after fitting y = X w* with adamw in ``dtype`` throughout."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(256, 32)), dtype)
  w_star = rng.normal(size=(32,))
  y = jnp.asarray(np.asarray(x, np.float64) @ w_star, dtype)
  params = {'w': jnp.asarray(rng.normal(size=(32,)), dtype)}
  parts = [wdax.adamw(1e-3, weight_decay=1.0)]  # c = 1e-3: lost in bfloat16
  if rounding:
    parts.append(wdax.stochastic_rounding(seed=0))
  tx = optax.chain(*parts)

  def loss(p):
    return jnp.mean((x @ p['w'] - y).astype(jnp.float32) ** 2)

  def body(carry, _):
    p, s = carry
    u, s = tx.update(jax.grad(loss)(p), s, p)
    return (optax.apply_updates(p, u), s), None

  (params, _), _ = jax.lax.scan(
      body, (params, _quiet(tx.init, params)), None, length=steps
  )
  return float(jnp.linalg.norm(params['w'].astype(jnp.float32)))


def test_pure_bfloat16_regression_keeps_the_float32_norm_with_rounding():
  reference = _regression(jnp.float32, rounding=False)
  plain = _regression(jnp.bfloat16, rounding=False)
  rounded = _regression(jnp.bfloat16, rounding=True)
  assert abs(rounded - reference) < abs(plain - reference), (
      reference, plain, rounded)


_SHARDED = r'''
import json, jax, jax.numpy as jnp, numpy as np, optax, wdax
from jax.sharding import NamedSharding, PartitionSpec as P
assert jax.device_count() == 8 and jax.config.jax_threefry_partitionable
mesh = jax.make_mesh((8,), ('x',))
params = jnp.full((8, 512), 1.0, jnp.bfloat16)
updates = jnp.full((8, 512), 2.0**-9, jnp.bfloat16)
tx = wdax.stochastic_rounding(seed=0)
state = tx.init(params)
sharding = NamedSharding(mesh, P('x'))
step = jax.jit(tx.update)
whole, _ = step(updates, state, params)
shards, _ = step(jax.device_put(updates, sharding), state,
                 jax.device_put(params, sharding))
rows = np.asarray(shards, np.float32)
print(json.dumps({
    'same': bool(np.array_equal(np.asarray(whole, np.float32), rows)),
    'spread': len(shards.sharding.device_set),
    'distinct_rows': len({r.tobytes() for r in rows}),
}))
'''


@pytest.mark.slow  # an 8-device subprocess
def test_each_shard_draws_its_own_bits():
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=8')
  root = pathlib.Path(__file__).resolve().parents[1]
  env['PYTHONPATH'] = os.pathsep.join([str(root), env.get('PYTHONPATH', '')])
  done = subprocess.run(
      [sys.executable, '-c', _SHARDED], env=env, capture_output=True, text=True,
      timeout=300, check=False,
  )
  assert done.returncode == 0, done.stderr
  got = json.loads(done.stdout.strip().splitlines()[-1])
  assert got == {'same': True, 'spread': 8, 'distinct_rows': 8}
