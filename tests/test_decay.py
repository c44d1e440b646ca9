"""Tests for wdax.l2 and wdax.decoupled against hand-derived values and optax."""

import functools
import math

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
from support import optimizer_runs

import wdax
from wdax import masks


def _params(dtype=jnp.float32, int_leaf=True):
  k = jax.random.split(jax.random.key(0), 4)
  params = {
      'Dense_0': {
          'kernel': jax.random.normal(k[0], (4, 3), dtype),
          'bias': jax.random.normal(k[1], (3,), dtype),
      },
      'LayerNorm_0': {'scale': 1 + jax.random.normal(k[2], (3,), dtype)},
      'step': jnp.array(3, jnp.int32),
  }
  if not int_leaf:
    # optax.adam promotes an int leaf's moment to float, changing the state's
    # type after one step; wdax itself leaves int leaves alone.
    del params['step']
  return params


def _grads(params, i):
  return jax.tree.map(
      lambda p: jnp.sin(3 * p + i).astype(p.dtype) if p.dtype != jnp.int32
      else jnp.zeros_like(p),
      params,
  )


def _mask_forms():
  """The same selection (Dense_0/kernel) in every form a mask may take."""
  tree = {
      'Dense_0': {'kernel': True, 'bias': False},
      'LayerNorm_0': {'scale': False},
      'step': False,
  }
  prefix = {'Dense_0': {'kernel': True, 'bias': False}, 'LayerNorm_0': False,
            'step': False}
  return {
      'flax_default': masks.flax_default(),
      'include': masks.include('Dense_0/kernel'),
      'tree': tree,
      'prefix': prefix,
      'callable': lambda p: jax.tree.map(lambda x: x.ndim == 2, p),
  }


# ``steps`` updates of ``tx`` fed these tests' gradients; ``update`` replaces
# ``tx.update`` (a variant).
_run = functools.partial(optimizer_runs.run, gradients=_grads)


# Hand-derived single steps.


def test_l2_one_step(strict_dtypes):
  params = {'w': jnp.array([2.0, -1.0]), 'n': jnp.array([5], jnp.int32)}
  g = {'w': jnp.array([0.5, 0.5]), 'n': jnp.array([0], jnp.int32)}
  updates, state = wdax.l2(0.1).update(g, optax.EmptyState(), params)
  np.testing.assert_allclose(updates['w'], [0.5 + 0.2, 0.5 - 0.1], rtol=1e-6)
  np.testing.assert_array_equal(updates['n'], [0])  # integers never decay
  assert state == optax.EmptyState()


@pytest.mark.parametrize('lr', [None, 0.5])
def test_decoupled_one_step(lr, strict_dtypes):
  params = {'w': jnp.array([2.0, -1.0])}
  u = {'w': jnp.array([0.25, 0.25])}
  tx = wdax.decoupled(0.1, lr=lr)
  updates, _ = tx.update(u, tx.init(params), params)
  c = 0.1 * (lr or 1.0)
  np.testing.assert_allclose(updates['w'], [0.25 - 2 * c, 0.25 + c], rtol=1e-6)


def test_schedules_are_read_from_step_zero(strict_dtypes):
  params = {'w': jnp.array([1.0])}
  rate = lambda t: 0.1 * (t + 1).astype(jnp.float32)  # noqa: E731
  lr = lambda t: 1.0 / (t + 1).astype(jnp.float32)  # noqa: E731
  tx = wdax.decoupled(rate, lr=lr)
  state = tx.init(params)
  assert isinstance(state, wdax.DecayState)
  for t in range(3):
    zero = {'w': jnp.zeros(1)}
    updates, state = tx.update(zero, state, params)
    # c_t = lr_t * r_t = 0.1 for every t when both count from 0.
    np.testing.assert_allclose(updates['w'], [-0.1], rtol=1e-6)
    assert int(state.count) == t + 1


def test_per_group_rates(strict_dtypes):
  params = _params()
  rates = wdax.rates({'Dense_0/kernel': 0.5, 'scale': 0.25}, default=0.125)
  zero = jax.tree.map(jnp.zeros_like, params)
  tx = wdax.decoupled(rates)
  updates, _ = tx.update(zero, tx.init(params), params)
  for path, expected in [
      (('Dense_0', 'kernel'), 0.5),
      (('LayerNorm_0', 'scale'), 0.25),
      (('Dense_0', 'bias'), 0.125),
  ]:
    got = updates[path[0]][path[1]]
    np.testing.assert_allclose(got, -expected * params[path[0]][path[1]], rtol=1e-6)


