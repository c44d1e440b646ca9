"""Tests for wdax.adamw, wdax.sgdw and wdax.adams.

Expected values come from optax's own optimisers (bit for bit where wdax
claims to be the same float operations), from the stored PyTorch
trajectories in ``tests/fixtures/torch_reference.npz`` (written by
``tests/fixtures/make_torch_fixtures.py``), from an independent float64
NumPy transcription of the AdamS paper's algorithm, and from the closed form
of the decay per step under each coupling.
"""

import functools
import pathlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdax
from wdax import masks

FIXTURE = pathlib.Path(__file__).parent / 'fixtures' / 'torch_reference.npz'

# float32 replays of float64 torch runs (30 steps): the same bounds as
# tests/test_torch_reference.py, whose comment explains them.
SGD_TOL = {'rtol': 1e-5, 'atol': 1e-6}
ADAM_TOL = {'rtol': 1e-5, 'atol': 1e-5}
F64_TOL = {'rtol': 1e-10, 'atol': 1e-12}


def _params(dtype=jnp.float32):
  k = jax.random.split(jax.random.key(0), 3)
  return {
      'Dense_0': {
          'kernel': jax.random.normal(k[0], (4, 3), dtype),
          'bias': jax.random.normal(k[1], (3,), dtype),
      },
      'LayerNorm_0': {'scale': 1 + jax.random.normal(k[2], (3,), dtype)},
  }


def _grads(params, i):
  return jax.tree.map(
      lambda p: jnp.sin(3 * p.astype(jnp.float32) + i).astype(p.dtype), params
  )


def _run(tx, params, steps):
  state = tx.init(params)
  for i in range(steps):
    updates, state = tx.update(_grads(params, i), state, params)
    params = optax.apply_updates(params, updates)
  return params


def _run_jit(tx, params, steps):
  @jax.jit
  def step(params, state, i):
    updates, state = tx.update(_grads(params, i), state, params)
    return optax.apply_updates(params, updates), state

  state = tx.init(params)
  for i in range(steps):
    params, state = step(params, state, jnp.float32(i))
  return params


SCHED = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 25, end_value=1e-4)
KERNEL_ONLY = {'Dense_0': {'kernel': True, 'bias': False}, 'LayerNorm_0': False}


# adamw against optax.


@pytest.mark.parametrize('lr', [1e-2, SCHED], ids=['constant', 'schedule'])
@pytest.mark.parametrize('mask', [None, KERNEL_ONLY], ids=['all', 'kernel'])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_adamw_lr_coupling_is_optax_adamw_bit_for_bit(lr, mask, dtype):
  params = _params(dtype)
  ours = _run_jit(wdax.adamw(lr, 0.3, mask=mask), params, 10)
  ref = _run_jit(optax.adamw(lr, weight_decay=0.3, mask=mask), params, 10)
  chex.assert_trees_all_equal(ours, ref)
  chex.assert_trees_all_equal_dtypes(ours, params)


def test_adamw_lr_coupling_is_optax_adamw_bit_for_bit_eagerly():
  params = _params()
  ours = _run(wdax.adamw(SCHED, 0.3, mask=KERNEL_ONLY), params, 4)
  ref = _run(optax.adamw(SCHED, weight_decay=0.3, mask=KERNEL_ONLY), params, 4)
  chex.assert_trees_all_equal(ours, ref)


def test_adamw_lr_coupling_with_scheduled_decay_is_optax_adamw():
  wd = optax.linear_schedule(0.5, 0.1, 10)
  params = _params()
  ours = _run(wdax.adamw(1e-2, wd, b1=0.8, b2=0.99, eps=1e-6), params, 12)
  ref = _run(optax.adamw(1e-2, b1=0.8, b2=0.99, eps=1e-6, weight_decay=wd), params, 12)
  chex.assert_trees_all_equal(ours, ref)


