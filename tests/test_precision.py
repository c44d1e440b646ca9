"""The lost-decay check: LostDecayWarning at init, and wdax.precision.lost_decay.

The threshold eps/2 is checked against rounding itself: over every normal
bfloat16 weight, theta (1 - c) rounded to nearest is theta for all of them
below eps/4 and for some of them just below eps/2.
"""

import warnings

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import optax
import pytest

import wdax
from wdax import precision

BF16_LIMIT = 2.0**-8  # eps / 2 for bfloat16
F16_LIMIT = 2.0**-11


def _params(dtype=jnp.bfloat16):
  return {'Dense_0': {'bias': jnp.zeros(3, dtype), 'kernel': jnp.ones((2, 3), dtype)},
          'head': {'kernel': jnp.ones((3, 1), dtype)}}


def _lost(tx, params):
  """The LostDecayWarning messages ``tx.init(params)`` gives."""
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    tx.init(params)
  return [str(w.message) for w in caught if w.category is wdax.LostDecayWarning]


def test_the_threshold_is_where_rounding_erases_the_decay():
  table = np.arange(2**16, dtype=np.uint16).view(ml_dtypes.bfloat16)
  with np.errstate(invalid='ignore'):
    theta = table[np.isfinite(table.astype(np.float32))]
  theta = theta[(np.abs(theta.astype(np.float64)) > 2.0**-100)
                & (np.abs(theta.astype(np.float64)) < 2.0**100)]

  def unchanged(c):
    new = (theta.astype(np.float64) * (1 - c)).astype(ml_dtypes.bfloat16)
    return float(np.mean(new == theta))

  eps = float(jnp.finfo(jnp.bfloat16).eps)
  assert precision.threshold(jnp.bfloat16) == eps / 2 == BF16_LIMIT
  assert unchanged(0.999 * eps / 4) == 1.0
  assert 0 < unchanged(0.49 * eps) < 0.05
  assert precision.threshold(jnp.float16) == F16_LIMIT
  assert precision.threshold(jnp.float32) is None
  assert precision.threshold(jnp.int32) is None


def test_adamw_warns_naming_paths_dtype_c_and_the_remedies():
  msgs = _lost(wdax.adamw(1e-4, weight_decay=0.1), _params())
  assert len(msgs) == 1
  msg = msgs[0]
  for text in ("'Dense_0/bias' (bfloat16, c=1e-05)", "'Dense_0/kernel'",
               "'head/kernel'", 'wdax.stochastic_rounding()',
               'float32 master weights', 'larger c', '0.00391 for bfloat16'):
    assert text in msg, (text, msg)


@pytest.mark.parametrize('coupling,c', [
    ('lr', 1e-5), ('none', 1e-3), ('schedule', 1e-3), ('corrected', 1e-5)])
def test_every_coupling_warns_with_its_own_decay_per_step(coupling, c):
  # lr peaks at 1e-2 after a warmup from 0; c is 1e-2 * 1e-3 for 'lr' and
  # 'corrected', 1e-3 for 'none' and 'schedule'.
  lr = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 10, 100)
  for make in (wdax.adamw, wdax.sgdw):
    msgs = _lost(make(lr, weight_decay=1e-3, coupling=coupling), _params())
    assert len(msgs) == 1 and f'c={c:.3g})' in msgs[0], msgs


@pytest.mark.parametrize('make', [
    lambda c: wdax.decoupled(c),
    lambda c: wdax.decoupled(c / 1e-3, lr=1e-3),
    lambda c: wdax.l1(c),
    lambda c: wdax.cautious(c),
    lambda c: wdax.toward('init', c),
    lambda c: wdax.adamw(1.0, weight_decay=c),
    lambda c: wdax.sgdw(1.0, weight_decay=c),
], ids=['decoupled', 'decoupled_lr', 'l1', 'cautious', 'toward', 'adamw', 'sgdw'])
def test_each_decay_warns_just_below_the_threshold_and_not_at_it(make):
  assert len(_lost(make(0.99 * BF16_LIMIT), _params())) == 1
  assert _lost(make(BF16_LIMIT), _params()) == []