def test_rate_tree(strict_dtypes):
  params = {'a': jnp.ones(2), 'b': {'c': jnp.ones(2), 'd': jnp.ones(2)}}
  tx = wdax.l2({'a': 1.0, 'b': {'c': 2.0, 'd': 0.0}})
  updates, _ = tx.update(jax.tree.map(jnp.zeros_like, params), tx.init(params), params)
  np.testing.assert_allclose(updates['a'], [1.0, 1.0])
  np.testing.assert_allclose(updates['b']['c'], [2.0, 2.0])
  np.testing.assert_allclose(updates['b']['d'], [0.0, 0.0])


# Agreement with optax.


class MatchesOptax(chex.TestCase):
  """The decoupled chain is optax.adamw, with jit and without."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_mask_forms())
  def test_adamw_with_schedule_and_mask(self, mask_name):
    mask = _mask_forms()[mask_name]
    optax_mask = masks.as_mask(mask)  # optax needs the int leaf excluded too
    sched = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 25, end_value=1e-4)
    params = _params()
    ours_tx = optax.chain(optax.adam(sched), wdax.decoupled(0.3, lr=sched, mask=mask))
    ref_tx = optax.adamw(sched, weight_decay=0.3, mask=optax_mask)
    ours = _run(ours_tx, params, 25, self.variant(ours_tx.update))
    ref = _run(ref_tx, params, 25, self.variant(ref_tx.update))
    chex.assert_trees_all_close(ours, ref, rtol=2e-6, atol=1e-7)
    # The decay acted: the kernel moved differently from Adam alone.
    plain = _run(optax.adam(sched), params, 25)
    assert not np.allclose(plain['Dense_0']['kernel'], ours['Dense_0']['kernel'])
    np.testing.assert_array_equal(plain['Dense_0']['bias'], ours['Dense_0']['bias'])


def test_matches_optax_add_decayed_weights_as_l2():
  params = _params()
  ours = _run(optax.chain(wdax.l2(0.05), optax.sgd(0.1, momentum=0.9)), params, 20)
  ref = _run(
      optax.chain(
          optax.add_decayed_weights(0.05, mask=masks.as_mask(None)),
          optax.sgd(0.1, momentum=0.9),
      ),
      params,
      20,
  )
  chex.assert_trees_all_close(ours, ref, rtol=1e-6, atol=1e-7)


# Laws.

_floats = st.floats(-10, 10, allow_nan=False, width=32)


@settings(deadline=None, max_examples=25)
@given(
    p=st.lists(_floats, min_size=3, max_size=3),
    g=st.lists(_floats, min_size=3, max_size=3),
    lam=st.floats(0, 1),
    lr=st.floats(1e-3, 1),
)
def test_l2_equals_decoupled_for_plain_sgd(p, g, lam, lr):
  params = {'w': jnp.array(p, jnp.float32)}
  grads = {'w': jnp.array(g, jnp.float32)}
  coupled = optax.chain(wdax.l2(lam), optax.sgd(lr))
  decoupled = optax.chain(optax.sgd(lr), wdax.decoupled(lam, lr=lr))
  a, _ = coupled.update(grads, coupled.init(params), params)
  b, _ = decoupled.update(grads, decoupled.init(params), params)
  # -lr*(g + lam*p) versus -lr*g - (lr*lam)*p: equal up to rounding.
  scale = lr * (np.abs(g) + lam * np.abs(p)) + 1e-30
  np.testing.assert_array_less(np.abs(a['w'] - b['w']), 4e-7 * scale + 1e-12)


def test_adam_with_l2_differs_from_adamw():
  params = _params()
  coupled = _run(optax.chain(wdax.l2(0.1), optax.adam(1e-2)), params, 20)
  decoupled = _run(optax.chain(optax.adam(1e-2), wdax.decoupled(0.1, lr=1e-2)), params, 20)
  gap = np.max(np.abs(coupled['Dense_0']['kernel'] - decoupled['Dense_0']['kernel']))
  assert gap > 1e-3


@settings(deadline=None, max_examples=20)
@given(
    p=st.lists(_floats, min_size=4, max_size=4),
    u=st.lists(_floats, min_size=4, max_size=4),
    which=st.sampled_from(['l2', 'decoupled', 'decoupled_lr']),
    form=st.sampled_from(['zero_rate', 'false_tree', 'false_prefix', 'zero_rates']),
)
def test_zero_rate_and_all_false_mask_are_identity(p, u, which, form):
  params = {'a': jnp.array(p[:2], jnp.float32), 'b': jnp.array(p[2:], jnp.float32)}
  updates = {'a': jnp.array(u[:2], jnp.float32), 'b': jnp.array(u[2:], jnp.float32)}
  rate, mask = 0.5, None
  if form == 'zero_rate':
    rate = 0.0
  elif form == 'false_tree':
    mask = {'a': False, 'b': False}
  elif form == 'false_prefix':
    mask = False
  else:
    rate = wdax.rates({'a': 0.0}, default=0.0)
  tx = {
      'l2': lambda: wdax.l2(rate, mask=mask),
      'decoupled': lambda: wdax.decoupled(rate, mask=mask),
      'decoupled_lr': lambda: wdax.decoupled(rate, lr=0.1, mask=mask),
  }[which]()
  out, _ = tx.update(updates, tx.init(params), params)
  chex.assert_trees_all_equal(out, updates)


# Compilation, vmap and inject_hyperparams.


_SCHED = optax.linear_schedule(0.1, 0.01, 10)
_KERNEL = {'Dense_0': {'kernel': True, 'bias': False}, 'LayerNorm_0': {'scale': False}}
_NOT_KERNEL = jax.tree.map(lambda x: not x, _KERNEL)

# Each decay, and the same arithmetic written with optax's own decay.
_DECAYS = {
    'l2': (
        lambda: wdax.l2(0.1, mask=masks.flax_default()),
        lambda: optax.add_decayed_weights(0.1, mask=_KERNEL),
    ),
    'decoupled_sched': (
        lambda: wdax.decoupled(_SCHED, lr=_SCHED, mask=masks.flax_default()),
        lambda: optax.add_decayed_weights(lambda c: -(_SCHED(c) * _SCHED(c)), _KERNEL),
    ),
    'rates': (
        lambda: wdax.decoupled(wdax.rates({'kernel': _SCHED}, default=0.01)),
        lambda: optax.chain(
            optax.add_decayed_weights(lambda c: -_SCHED(c), _KERNEL),
            optax.add_decayed_weights(-0.01, _NOT_KERNEL),
        ),
    ),
}


class JitAndEager(chex.TestCase):
  """Each decay after Adam, jitted (traced once) and not: optax's arithmetic."""

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(*_DECAYS)
  def test_decay_after_adam(self, name):
    chex.clear_trace_counter()
    ours, theirs = _DECAYS[name]
    tx = optax.chain(optax.adam(1e-2), ours())
    ref = optax.chain(optax.adam(1e-2), theirs())
    params = _params(int_leaf=False)

    @self.variant
    @chex.assert_max_traces(n=1)
    def update(grads, state, params):
      return tx.update(grads, state, params)

    got = _run(tx, params, 5, update)
    want = _run(ref, params, 5)
    chex.assert_trees_all_close(got, want, rtol=1e-6, atol=1e-7)


