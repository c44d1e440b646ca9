"""Numerics at the edges: huge weights, non-finite gradients, NaN schedules.

* bfloat16 and float16 weights near their largest finite value decay to the
  value the rule gives in that dtype, computed here by hand: each product and
  sum rounded once to the dtype (NumPy with ml_dtypes, from float64, where the
  products of two such numbers are exact).
* Under ``optax.apply_if_finite``, a step with a NaN gradient leaves the params
  and every wdax state (step counts included) as they were, and the run then
  continues exactly as if that step had never come.
* A schedule that returns NaN does what wdax.rate documents: NaN on the leaves
  it decays at those steps and nothing else, found by checkify or debug_nans.
"""

import functools
import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.experimental import checkify
from support import strategies

import wdax
from wdax import masks

DTYPES = [jnp.bfloat16, jnp.float16]


def _round(x, dtype):
  """``x`` (exact in float64) rounded once to ``dtype``, as a Python float."""
  return float(np.asarray(x, np.float64).astype(np.dtype(dtype)))


def _near_max(dtype, sign):
  return _round(sign * 0.99 * float(jnp.finfo(dtype).max), dtype)


# Each case: a builder of the transform (rate 0.1, learning rate 1) for
# weights theta of a dtype, and the new weight by hand, from theta and the rate
# c = 0.1 rounded to the dtype. The gradient is 0.
def _cases(dtype, theta):
  c = _round(0.1, dtype)
  decayed = _round(theta - _round(c * theta, dtype), dtype)  # theta - c theta
  twice = _round(theta - 2 * _round(c * theta, dtype), dtype)  # c (theta - (-theta))
  # l1 moves by c toward 0: far below theta's spacing, so theta stays.
  thresholded = _round(theta - np.sign(theta) * c, dtype)
  eps = 1e-4  # Adam's 1e-8 is 0 in float16 (test_float16_adam_warns_...)

  def toward(ref):
    return lambda: wdax.toward({'w': jnp.full((3,), ref, dtype)}, 0.1, lr=1.0)

  return {
      'l2': (lambda: optax.chain(wdax.l2(0.1), optax.sgd(1.0)), decayed),
      'decoupled': (lambda: wdax.decoupled(0.1, lr=1.0), decayed),
      'cautious': (lambda: wdax.cautious(0.1, lr=1.0), decayed),
      'l1': (lambda: wdax.l1(0.1, lr=1.0), thresholded),
      'toward_zero': (toward(0.0), decayed),
      # theta - (-theta) overflows; c theta - c (-theta) does not.
      'toward_opposite': (toward(-theta), twice),
      'toward_init': (lambda: wdax.toward('init', 0.1, lr=1.0), theta),
      **{
          f'adamw_{k}': (
              functools.partial(
                  wdax.adamw, 1.0, weight_decay=0.1, coupling=k, eps=eps
              ),
              decayed,
          )
          for k in wdax.optimizers.COUPLINGS
      },
      'sgdw': (lambda: wdax.sgdw(1.0, weight_decay=0.1, momentum=0.9), decayed),
  }


CASES = sorted(_cases(jnp.float32, 1.0))


@pytest.mark.parametrize('jit', [False, True], ids=['eager', 'jit'])
@pytest.mark.parametrize('sign', [1, -1], ids=['positive', 'negative'])
@pytest.mark.parametrize('dtype', DTYPES, ids=lambda d: jnp.dtype(d).name)
@pytest.mark.parametrize('name', CASES)
def test_weights_near_the_largest_finite_value_decay_without_overflow(
    name, dtype, sign, jit
):
  theta = _near_max(dtype, sign)
  build, want = _cases(dtype, theta)[name]
  tx = build()
  params = {'w': jnp.full((3,), theta, dtype)}
  grads = {'w': jnp.zeros((3,), dtype)}
  update = jax.jit(tx.update) if jit else tx.update
  updates, _ = update(grads, tx.init(params), params)
  new = optax.apply_updates(params, updates)['w']
  assert new.dtype == jnp.dtype(dtype)
  assert np.all(np.isfinite(np.asarray(new, np.float64)))
  np.testing.assert_array_equal(np.asarray(new, np.float64), np.full(3, want))