def test_float32_leaves_and_large_enough_decay_do_not_warn():
  assert _lost(wdax.adamw(1e-4, weight_decay=0.1), _params(jnp.float32)) == []
  assert _lost(wdax.decoupled(1e-2), _params()) == []


def test_float16_has_its_own_threshold():
  assert len(_lost(wdax.decoupled(0.99 * F16_LIMIT), _params(jnp.float16))) == 1
  assert _lost(wdax.decoupled(F16_LIMIT), _params(jnp.float16)) == []


def test_masked_leaves_are_not_named():
  mask = wdax.masks.flax_default()  # kernels only
  msg, = _lost(wdax.decoupled(1e-5, mask=mask), _params())
  assert "'Dense_0/kernel'" in msg and 'bias' not in msg
  # adamw's coupling 'lr' masks with optax.masked, as optax.adamw does.
  msg, = _lost(wdax.adamw(1e-4, weight_decay=0.1, mask=mask), _params())
  assert "'head/kernel'" in msg and 'bias' not in msg
  assert _lost(wdax.decoupled(1e-5, mask=lambda p: jax.tree.map(
      lambda _: False, p)), _params()) == []


def test_each_group_is_checked_with_its_own_rate():
  rates = wdax.rates({'head': 1e-2, 'bias': 0.0}, default=1e-5)
  msg, = _lost(wdax.decoupled(rates), _params())
  assert "'Dense_0/kernel' (bfloat16, c=1e-05)" in msg
  assert 'head' not in msg and 'bias' not in msg
  msg, = _lost(wdax.adamw(1e-3, weight_decay=wdax.rates(
      {'head': 1e-3}, default=10.0)), _params())
  assert "'head/kernel' (bfloat16, c=1e-06)" in msg and 'Dense_0' not in msg
  assert _lost(wdax.decoupled(wdax.rates({'head': 1e-2}, default=1e-2)),
               _params()) == []


def test_a_schedule_is_checked_at_its_peak():
  # A warmup from 0: c is 0 at step 0 but 1e-2 * 1.0 at its peak: no warning.
  warm = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 100, 1000)
  assert _lost(wdax.adamw(warm, weight_decay=1.0), _params()) == []
  msg, = _lost(wdax.adamw(warm, weight_decay=0.1), _params())
  assert 'c=0.001)' in msg
  assert _lost(wdax.decoupled(optax.linear_schedule(0.0, 1e-2, 10)),
               _params()) == []


def test_traced_rates_are_not_checked():
  # Injected values are traced when init is jitted; run eagerly, init sees
  # their concrete starting values, and checks those.
  inject = optax.inject_hyperparams(wdax.adamw, hyperparam_dtype=jnp.float32)(
      learning_rate=1e-4, weight_decay=0.1)
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    jax.jit(inject.init)(_params())
  assert not [w for w in caught if w.category is wdax.LostDecayWarning]
  assert len(_lost(inject, _params())) == 1

  def init(rate):
    with warnings.catch_warnings(record=True) as caught:
      warnings.simplefilter('always')
      wdax.decoupled(rate).init(_params())
    return jnp.asarray(sum(w.category is wdax.LostDecayWarning for w in caught))

  assert int(jax.vmap(init)(jnp.array([1e-5, 1e-6])).sum()) == 0


def test_adams_and_l2_are_not_checked():
  assert _lost(wdax.adams(1e-4, weight_decay=0.1), _params()) == []
  assert _lost(wdax.l2(1e-6), _params()) == []


def test_the_warning_points_at_the_callers_line():
  tx = wdax.adamw(1e-4, weight_decay=0.1)
  with pytest.warns(wdax.LostDecayWarning) as seen:
    tx.init(_params())
  assert seen[0].filename == __file__