@pytest.mark.parametrize('lr', [1e-2, SCHED], ids=['constant', 'schedule'])
def test_adamw_none_coupling_is_adam_then_decoupled(lr):
  params = _params()
  ours = _run(wdax.adamw(lr, 0.3, coupling='none', mask=KERNEL_ONLY), params, 12)
  ref = _run(
      optax.chain(optax.adam(lr), wdax.decoupled(0.3, mask=KERNEL_ONLY)), params, 12
  )
  chex.assert_trees_all_equal(ours, ref)


def test_adamw_schedule_coupling_with_constant_lr_is_none_coupling():
  # With a constant lr the multiplier lr_t / peak is exactly 1.
  params = _params()
  a = _run(wdax.adamw(1e-2, 0.3, coupling='schedule'), params, 8)
  b = _run(wdax.adamw(1e-2, 0.3, coupling='none'), params, 8)
  chex.assert_trees_all_equal(a, b)


LINEAR = optax.linear_schedule(2e-3, 0.0, 20)


def _decay_per_step(coupling, lr_t, peak, wd):
  return {
      'lr': lr_t * wd,
      'schedule': wd * lr_t / peak,
      'none': wd,
      'corrected': wd * lr_t**2 / peak,
  }[coupling]


@pytest.mark.parametrize('make', [wdax.adamw, functools.partial(wdax.sgdw, momentum=0.9)],
                         ids=['adamw', 'sgdw'])
@pytest.mark.parametrize(
    'coupling, peak_lr',
    [(c, None) for c in wdax.optimizers.COUPLINGS]
    + [('schedule', 4e-3), ('corrected', 4e-3)],
)
def test_coupling_decay_per_step(make, coupling, peak_lr):
  # Zero gradients: Adam's and SGD's own steps are exactly 0, so the update
  # is -c_t * theta and c_t can be read off and compared with its closed form.
  tx = make(LINEAR, 0.5, coupling=coupling, peak_lr=peak_lr)
  params = {'w': jnp.array([2.0, -1.0])}
  state = tx.init(params)
  peak = peak_lr or 2e-3
  for t in range(6):
    updates, state = tx.update({'w': jnp.zeros(2)}, state, params)
    lr_t = 2e-3 * (1 - t / 20)
    c = _decay_per_step(coupling, lr_t, peak, 0.5)
    np.testing.assert_allclose(updates['w'], [-2 * c, c], rtol=1e-5)


def test_corrected_applies_to_masked_leaves_only():
  tx = wdax.adamw(LINEAR, 0.5, coupling='corrected', mask=masks.include('w'))
  params = {'w': jnp.array([2.0]), 'b': jnp.array([2.0])}
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], [-2 * 0.5 * 2e-3], rtol=1e-5)
  np.testing.assert_array_equal(updates['b'], [0.0])


@pytest.mark.parametrize('coupling', wdax.optimizers.COUPLINGS)
@pytest.mark.parametrize('make', [wdax.adamw, functools.partial(wdax.sgdw, momentum=0.9)],
                         ids=['adamw', 'sgdw'])
def test_bfloat16_stays_bfloat16_without_retrace(coupling, make):
  chex.clear_trace_counter()
  params = _params(jnp.bfloat16)
  tx = make(SCHED, 0.1, coupling=coupling, mask=masks.include('kernel'))
  state = tx.init(params)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, i):
    updates, state = tx.update(_grads(params, i), state, params)
    return optax.apply_updates(params, updates), state

  eager, eager_state = params, state
  for i in range(3):
    params, state = step(params, state, jnp.float32(i))
    updates, eager_state = tx.update(_grads(eager, jnp.float32(i)), eager_state, eager)
    eager = optax.apply_updates(eager, updates)
  chex.assert_trees_all_equal_dtypes(params, _params(jnp.bfloat16))
  chex.assert_trees_all_close(params, eager, rtol=1e-2, atol=1e-2)