def test_vmap_over_rate_equals_loop():
  params = _params()
  rates = jnp.array([0.0, 0.1, 0.7])
  grads = _grads(params, 0)

  def one(rate):
    tx = optax.chain(optax.adam(1e-2), wdax.decoupled(rate, lr=1e-2))
    return tx.update(grads, tx.init(params), params)[0]

  batched = jax.vmap(one)(rates)
  for i, r in enumerate([0.0, 0.1, 0.7]):
    chex.assert_trees_all_close(
        jax.tree.map(lambda x, i=i: x[i], batched), one(r), rtol=1e-6
    )


def test_inject_hyperparams_gives_the_same_numbers():
  params = _params()
  direct = optax.chain(optax.adam(1e-2), wdax.decoupled(0.2, lr=1e-2, mask=masks.flax_default()))
  injected = optax.chain(
      optax.adam(1e-2),
      optax.inject_hyperparams(wdax.decoupled, static_args=('mask',))(
          rate=0.2, lr=1e-2, mask=masks.flax_default()
      ),
  )
  chex.assert_trees_all_close(
      _run(direct, params, 5), _run(injected, params, 5), rtol=1e-6
  )
  # The injected rate can be changed between steps without retracing.
  state = injected.init(params)
  assert float(state[1].hyperparams['rate']) == pytest.approx(0.2)