def test_lost_decay_reports_per_layer_values_for_the_layers_concerned():
  params = {'stack': jnp.ones((4, 2), jnp.bfloat16), 'f': jnp.ones(2)}
  c = {'stack': np.array([1e-2, 1e-5, 0.0, 3e-3]), 'f': 1e-9}
  found, = precision.lost_decay(params, c)
  assert found == precision.LostDecay('stack', 'bfloat16', 3e-3, (1, 3), False)
  found, = precision.lost_decay(params, {'stack': 1e-4, 'f': 1e-9})
  assert found.everywhere and found.layers is None


def _lost_column(report):
  return {row.path: row.lost for row in report.rows}


def test_describe_says_for_each_decayed_low_precision_leaf_whether_decay_is_lost():
  params = {'all': jnp.ones(2, jnp.bfloat16), 'some': jnp.ones(2, jnp.bfloat16),
            'kept': jnp.ones(2, jnp.bfloat16), 'f32': jnp.ones(2),
            'bias': jnp.ones(2, jnp.bfloat16),
            'stack': jnp.ones((3, 2), jnp.bfloat16), 'half': jnp.ones(2, jnp.float16)}
  # c = lr * 0.1: 1e-5 (below eps/4), 3e-3 (between eps/4 and eps/2), 1e-2.
  lr = wdax.rates({'all': 1e-4, 'some': 3e-2, 'kept': 1e-1,
                   'stack': np.array([1e-1, 1e-4, 0.0]), 'half': 1e-2},
                  default=1e-4)
  report = wdax.describe(params, rate=0.1, lr=lr, mask=lambda p: {
      k: k != 'bias' for k in p})
  assert _lost_column(report) == {
      'all': 'all', 'some': 'some', 'kept': 'no', 'f32': '', 'bias': '',
      'stack': 'layers 1', 'half': 'no'}
  assert str(report).splitlines()[0].split()[-1] == 'lost'


def test_describe_reads_a_schedule_at_its_peak_and_shows_no_column_without_lr():
  params = {'w': jnp.ones(2, jnp.bfloat16)}
  warm = optax.warmup_cosine_decay_schedule(0.0, 1e-1, 10, 100)
  assert _lost_column(wdax.describe(params, rate=0.1, lr=warm)) == {'w': 'no'}
  assert _lost_column(wdax.describe(params, rate=0.1, lr=warm, coupling='none')) \
      == {'w': 'no'}
  assert _lost_column(wdax.describe(params, rate=1e-3, lr=warm)) == {'w': 'all'}
  report = wdax.describe(params, rate=1e-5)
  assert not report.with_lost and 'lost' not in str(report)


def test_each_group_is_checked_with_its_own_learning_rate():
  # c = lr_g * 0.1: 1e-4 for the default group, 1e-2 for the head; the
  # frozen embedding (lr 0) is not decayed; per layer, only layer 1 is lost.
  params = {'embed': jnp.ones(2, jnp.bfloat16), 'head': jnp.ones(2, jnp.bfloat16),
            'body': jnp.ones(2, jnp.bfloat16), 'stack': jnp.ones((3, 2), jnp.bfloat16)}
  lr = wdax.rates({'embed': 0.0, 'head': 1e-1,
                   'stack': np.array([1e-1, 1e-4, 1e-1])}, default=1e-3)
  for tx in (wdax.adamw(lr, weight_decay=0.1), wdax.sgdw(lr, weight_decay=0.1),
             wdax.adamw(lr, weight_decay=0.1, coupling='corrected'),
             wdax.decoupled(0.1, lr=lr)):
    msg, = _lost(tx, params)
    assert "'body' (bfloat16, c=0.0001)" in msg
    assert "'stack' layers [1] (bfloat16, c=1e-05)" in msg
    assert 'head' not in msg and 'embed' not in msg
  # 'none' and 'schedule' decay by weight_decay itself at the peak: 0.1.
  assert _lost(wdax.adamw(lr, weight_decay=0.1, coupling='schedule'), params) == []