def test_adamw_eval_shape():
  params = _params()
  for coupling in wdax.optimizers.COUPLINGS:
    tx = wdax.adamw(SCHED, 0.1, coupling=coupling)
    shapes = jax.eval_shape(tx.init, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(shapes, tx.init(params))


# PyTorch trajectories.


@functools.cache
def _fixture():
  with np.load(FIXTURE, allow_pickle=False) as f:
    return {k: f[k] for k in f.files}


def _loss(params, x, y):
  z = x @ params['kernel'] + params['bias'][None, :]
  return jnp.mean((jnp.tanh(z) - y) ** 2)


def _replay(tx, dtype=jnp.float32):
  fx = _fixture()
  x, y = jnp.asarray(fx['X'], dtype), jnp.asarray(fx['Y'], dtype)
  params = {
      'kernel': jnp.asarray(fx['kernel0'], dtype),
      'bias': jnp.asarray(fx['bias0'], dtype),
  }

  def step(carry, _):
    params, state = carry
    updates, state = tx.update(jax.grad(_loss)(params, x, y), state, params)
    params = optax.apply_updates(params, updates)
    return (params, state), params

  _, traj = jax.lax.scan(step, (params, tx.init(params)), length=int(fx['steps']))
  return {
      k: np.concatenate([np.asarray(params[k])[None], np.asarray(v)])
      for k, v in traj.items()
  }


def _hp(case, name):
  return float(_fixture()[f'{case}/{name}'])


def _torch_schedule(case):
  return optax.warmup_cosine_decay_schedule(
      0.0, _hp(case, 'peak_lr'), int(_hp(case, 'warmup_steps')),
      int(_hp(case, 'decay_steps')),
  )


def _sgdw(case):
  return wdax.sgdw(
      float(_fixture()[f'{case}/lr'][0]),
      _hp(case, 'weight_decay'),
      momentum=_hp(case, 'momentum'),
      nesterov=bool(_fixture()[f'{case}/nesterov']),
  )


def _adamw(case):
  kw = dict(b1=_hp(case, 'b1'), b2=_hp(case, 'b2'), eps=_hp(case, 'eps'))
  if case == 'adamw_sched_masked':
    return wdax.adamw(
        _torch_schedule(case), _hp(case, 'weight_decay'),
        mask=masks.include('kernel'), **kw,
    )
  return wdax.adamw(
      float(_fixture()[f'{case}/lr'][0]), _hp(case, 'weight_decay'), **kw
  )


# The torch case each wdax optimiser must reproduce. Torch's SGD with
# weight_decay is coupled L2, which equals SGDW only without momentum; the
# momentum cases are the fixture script's hand-written SGDW loop.
TORCH = {
    'sgd_wd': (_sgdw, SGD_TOL),
    'sgdw_momentum': (_sgdw, SGD_TOL),
    'sgdw_nesterov': (_sgdw, SGD_TOL),
    'adamw': (_adamw, ADAM_TOL),
    'adamw_sched_masked': (_adamw, ADAM_TOL),
}


def _assert_close(case, got, tol):
  fx = _fixture()
  for name in ('kernel', 'bias'):
    want = fx[f'{case}/{name}']
    for t in range(want.shape[0]):
      np.testing.assert_allclose(
          got[name][t], want[t], **tol, err_msg=f'{case}: {name} after {t} steps'
      )


@pytest.mark.parametrize('case', sorted(TORCH))
def test_matches_torch(case):
  make, tol = TORCH[case]
  _assert_close(case, _replay(make(case)), tol)


@pytest.mark.parametrize('case', sorted(TORCH))
def test_matches_torch_float64(case):
  make, _ = TORCH[case]
  with jax.enable_x64(True):
    tx = make(case)
    if case == 'adamw_sched_masked':
      # optax schedules compute in float32 even under x64; use torch's
      # recorded lr per step instead, indexed by the step count.
      lrs = jnp.asarray(_fixture()[f'{case}/lr'], jnp.float64)
      tx = wdax.adamw(
          lambda count: lrs[count], _hp(case, 'weight_decay'),
          b1=_hp(case, 'b1'), b2=_hp(case, 'b2'), eps=_hp(case, 'eps'),
          mask=masks.include('kernel'),
      )
    got = _replay(tx, jnp.float64)
  _assert_close(case, got, F64_TOL)


def test_torch_sgdw_differs_from_coupled_momentum_sgd():
  # Without this, matching sgdw_momentum could not tell SGDW from torch's
  # coupled momentum SGD.
  got = _replay(_sgdw('sgdw_momentum'))
  coupled = _fixture()['sgd_momentum_wd/kernel']
  assert np.max(np.abs(got['kernel'] - coupled)) > 1000 * SGD_TOL['atol']


# adams.


def _adams_reference(params, grads_fn, steps, lr, wd, b1, b2, eps, decayed):
  """AdamS (Algorithm 2 of arXiv:2011.11152) in float64 NumPy, leaf lists."""
  theta = [np.asarray(p, np.float64) for p in params]
  m = [np.zeros_like(p) for p in theta]
  v = [np.zeros_like(p) for p in theta]
  for t in range(1, steps + 1):
    g = grads_fn(theta, t - 1)
    m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g)]
    v = [b2 * vi + (1 - b2) * gi**2 for vi, gi in zip(v, g)]
    v_hat = [vi / (1 - b2**t) for vi in v]
    v_bar = sum(x.sum() for x in v_hat) / sum(x.size for x in v_hat)
    lr_t = lr(t - 1) if callable(lr) else lr
    theta = [
        p - lr_t * (mi / (1 - b1**t)) / (np.sqrt(vh) + eps)
        - (lr_t * wd / np.sqrt(v_bar) * p if on else 0.0)
        for p, mi, vh, on in zip(theta, m, v_hat, decayed)
    ]
  return theta


