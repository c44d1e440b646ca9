"""Tests for wdax.schedules: rates tied to a schedule, peaks and timescales."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdax
from wdax import schedules


def _linear(t):
  """Closed form of optax.linear_schedule(1e-3, 0.0, 100)."""
  return 1e-3 * (1 - min(t, 100) / 100)


LINEAR = optax.linear_schedule(1e-3, 0.0, 100)


def _shrink_per_step(tx, steps, params=None):
  """The decay per step c_t, read off decoupled decay on zero updates."""
  params = params or {'w': jnp.array([1.0])}
  state = tx.init(params)
  out = []
  for _ in range(steps):
    updates, state = tx.update({'w': jnp.zeros(1)}, state, params)
    out.append(-float(updates['w'][0]))
  return np.array(out)


# peak.


@pytest.mark.parametrize(
    'lr, want',
    [
        (optax.warmup_cosine_decay_schedule(0.0, 0.5, 100, 1000), 0.5),
        (optax.warmup_cosine_decay_schedule(0.0, 0.5, 300_000, 900_000), 0.5),
        (optax.constant_schedule(3e-4), 3e-4),
        (optax.piecewise_constant_schedule(1.0, {10: 0.5, 20: 4.0}), 2.0),
        (optax.join_schedules(
            [optax.linear_schedule(0.0, 2.0, 50), optax.cosine_decay_schedule(2.0, 100)],
            [50],
        ), 2.0),
        (LINEAR, 1e-3),
        (0.25, 0.25),
    ],
)
def test_peak_reads_the_maximum(lr, want, strict_dtypes):
  assert schedules.peak(lr) == pytest.approx(want, rel=1e-6)


def test_peak_works_inside_jit():
  @jax.jit
  def f(x):
    # Built while tracing: the peak must still be read eagerly.
    rate = schedules.follow(optax.linear_schedule(0.0, 2.0, 10), 1.0)
    return x * rate(5)

  np.testing.assert_allclose(f(jnp.float32(1.0)), 0.5, rtol=1e-6)


def test_peak_is_read_once_per_schedule(strict_dtypes):
  # Counting the schedule's calls: the first read evaluates it on the array
  # of 2**20 steps; building optimisers again with the same schedule does not.
  calls = []

  def lr(count):
    calls.append(jnp.shape(count))
    return 1e-3 * jnp.minimum(1.0, (count + 1).astype(jnp.float32) / 10)

  assert schedules.peak(lr) == pytest.approx(1e-3)
  for _ in range(3):
    wdax.adamw(lr, weight_decay=0.1, coupling='schedule')
    wdax.sgdw(lr, weight_decay=0.1, coupling='corrected')
    schedules.follow(lr, 0.1)
    assert schedules.peak(lr) == pytest.approx(1e-3)
  assert calls == [(schedules.PEAK_HORIZON,)]
  # Another schedule object is read on its own.
  other = lambda count: lr(count) * 2  # noqa: E731
  assert schedules.peak(other) == pytest.approx(2e-3)
  assert len(calls) == 2


def test_a_failed_peak_is_not_remembered():
  calls = []

  def unreadable(count):
    calls.append(count)
    return 1.0 if count < 5 else 0.5

  for _ in range(2):
    with pytest.raises(ValueError, match='pass peak_lr'):
      schedules.peak(unreadable)
  assert len(calls) == 2


def test_peak_errors():
  def python_branch(count):
    return 1.0 if count < 5 else 0.5  # a bool of a traced array: unreadable

  with pytest.raises(ValueError, match='pass peak_lr'):
    schedules.peak(python_branch)
  with pytest.raises(ValueError, match='still rising at step 1048575'):
    schedules.peak(optax.linear_schedule(0.0, 1.0, 10**7))
  with pytest.raises(ValueError, match='not finite'):
    schedules.peak(lambda t: 1.0 / t.astype(jnp.float32) - 1.0)
  with pytest.raises(ValueError, match='positive'):
    schedules.peak(lambda t: jnp.zeros_like(t, jnp.float32))
  with pytest.raises(ValueError, match='positive'):
    schedules.peak(0.0)
  with pytest.raises(ValueError, match='non-negative'):
    schedules.peak(-1.0)


# follow.


def test_follow_closed_form():
  r = schedules.follow(LINEAR, 0.1)
  for t in (0, 1, 50, 99, 100, 150):
    assert float(r(jnp.int32(t))) == pytest.approx(0.1 * _linear(t) / 1e-3, abs=1e-7)


def test_follow_with_decoupled_decays_by_rate_times_multiplier():
  tx = wdax.decoupled(schedules.follow(LINEAR, 0.1))
  got = _shrink_per_step(tx, 5)
  want = [0.1 * _linear(t) / 1e-3 for t in range(5)]
  np.testing.assert_allclose(got, want, rtol=1e-6)


def test_follow_explicit_peak_overrides():
  r = schedules.follow(LINEAR, 0.1, peak_lr=2e-3)
  assert float(r(0)) == pytest.approx(0.05, rel=1e-6)


def test_follow_unreadable_schedule_with_peak_lr():
  lr = lambda count: jnp.where(count < 5, 1.0, 0.5)  # noqa: E731
  r = schedules.follow(lr, 0.2, peak_lr=1.0)
  assert float(r(7)) == pytest.approx(0.1)


def test_follow_constant_lr_is_the_rate_exactly(strict_dtypes):
  r = schedules.follow(3e-4, 0.1)
  assert float(r(0)) == np.float32(0.1)
  params = {'w': jnp.array([1.5, -2.0])}
  u = {'w': jnp.array([0.1, 0.1])}
  a, _ = wdax.decoupled(r).update(u, wdax.decoupled(r).init(params), params)
  b, _ = wdax.decoupled(0.1).update(u, optax.EmptyState(), params)
  np.testing.assert_array_equal(a['w'], b['w'])


def test_follow_scheduled_rate_multiplies():
  rate = lambda t: 0.2 * (t + 1).astype(jnp.float32)  # noqa: E731
  r = schedules.follow(LINEAR, rate)
  assert float(r(jnp.int32(50))) == pytest.approx(0.2 * 51 * 0.5, rel=1e-6)


def test_follow_keeps_the_form_of_per_group_rates():
  params = {'embed': jnp.ones(2), 'out': {'kernel': jnp.ones(2), 'bias': jnp.ones(2)}}
  paths = wdax.leaf_paths(params)
  grouped = schedules.follow(LINEAR, wdax.rates({'embed': 0.2}, default=0.4))
  assert isinstance(grouped, wdax.Rates)
  tree = schedules.follow(LINEAR, {'embed': 0.2, 'out': {'kernel': 0.4, 'bias': 0.0}})
  assert tree['out']['bias'] == 0.0  # a static zero stays static
  for spec in (grouped, tree):
    tx = wdax.decoupled(spec)
    zero = jax.tree.map(jnp.zeros_like, params)
    state = tx.init(params)
    for _ in range(51):
      updates, state = tx.update(zero, state, params)
    got = dict(zip(paths, jax.tree.leaves(updates)))
    # The last update is step 50, where the multiplier is 0.5.
    np.testing.assert_allclose(got['embed'], [-0.1, -0.1], rtol=1e-5)
    np.testing.assert_allclose(got['out/kernel'], [-0.2, -0.2], rtol=1e-5)
  np.testing.assert_allclose(dict(zip(paths, jax.tree.leaves(updates)))['out/bias'], 0)


def test_follow_errors():
  with pytest.raises(ValueError, match='rate'):
    schedules.follow(LINEAR, -0.1)
  with pytest.raises(ValueError, match='finite'):
    schedules.follow(LINEAR, float('nan'))
  with pytest.raises(ValueError, match='lr_schedule'):
    schedules.follow(-1e-3, 0.1)
  with pytest.raises(ValueError, match='peak_lr'):
    schedules.follow(LINEAR, 0.1, peak_lr=0.0)
  with pytest.raises(ValueError, match=r'follow\(\.\.\.\).*pass peak_lr'):
    schedules.follow(lambda c: 1.0 if c < 3 else 0.1, 0.1)


# corrected.


def test_corrected_with_decoupled_decays_by_lr_squared_over_peak():
  r = schedules.corrected(LINEAR, 0.1)
  tx = wdax.decoupled(r, lr=LINEAR)
  got = _shrink_per_step(tx, 5)
  want = [0.1 * _linear(t) ** 2 / 1e-3 for t in range(5)]
  np.testing.assert_allclose(got, want, rtol=1e-5)
  # The returned schedule itself is rate * lr_t / peak.
  assert float(r(jnp.int32(50))) == pytest.approx(0.05, rel=1e-6)


def test_corrected_keeps_grad_to_weight_ratio_target_constant():
  # sqrt(2 c_t) / lr_t, the steady-state ||g|| / ||theta|| for SGD on a
  # normalised layer, is constant under the correction and grows without it.
  ts = jnp.arange(0, 99)
  lr = np.asarray(LINEAR(ts), np.float64)
  c_corrected = lr * np.asarray(schedules.corrected(LINEAR, 0.1)(ts), np.float64)
  c_plain = lr * 0.1
  ratio_corrected = np.sqrt(2 * c_corrected) / lr
  ratio_plain = np.sqrt(2 * c_plain) / lr
  np.testing.assert_allclose(ratio_corrected, math.sqrt(2 * 0.1 / 1e-3), rtol=1e-4)
  assert ratio_plain[-1] > 5 * ratio_plain[0]


# Timescales.


def test_from_timescale_closed_form():
  assert schedules.from_timescale(1000, 1e-3) == pytest.approx(1.0)
  assert schedules.from_timescale(2, 1e-3, steps_per_epoch=500) == pytest.approx(1.0)
  assert schedules.from_timescale(10, 0.01, steps_per_epoch=100) == pytest.approx(0.1)


def test_timescale_inverts_from_timescale():
  for tau, lr, spe in [(1000, 1e-3, None), (3.5, 2e-4, 391), (0.25, 0.1, 40)]:
    rate = schedules.from_timescale(tau, lr, steps_per_epoch=spe)
    assert schedules.timescale(rate, lr, steps_per_epoch=spe) == pytest.approx(tau)
  assert schedules.timescale(0.0, 1e-3) == math.inf


def test_timescale_is_the_ema_timescale(strict_dtypes):
  # Decoupled decay on zero updates multiplies by (1 - 1/tau) per step: after
  # tau steps the weight is (1 - 1/tau)**tau ~ exp(-1) of where it started.
  tau, lr = 200, 0.05
  rate = schedules.from_timescale(tau, lr)
  tx = wdax.decoupled(rate, lr=lr)
  params = {'w': jnp.array([1.0])}

  def body(p, _):
    u, _ = tx.update({'w': jnp.zeros(1)}, optax.EmptyState(), p)
    return optax.apply_updates(p, u), None

  params, _ = jax.lax.scan(body, params, length=tau)
  np.testing.assert_allclose(params['w'], [(1 - 1 / tau) ** tau], rtol=1e-4)
  assert abs(float(params['w'][0]) - math.exp(-1)) < 0.01


def test_timescale_errors():
  with pytest.raises(ValueError, match='tau'):
    schedules.from_timescale(0, 1e-3)
  with pytest.raises(ValueError, match='tau'):
    schedules.from_timescale(float('inf'), 1e-3)
  with pytest.raises(ValueError, match='lr'):
    schedules.from_timescale(10, LINEAR)
  with pytest.raises(ValueError, match='lr'):
    schedules.from_timescale(10, -1e-3)
  with pytest.raises(ValueError, match='steps_per_epoch'):
    schedules.from_timescale(10, 1e-3, steps_per_epoch=0)
  with pytest.raises(ValueError, match='rate'):
    schedules.timescale(-0.1, 1e-3)
  with pytest.raises(ValueError, match='rate'):
    schedules.timescale(LINEAR, 1e-3)
  with pytest.raises(ValueError, match='lr'):
    schedules.timescale(0.1, 0.0)