def test_the_hand_values_are_not_trivial():
  # The decay moves theta by many of its spacings, and toward from -theta by
  # twice that: the comparison above would catch a decay that did nothing.
  for dtype in DTYPES:
    theta = _near_max(dtype, 1)
    cases = _cases(dtype, theta)
    assert cases['decoupled'][1] < theta * 0.91
    assert cases['toward_opposite'][1] < theta * 0.81


def test_float16_adam_warns_of_an_eps_that_float16_cannot_hold():
  # 1e-8 is 0 in float16, so a coordinate with zero gradients steps by
  # 0/0 = NaN, in optax.adamw as in wdax.adamw (bit for bit): init warns,
  # naming eps and the path, once.
  params = {'b': jnp.ones(2, jnp.bfloat16), 'w': jnp.ones(2, jnp.float16),
            'v': jnp.ones(2, jnp.float16)}
  zero = jax.tree.map(jnp.zeros_like, params)
  assert float(jnp.asarray(1e-8, jnp.float16)) == 0.0
  reference = optax.adamw(0.1)
  want, _ = reference.update(zero, reference.init(params), params)
  for tx in (wdax.adamw(0.1), wdax.adams(0.1)):
    with pytest.warns(UserWarning, match=r"eps=1e-08 .* is 0 in float16.*'v'") as seen:
      state = tx.init(params)
    # adamw's default decay, 1e-5 per step, is also lost in these dtypes.
    assert [w.category for w in seen].count(UserWarning) == 1
    got, _ = tx.update(zero, state, params)
    assert np.isnan(np.asarray(got['w'], np.float32)).all()
    assert np.isfinite(np.asarray(got['b'], np.float32)).all()
  tx = wdax.adamw(0.1)
  with pytest.warns(UserWarning, match='eps'):
    state = tx.init(params)
  chex.assert_trees_all_equal(tx.update(zero, state, params)[0], want)
  # A zero gradient: Adam's step is 0. adamw decays by lr * 1e-4 (its default
  # weight decay) * w; adams not at all while every gradient so far is 0.
  for tx, decay in ((wdax.adamw(0.1, eps=1e-4), -1e-5),
                    (wdax.adamw(0.1, eps_root=1e-4), -1e-5),
                    (wdax.adams(0.1, eps=1e-4), 0.0)):
    with warnings.catch_warnings():
      warnings.simplefilter('error')
      warnings.filterwarnings('ignore', category=wdax.LostDecayWarning)
      state = tx.init(params)
    updates, _ = tx.update(zero, state, params)
    for u in jax.tree.leaves(updates):
      np.testing.assert_allclose(np.asarray(u, np.float64), decay, rtol=1e-2)


# optax.apply_if_finite: a step with a NaN gradient changes nothing.

LR_SCHEDULE = optax.linear_schedule(0.1, 0.01, 10)
RATE_SCHEDULE = optax.cosine_decay_schedule(0.2, 10)

STATEFUL = {
    'l2': lambda: optax.chain(wdax.l2(RATE_SCHEDULE), optax.sgd(LR_SCHEDULE)),
    'decoupled': lambda: optax.chain(
        optax.adam(LR_SCHEDULE), wdax.decoupled(RATE_SCHEDULE, lr=LR_SCHEDULE)
    ),
    'l1': lambda: optax.chain(optax.sgd(LR_SCHEDULE), wdax.l1(RATE_SCHEDULE)),
    'cautious': lambda: optax.chain(
        optax.sgd(0.1, momentum=0.9), wdax.cautious(0.1, lr=LR_SCHEDULE)
    ),
    'toward': lambda: optax.chain(
        optax.sgd(0.1), wdax.toward('init', RATE_SCHEDULE, lr=LR_SCHEDULE)
    ),
    'rates': lambda: optax.chain(
        optax.sgd(0.1),
        wdax.decoupled(wdax.rates({'kernel': RATE_SCHEDULE}, default=0.1)),
    ),
    **{
        f'adamw_{k}': functools.partial(
            wdax.adamw,
            LR_SCHEDULE,
            weight_decay=0.1,
            coupling=k,
            mask=masks.exclude('bias'),
        )
        for k in wdax.optimizers.COUPLINGS
    },
    'sgdw': lambda: wdax.sgdw(LR_SCHEDULE, weight_decay=RATE_SCHEDULE, momentum=0.9),
    'adams': lambda: wdax.adams(LR_SCHEDULE, weight_decay=RATE_SCHEDULE),
}