def _np_grads(theta, i):
  # Very different gradient scales per leaf: a per-leaf mean of v_hat would
  # give a visibly different decay from the whole-tree mean.
  scales = [1.0, 30.0, 0.01]
  return [s * np.sin(3 * p + i) for s, p in zip(scales, theta)]


@pytest.mark.parametrize('masked', [False, True])
def test_adams_matches_the_paper_algorithm(masked):
  leaves = jax.tree.leaves(_params())
  params = {'a': leaves[0], 'b': leaves[1], 'c': leaves[2]}
  mask = {'a': True, 'b': False, 'c': True} if masked else None
  decayed = [True, not masked, True]
  lr = lambda t: 0.05 * (1 - t / 40)  # noqa: E731
  want = _adams_reference(
      list(params.values()), _np_grads, 15, lr, 0.3, 0.9, 0.999, 1e-8, decayed
  )
  with jax.enable_x64(True):
    p64 = jax.tree.map(lambda x: jnp.asarray(x, jnp.float64), params)
    tx = wdax.adams(
        lambda t: 0.05 * (1 - t.astype(jnp.float64) / 40), 0.3, mask=mask
    )
    state = tx.init(p64)
    for i in range(15):
      g = dict(zip('abc', _np_grads([np.asarray(x) for x in p64.values()], i)))
      updates, state = tx.update(g, state, p64)
      p64 = optax.apply_updates(p64, updates)
    for got, w in zip(p64.values(), want):
      np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-14)
  # A per-leaf mean would have missed by far more than that tolerance.
  per_leaf = _adams_reference_per_leaf(list(params.values()), lr, decayed)
  assert max(np.max(np.abs(a - b)) for a, b in zip(per_leaf, want)) > 1e-3


def _adams_reference_per_leaf(params, lr, decayed):
  theta = [np.asarray(p, np.float64) for p in params]
  m = [np.zeros_like(p) for p in theta]
  v = [np.zeros_like(p) for p in theta]
  for t in range(1, 16):
    g = _np_grads(theta, t - 1)
    m = [0.9 * mi + 0.1 * gi for mi, gi in zip(m, g)]
    v = [0.999 * vi + 0.001 * gi**2 for vi, gi in zip(v, g)]
    v_hat = [vi / (1 - 0.999**t) for vi in v]
    theta = [
        p - lr(t - 1) * (mi / (1 - 0.9**t)) / (np.sqrt(vh) + 1e-8)
        - (lr(t - 1) * 0.3 / np.sqrt(vh.mean()) * p if on else 0.0)
        for p, mi, vh, on in zip(theta, m, v_hat, decayed)
    ]
  return theta