def test_inject_hyperparams_with_schedule():
  sched = optax.exponential_decay(0.5, 1, 0.5)
  params = {'w': jnp.array([1.0])}
  tx = optax.inject_hyperparams(wdax.l2)(rate=sched)
  state = tx.init(params)
  for t in range(3):
    updates, state = tx.update({'w': jnp.zeros(1)}, state, params)
    np.testing.assert_allclose(updates['w'], [0.5 * 0.5**t], rtol=1e-6)


# Dtypes and shapes.


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16, jnp.float16])
@pytest.mark.parametrize('mask_name', ['flax_default', 'tree', 'callable'])
@pytest.mark.parametrize('which', ['l2', 'decoupled', 'decoupled_sched', 'rates'])
def test_dtype_is_preserved(dtype, mask_name, which, strict_dtypes):
  params = _params(dtype)
  mask = _mask_forms()[mask_name]
  sched = optax.constant_schedule(0.1)
  tx = {
      'l2': lambda: wdax.l2(0.1, mask=mask),
      'decoupled': lambda: wdax.decoupled(0.1, lr=0.5, mask=mask),
      'decoupled_sched': lambda: wdax.decoupled(sched, lr=sched, mask=mask),
      'rates': lambda: wdax.decoupled(wdax.rates({'kernel': jnp.float32(0.1)})),
  }[which]()
  updates, _ = tx.update(_grads(params, 0), tx.init(params), params)
  chex.assert_trees_all_equal_dtypes(updates, params)
  kernel = params['Dense_0']['kernel']
  g = _grads(params, 0)['Dense_0']['kernel']
  c = {'l2': -0.1, 'decoupled': 0.05, 'decoupled_sched': 0.01, 'rates': 0.1}[which]
  expected = (g.astype(jnp.float32) - c * kernel.astype(jnp.float32))
  tol = 1e-6 if dtype == jnp.float32 else 2e-2
  np.testing.assert_allclose(
      updates['Dense_0']['kernel'].astype(jnp.float32), expected, rtol=tol, atol=tol
  )


def test_eval_shape_init_and_minimal_state():
  params = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), _params())
  assert jax.eval_shape(wdax.l2(0.1).init, params) == optax.EmptyState()
  assert jax.eval_shape(wdax.decoupled(0.1, lr=0.1).init, params) == optax.EmptyState()
  state = jax.eval_shape(wdax.decoupled(0.1, lr=optax.constant_schedule(1.0)).init, params)
  assert state.count.shape == () and state.count.dtype == jnp.int32
  rates = wdax.rates({'kernel': optax.constant_schedule(1.0)})
  assert isinstance(jax.eval_shape(wdax.l2(rates).init, params), wdax.DecayState)


# Errors.


@pytest.mark.parametrize('bad', [-0.1, math.nan, math.inf, -math.inf, np.float32(-1)])
@pytest.mark.parametrize('factory', [wdax.l2, wdax.decoupled, functools.partial(wdax.decoupled, lr=0.1)])
def test_bad_static_rate_raises(bad, factory):
  with pytest.raises(ValueError, match='rate'):
    factory(bad)


@pytest.mark.parametrize('bad', [-1e-3, math.nan, 'fast', jnp.ones(2)])
def test_bad_lr_raises(bad):
  with pytest.raises(ValueError, match='lr'):
    wdax.decoupled(0.1, lr=bad)


def test_bad_rate_inside_tree_or_rates_names_it():
  with pytest.raises(ValueError, match="parameter path 'b/c'"):
    wdax.l2({'a': 0.1, 'b': {'c': -1.0}})
  with pytest.raises(ValueError, match="pattern 'bias'"):
    wdax.rates({'bias': math.nan})


@pytest.mark.parametrize('factory', [wdax.l2, wdax.decoupled])
def test_update_without_params_raises(factory):
  params = _params()
  tx = factory(0.1)
  with pytest.raises(ValueError, match='needs params'):
    tx.update(params, tx.init(params))


def test_updates_params_structure_mismatch_raises():
  tx = wdax.decoupled(0.1)
  params = {'a': jnp.ones(2), 'b': jnp.ones(2)}
  with pytest.raises(ValueError, match='differ in structure'):
    tx.update({'a': jnp.ones(2), 'c': jnp.ones(2)}, tx.init(params), params)