def _params():
  # No integer leaf: optax's Adam and momentum give an int32 parameter a
  # float32 update, which apply_if_finite's lax.cond cannot pair with its
  # int32 zeros (optax.apply_if_finite(optax.adamw(...)) fails alike).
  return {
      'Dense_0': {'kernel': jnp.array([[0.5, -1.0], [2.0, 0.25]]),
                  'bias': jnp.array([0.1, -0.2])},
      'scale': jnp.array([1.0, -3.0], jnp.bfloat16),
  }


def _grads(i, nan=False):
  g = {
      'Dense_0': {'kernel': jnp.array([[1.0, -0.5], [0.25, 2.0]]) * (i + 1),
                  'bias': jnp.array([0.5, 0.5]) / (i + 1)},
      'scale': jnp.array([-1.0, 0.5], jnp.bfloat16),
  }
  if nan:
    g['Dense_0']['bias'] = g['Dense_0']['bias'].at[1].set(jnp.nan)
  return g


def _counts(state):
  """Every int32 scalar in a state: the step counts of wdax and optax."""
  return [x for x in jax.tree.leaves(state) if x.dtype == jnp.int32 and x.shape == ()]


@pytest.mark.parametrize('name', sorted(STATEFUL))
def test_a_nan_gradient_under_apply_if_finite_changes_nothing(name):
  tx = optax.apply_if_finite(STATEFUL[name](), max_consecutive_errors=3)

  @jax.jit
  def step(params, state, grads):
    updates, state = tx.update(grads, state, params)
    return optax.apply_updates(params, updates), state

  params = _params()
  state = tx.init(params)
  p1, s1 = step(params, state, _grads(0))
  p2, s2 = step(p1, s1, _grads(1, nan=True))
  chex.assert_trees_all_equal(p2, p1)
  chex.assert_trees_all_equal(s2.inner_state, s1.inner_state)
  assert [int(c) for c in _counts(s1.inner_state)] == [1] * len(
      _counts(s1.inner_state)
  )
  assert int(s2.notfinite_count) == 1 and int(s2.total_notfinite) == 1
  # The run goes on as if the NaN step had not come, schedules included.
  p3, s3 = step(p2, s2, _grads(1))
  q2, r2 = step(p1, s1, _grads(1))
  chex.assert_trees_all_equal(p3, q2)
  chex.assert_trees_all_equal(s3.inner_state, r2.inner_state)
  assert not all(
      np.array_equal(a, b) for a, b in zip(jax.tree.leaves(p3), jax.tree.leaves(p1))
  )


def test_every_stateful_case_has_a_step_count():
  # So the test above checks that the counts stand still on a NaN step.
  for name, make in STATEFUL.items():
    state = make().init(_params())
    assert _counts(state), name


# A schedule returning NaN: NaN where it decays at those steps, nothing else.


def _nan_from(step):
  return lambda count: jnp.where(count >= step, jnp.nan, 0.1)