@pytest.mark.parametrize('dtype, tol', [(jnp.float32, 1e-5), (jnp.bfloat16, 5e-2)])
def test_adams_float32_and_bfloat16(dtype, tol):
  params = jax.tree.map(lambda x: x.astype(dtype), _params())
  out = _run(wdax.adams(1e-2, 0.5), params, 5)
  chex.assert_trees_all_equal_dtypes(out, params)
  leaves = [np.asarray(x, np.float64) for x in jax.tree.leaves(params)]
  want = _adams_reference(
      leaves,
      lambda th, i: [np.sin(3 * p + i) for p in th],
      5, 1e-2, 0.5, 0.9, 0.999, 1e-8, [True] * 3,
  )
  for got, w in zip(jax.tree.leaves(out), want):
    np.testing.assert_allclose(np.asarray(got, np.float64), w, rtol=tol, atol=tol)


def test_adams_zero_gradients_do_not_decay_or_nan():
  params = {'w': jnp.array([1.0, -2.0])}
  tx = wdax.adams(0.1, 0.5)
  updates, state = tx.update({'w': jnp.zeros(2)}, tx.init(params), params)
  np.testing.assert_array_equal(updates['w'], [0.0, 0.0])
  assert isinstance(state[0], optax.ScaleByAdamState)


def test_adams_no_retrace():
  chex.clear_trace_counter()
  tx = wdax.adams(SCHED, 0.5, mask=masks.include('kernel'))
  params = _params()
  state = tx.init(params)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state, i):
    updates, state = tx.update(_grads(params, i), state, params)
    return optax.apply_updates(params, updates), state

  for i in range(4):
    params, state = step(params, state, jnp.float32(i))
  chex.assert_tree_all_finite(params)


# Errors.


def test_errors():
  with pytest.raises(ValueError, match=r"unknown coupling 'adam'; valid couplings are 'lr', 'schedule', 'none', 'corrected'"):
    wdax.adamw(1e-3, 0.1, coupling='adam')
  with pytest.raises(ValueError, match='unknown coupling'):
    wdax.sgdw(1e-3, 0.1, coupling='LR')
  with pytest.raises(ValueError, match='peak_lr is used only by'):
    wdax.adamw(1e-3, 0.1, peak_lr=1e-3)
  with pytest.raises(ValueError, match=r'adamw\(\.\.\.\): weight_decay .*non-negative'):
    wdax.adamw(1e-3, -0.1)
  with pytest.raises(ValueError, match='finite'):
    wdax.adamw(1e-3, float('nan'))
  with pytest.raises(ValueError, match='finite'):
    wdax.adams(1e-3, float('inf'))
  with pytest.raises(ValueError, match='learning_rate'):
    wdax.sgdw(-1e-3, 0.1)
  with pytest.raises(ValueError, match='momentum'):
    wdax.sgdw(1e-3, 0.1, momentum=-0.9)
  with pytest.raises(ValueError, match='nesterov'):
    wdax.sgdw(1e-3, 0.1, nesterov=True)

  def unreadable(count):
    return 1e-3 if count < 10 else 1e-4

  for coupling in ('schedule', 'corrected'):
    with pytest.raises(ValueError, match=r'adamw\(\.\.\.\).*pass peak_lr'):
      wdax.adamw(unreadable, 0.1, coupling=coupling)
  lr = lambda count: jnp.where(count < 10, 1e-3, 1e-4)  # noqa: E731
  wdax.adamw(lr, 0.1, coupling='schedule', peak_lr=1e-3)  # given: fine
  wdax.adamw(unreadable, 0.1, coupling='lr')  # never needs the peak
