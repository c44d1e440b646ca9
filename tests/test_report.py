"""Tests for wdax.report: wdax.describe and its Report."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from flax import nnx

import wdax
from wdax import masks


class _Mlp(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm()(nn.relu(nn.Dense(8)(x)))
    return nn.Dense(2)(x)


def _linen_params():
  return _Mlp().init(jax.random.key(0), jnp.ones((1, 3)))['params']


def test_rows_totals_and_share_linen():
  report = wdax.describe(_linen_params(), rate=1e-2, mask=masks.flax_default())
  rows = {r.path: r for r in report.rows}
  assert set(rows) == {
      'Dense_0/bias', 'Dense_0/kernel', 'Dense_1/bias', 'Dense_1/kernel',
      'LayerNorm_0/bias', 'LayerNorm_0/scale',
  }
  assert rows['Dense_0/kernel'].shape == (3, 8) and rows['Dense_0/kernel'].size == 24
  assert rows['Dense_0/kernel'].decayed and rows['Dense_0/kernel'].rate == '0.01'
  assert not rows['LayerNorm_0/scale'].decayed and rows['LayerNorm_0/scale'].rate == '0'
  # 3*8 + 8*2 decayed, out of 24 + 8 + 16 + 2 + 8 + 8.
  assert report.decayed == 40 and report.total == 66
  assert report.share == pytest.approx(40 / 66)
  text = str(report)
  assert text.splitlines()[0].split() == ['path', 'shape', 'dtype', 'size', 'decayed', 'rate']
  assert text.splitlines()[-1] == 'decayed: 40 of 66 parameters (60.6%)'
  assert len(text.splitlines()) == 6 + 3


def test_nnx_state_and_per_group_rates():
  model = nnx.Sequential(
      nnx.Embed(10, 4, rngs=nnx.Rngs(0)), nnx.Linear(4, 4, rngs=nnx.Rngs(1))
  )
  state = nnx.state(model, nnx.Param)
  sched = optax.linear_schedule(0.5, 0.0, 10)
  report = wdax.describe(state, rate=wdax.rates({'embedding': 1e-5, 'kernel': sched}))
  rows = {r.path: r for r in report.rows}
  assert rows['layers/0/embedding'].rate == '1e-05'
  assert rows['layers/1/kernel'].rate == 'schedule (0.5 at step 0)'
  assert not rows['layers/1/bias'].decayed  # default rate 0
  assert report.decayed == 40 + 16


def test_mask_only_and_int_leaves():
  params = {'w': jnp.ones((2, 2)), 'n': jnp.zeros((3,), jnp.int32)}
  report = wdax.describe(params)
  rows = {r.path: r for r in report.rows}
  assert rows['w'].decayed and rows['w'].rate == '-'
  assert not rows['n'].decayed and rows['n'].dtype == 'int32'


def test_bad_inputs_raise():
  params = _linen_params()
  with pytest.raises(ValueError, match="'kernal' matches no parameter"):
    wdax.describe(params, mask=masks.include('kernal'))
  with pytest.raises(ValueError, match='rate'):
    wdax.describe(params, rate=-1.0)


def test_renders_with_rich():
  rich = pytest.importorskip('rich.console')  # rich ships with flax
  console = rich.Console(file=io.StringIO(), width=120)
  console.print(wdax.describe(_linen_params(), rate=0.1, mask=masks.flax_default()))
  out = console.file.getvalue()
  assert 'Dense_0/kernel' in out and 'decayed: 40 of 66' in out


def test_per_group_lr_shows_each_groups_decay_per_step_and_marks_frozen():
  params = {'embed': jnp.ones(3), 'body': jnp.ones(2), 'head': jnp.ones(2), 'stack': jnp.ones((2, 2))}
  sched = optax.linear_schedule(2e-2, 0.0, 10)  # peak 2e-2 at step 0
  lr = wdax.rates({'embed': 0.0, 'head': sched, 'stack': np.array([1e-3, 0.0])}, default=1e-3)
  report = wdax.describe(params, rate=0.5, lr=lr, coupling='corrected')
  rows = {r.path: r for r in report.rows}
  assert rows['embed'].frozen and not rows['embed'].decayed and rows['embed'].lr == '0 (frozen)'
  assert rows['body'].per_step == f'{0.5 * 1e-3:.3g}'  # lambda lr^2 / peak, peak = lr
  assert rows['head'].per_step == f'{0.5 * 2e-2:.3g}'
  assert rows['stack'].per_step == f'per layer {0.5 * 1e-3:.3g} .. 0'
  assert 'frozen: 3' in str(report) and 'decay/step' in str(report)


def test_step_decays_at_start_and_at_peak():
  params = {'a': jnp.ones(2)}
  warm = optax.linear_schedule(0.0, 1e-2, 10)  # 0 at step 0, peak 1e-2
  (c,) = wdax.report.step_decays(params, rate=0.1, lr=warm)
  assert c.start == 0.0 and c.peak == pytest.approx(1e-3)
  (c,) = wdax.report.step_decays(params, rate=0.1, lr=warm, coupling='schedule')
  assert c.start == 0.0 and c.peak == pytest.approx(0.1)