def test_a_nan_schedule_makes_nan_only_where_it_decays_and_when():
  tx = wdax.decoupled(_nan_from(1), mask=masks.include('kernel'))
  params = _params()
  update = jax.jit(tx.update)
  grads = _grads(0)
  state = tx.init(params)
  first, state = update(grads, state, params)
  second, state = update(grads, state, params)
  assert int(state.count) == 2
  # Step 0: rate 0.1, finite; step 1: NaN on the kernel only.
  np.testing.assert_allclose(
      first['Dense_0']['kernel'],
      grads['Dense_0']['kernel'] - 0.1 * params['Dense_0']['kernel'],
  )
  assert np.isnan(second['Dense_0']['kernel']).all()
  for path in (('Dense_0', 'bias'), ('scale',)):
    got, want = second, grads
    for key in path:
      got, want = got[key], want[key]
    np.testing.assert_array_equal(got, want)


def test_describe_shows_a_schedules_value_at_step_zero():
  report = wdax.describe(_params(), rate=_nan_from(0))
  assert report.rows[0].rate == 'schedule (nan at step 0)'


def test_checkify_names_the_primitive_that_made_the_nan():
  tx = wdax.decoupled(_nan_from(1))
  params = _params()
  checked = jax.jit(checkify.checkify(tx.update, errors=checkify.float_checks))
  state = tx.init(params)
  err, (_, state) = checked(_grads(0), state, params)
  assert err.get() is None
  err, _ = checked(_grads(0), state, params)
  assert 'nan generated by primitive' in err.get()


def test_debug_nans_raises_at_the_nan():
  tx = wdax.decoupled(_nan_from(1))
  params = _params()
  update = jax.jit(tx.update)
  with jax.debug_nans(True):
    _, state = update(_grads(0), tx.init(params), params)
    with pytest.raises(FloatingPointError):
      update(_grads(0), state, params)


# The same, fuzzed over the decays, params and the step the NaN starts at.

DECAYS = {
    'l2': lambda rate, mask: wdax.l2(rate, mask=mask),
    'decoupled': lambda rate, mask: wdax.decoupled(rate, lr=0.5, mask=mask),
    'l1': lambda rate, mask: wdax.l1(rate, lr=0.5, mask=mask),
    'cautious': lambda rate, mask: wdax.cautious(rate, lr=0.5, mask=mask),
    'toward': lambda rate, mask: wdax.toward('init', rate, lr=0.5, mask=mask),
}


def _as_float64(x):
  x = np.asarray(x)
  return x.astype(np.complex128 if np.iscomplexobj(x) else np.float64)


@strategies.FUZZ
@given(
    name=st.sampled_from(sorted(DECAYS)),
    params=strategies.params_trees(min_float=2, none=False),
    schedule=strategies.nan_schedules(),
    data=st.data(),
)
def test_a_nan_schedule_makes_nan_exactly_where_and_when_it_decays(
    name, params, schedule, data
):
  k, rate = schedule
  chosen = data.draw(st.sampled_from(strategies.float_paths(params)), label='leaf')
  tx = DECAYS[name](rate, masks.include(chosen))
  update = jax.jit(tx.update)
  state = tx.init(params)
  if name == 'toward':  # away from the reference taken at init
    params = jax.tree.map(
        lambda x: x + jnp.asarray(1, x.dtype) if strategies.is_float(x) else x, params
    )
  updates = strategies.grads_like(params)
  for step in range(k + 1):
    got, state = update(updates, state, params)
    assert int(state.count) == step + 1
    for path, g, u, p in zip(
        wdax.leaf_paths(params), jax.tree.leaves(got), jax.tree.leaves(updates),
        jax.tree.leaves(params),
    ):
      g, u, p = _as_float64(g), _as_float64(u), _as_float64(p)
      if path != chosen:
        np.testing.assert_array_equal(g, u)  # never decayed: untouched
      elif step < k:
        assert np.isfinite(g).all()
      elif name == 'cautious':
        # Coordinates moving away from zero are not decayed, so not NaN.
        away = np.real(np.conj(u) * p) > 0
        np.testing.assert_array_equal(g[away], u[away])
        assert np.isnan(g[~away]).all()
      else:
        assert np.isnan(g).all()
