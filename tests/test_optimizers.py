"""Tests for wdax.adamw, wdax.sgdw and wdax.adams.

Expected values come from optax's own optimisers (bit for bit where wdax
claims to be the same float operations), from the stored PyTorch
trajectories (replayed by ``tests/torch_replay.py``), from an independent
float64 NumPy transcription of the AdamS paper's algorithm, and from the
closed form of the decay per step under each coupling. Agreement between
jitted and eager steps is checked with ``chex.variants``.
"""

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from absl.testing import parameterized
from torch_replay import ADAM_TOL
from torch_replay import F64_TOL
from torch_replay import SGD_TOL
from torch_replay import assert_matches
from torch_replay import exact_schedule
from torch_replay import fixture
from torch_replay import hyper
from torch_replay import replay

import wdax
from wdax import masks


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


def _run(tx, params, steps, update=None):
  """``steps`` updates of ``tx``; ``update`` replaces ``tx.update`` (jitted)."""
  update = update or tx.update
  state = tx.init(params)
  for i in range(steps):
    updates, state = update(_grads(params, jnp.float32(i)), state, params)
    params = optax.apply_updates(params, updates)
  return params


SCHED = optax.warmup_cosine_decay_schedule(0.0, 1e-2, 5, 25, end_value=1e-4)
KERNEL_ONLY = {'Dense_0': {'kernel': True, 'bias': False}, 'LayerNorm_0': False}


# adamw against optax.


class AdamwIsOptaxAdamw(chex.TestCase):
  """``coupling='lr'`` is optax.adamw bit for bit, with and without jit."""

  # Every value of each factor, each pair of factors' values at least once.
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      (SCHED, None, jnp.float32),
      (SCHED, KERNEL_ONLY, jnp.bfloat16),
      (SCHED, masks.flax_default(), jnp.float32),
      (1e-2, None, jnp.bfloat16),
      (1e-2, KERNEL_ONLY, jnp.float32),
      (1e-2, masks.flax_default(), jnp.bfloat16),
  )
  def test_updates_are_equal(self, lr, mask, dtype):
    if isinstance(mask, masks.Mask):
      params = {'Dense_0': _params(dtype)['Dense_0']}
      optax_mask = {'Dense_0': {'kernel': True, 'bias': False}}
    else:
      params, optax_mask = _params(dtype), mask
    ours = wdax.adamw(lr, weight_decay=0.3, mask=mask)
    ref = optax.adamw(lr, weight_decay=0.3, mask=optax_mask)
    got = _run(ours, params, 6, self.variant(ours.update))
    want = _run(ref, params, 6, self.variant(ref.update))
    chex.assert_trees_all_equal(got, want)
    chex.assert_trees_all_equal_dtypes(got, params)

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      ('array', None, True),
      ('array', KERNEL_ONLY, False),
      ('injected', None, False),
      ('injected', KERNEL_ONLY, True),
  )
  def test_bfloat16_params_with_a_float32_rate(self, form, mask, nesterov):
    # optax computes g + wd * p in float32 here, and apply_updates rounds the
    # sum once; a bfloat16 decay term would differ by up to 1e-4 near 0.14.
    params = _params(jnp.bfloat16)
    kw = dict(mask=mask, nesterov=nesterov, b1=0.8)
    if form == 'array':
      ours = wdax.adamw(SCHED, weight_decay=jnp.float32(0.3), **kw)
      ref = optax.adamw(SCHED, weight_decay=jnp.float32(0.3), **kw)
    else:
      inject = functools.partial(
          optax.inject_hyperparams, hyperparam_dtype=jnp.float32,
          static_args=('mask',),
      )
      ours = inject(wdax.adamw)(SCHED, weight_decay=0.3, **kw)
      ref = inject(optax.adamw)(SCHED, weight_decay=0.3, **kw)
    got_u, _ = self.variant(ours.update)(
        _grads(params, 1), ours.init(params), params
    )
    want_u, _ = self.variant(ref.update)(_grads(params, 1), ref.init(params), params)
    chex.assert_trees_all_equal(got_u, want_u)
    chex.assert_trees_all_equal(
        _run(ours, params, 4, self.variant(ours.update)),
        _run(ref, params, 4, self.variant(ref.update)),
    )

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.parameters(
      dict(eps_root=1e-6),
      dict(mu_dtype=jnp.bfloat16),
      dict(nesterov=True),
      dict(b1=0.8, b2=0.99, eps=1e-6),
      dict(weight_decay=optax.linear_schedule(0.5, 0.1, 10)),
  )
  def test_every_optax_argument(self, **kw):
    params = _params()
    ours, ref = wdax.adamw(1e-2, **kw), optax.adamw(1e-2, **kw)
    chex.assert_trees_all_equal(
        _run(ours, params, 8, self.variant(ours.update)),
        _run(ref, params, 8, self.variant(ref.update)),
    )


def test_adamw_takes_optax_adamws_signature_keyword_only():
  ours = inspect.signature(wdax.adamw).parameters
  theirs = inspect.signature(optax.adamw).parameters
  assert set(theirs) <= set(ours)
  for name, p in ours.items():
    if name == 'learning_rate':
      continue
    assert p.kind is inspect.Parameter.KEYWORD_ONLY, name
    if name in theirs:
      assert p.default == theirs[name].default, name


@pytest.mark.parametrize('make', [wdax.adamw, wdax.sgdw, wdax.adams])
def test_a_second_positional_argument_is_a_type_error(make):
  # optax.adamw(1e-3, 0.9) sets b1; in wdax it must not set the weight decay.
  with pytest.raises(TypeError, match='positional'):
    make(1e-3, 0.9)


@pytest.mark.parametrize(
    'weight_decay', [1e-2, optax.linear_schedule(0.5, 0.1, 10)], ids=['number', 'schedule']
)
@pytest.mark.parametrize(
    'mask', [None, KERNEL_ONLY, masks.flax_default()], ids=['none', 'tree', 'wdax']
)
def test_adamw_state_has_optax_adamws_tree_structure(weight_decay, mask):
  params = _params()
  ours = wdax.adamw(1e-3, weight_decay=weight_decay, mask=mask)
  optax_mask = None if mask is None else KERNEL_ONLY
  ref = optax.adamw(1e-3, weight_decay=weight_decay, mask=optax_mask)
  chex.assert_trees_all_equal_structs(ours.init(params), ref.init(params))
  u, s = ours.update(_grads(params, 0), ours.init(params), params)
  v, t = ref.update(_grads(params, 0), ref.init(params), params)
  chex.assert_trees_all_equal_structs(s, t)
  chex.assert_trees_all_equal(u, v)


@pytest.mark.parametrize('direction', ['optax_to_wdax', 'wdax_to_optax'])
def test_a_checkpoint_of_one_restores_into_the_other(direction, tmp_path):
  from wdax import checkpoint

  params = _params()
  mask = masks.flax_default()
  wd = optax.linear_schedule(0.5, 0.1, 10)
  ours = wdax.adamw(SCHED, weight_decay=wd, mask=mask)
  ref = optax.adamw(SCHED, weight_decay=wd, mask=KERNEL_ONLY)
  source, target = (ref, ours) if direction == 'optax_to_wdax' else (ours, ref)
  state = source.init(params)
  p = params
  for i in range(3):
    u, state = source.update(_grads(p, i), state, p)
    p = optax.apply_updates(p, u)
  checkpoint.save(tmp_path / 'ckpt', {'params': p, 'opt_state': state})
  restored = checkpoint.restore(
      tmp_path / 'ckpt', {'params': params, 'opt_state': target.init(params)}
  )
  chex.assert_trees_all_equal(restored['opt_state'], state)
  # Resumed, the other optimiser continues exactly where the first would.
  a, _ = source.update(_grads(p, 3), state, p)
  b, _ = target.update(_grads(p, 3), restored['opt_state'], restored['params'])
  chex.assert_trees_all_equal(a, b)


@pytest.mark.parametrize('lr', [1e-2, SCHED], ids=['constant', 'schedule'])
def test_adamw_none_coupling_is_adam_then_decoupled(lr):
  params = _params()
  ours = _run(
      wdax.adamw(lr, weight_decay=0.3, coupling='none', mask=KERNEL_ONLY), params, 12
  )
  ref = _run(
      optax.chain(optax.adam(lr), wdax.decoupled(0.3, mask=KERNEL_ONLY)), params, 12
  )
  chex.assert_trees_all_equal(ours, ref)


def test_adamw_schedule_coupling_with_constant_lr_is_none_coupling():
  # With a constant lr the multiplier lr_t / peak is exactly 1.
  params = _params()
  a = _run(wdax.adamw(1e-2, weight_decay=0.3, coupling='schedule'), params, 8)
  b = _run(wdax.adamw(1e-2, weight_decay=0.3, coupling='none'), params, 8)
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
  tx = make(LINEAR, weight_decay=0.5, coupling=coupling, peak_lr=peak_lr)
  params = {'w': jnp.array([2.0, -1.0])}
  state = tx.init(params)
  peak = peak_lr or 2e-3
  for t in range(6):
    updates, state = tx.update({'w': jnp.zeros(2)}, state, params)
    lr_t = 2e-3 * (1 - t / 20)
    c = _decay_per_step(coupling, lr_t, peak, 0.5)
    np.testing.assert_allclose(updates['w'], [-2 * c, c], rtol=1e-5)


def test_corrected_applies_to_masked_leaves_only():
  tx = wdax.adamw(
      LINEAR, weight_decay=0.5, coupling='corrected', mask=masks.include('w')
  )
  params = {'w': jnp.array([2.0]), 'b': jnp.array([2.0])}
  zero = jax.tree.map(jnp.zeros_like, params)
  updates, _ = tx.update(zero, tx.init(params), params)
  np.testing.assert_allclose(updates['w'], [-2 * 0.5 * 2e-3], rtol=1e-5)
  np.testing.assert_array_equal(updates['b'], [0.0])


class Bfloat16StaysBfloat16(chex.TestCase):

  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.product(
      coupling=wdax.optimizers.COUPLINGS, name=['adamw', 'sgdw']
  )
  def test_without_retrace(self, coupling, name):
    chex.clear_trace_counter()
    make = {'adamw': wdax.adamw, 'sgdw': functools.partial(wdax.sgdw, momentum=0.9)}
    params = _params(jnp.bfloat16)
    tx = make[name](
        SCHED, weight_decay=0.1, coupling=coupling, mask=masks.include('kernel')
    )

    @self.variant
    @chex.assert_max_traces(n=1)
    def step(params, state, i):
      updates, state = tx.update(_grads(params, i), state, params)
      return optax.apply_updates(params, updates), state

    state = tx.init(params)
    for i in range(3):
      params, state = step(params, state, jnp.float32(i))
    chex.assert_trees_all_equal_dtypes(params, _params(jnp.bfloat16))
    chex.assert_trees_all_equal_dtypes(state, tx.init(_params(jnp.bfloat16)))


def test_adamw_eval_shape():
  params = _params()
  for coupling in wdax.optimizers.COUPLINGS:
    tx = wdax.adamw(SCHED, weight_decay=0.1, coupling=coupling)
    shapes = jax.eval_shape(tx.init, params)
    chex.assert_trees_all_equal_shapes_and_dtypes(shapes, tx.init(params))


# PyTorch trajectories.


def _sgdw(case):
  h = hyper(case)
  return wdax.sgdw(
      h.lr, weight_decay=h.rate, momentum=h.momentum, nesterov=h.nesterov
  )


def _adamw(case, schedule=None):
  h = hyper(case)
  kw = dict(b1=h.b1, b2=h.b2, eps=h.eps, weight_decay=h.rate)
  if case == 'adamw_sched_masked':
    return wdax.adamw(
        schedule or h.schedule, mask=masks.include('kernel'), **kw
    )
  return wdax.adamw(h.lr, **kw)


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


@pytest.mark.parametrize('case', sorted(TORCH))
def test_matches_torch(case):
  make, tol = TORCH[case]
  assert_matches(case, replay(make(case)), tol)


@pytest.mark.slow
@pytest.mark.parametrize('case', sorted(TORCH))
def test_matches_torch_float64(case):
  make, _ = TORCH[case]
  with jax.enable_x64(True):
    if case == 'adamw_sched_masked':
      tx = _adamw(case, schedule=exact_schedule(case))
    else:
      tx = make(case)
    got = replay(tx, jnp.float64)
  assert_matches(case, got, F64_TOL)


def test_torch_sgdw_differs_from_coupled_momentum_sgd():
  # Without this, matching sgdw_momentum could not tell SGDW from torch's
  # coupled momentum SGD.
  got = replay(_sgdw('sgdw_momentum'))
  coupled = fixture()['sgd_momentum_wd/kernel']
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


@pytest.mark.parametrize(
    'masked', [pytest.param(False, marks=pytest.mark.slow), True]
)
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
        lambda t: 0.05 * (1 - t.astype(jnp.float64) / 40), weight_decay=0.3,
        mask=mask,
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
  out = _run(wdax.adams(1e-2, weight_decay=0.5), params, 5)
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
  tx = wdax.adams(0.1, weight_decay=0.5)
  updates, state = tx.update({'w': jnp.zeros(2)}, tx.init(params), params)
  np.testing.assert_array_equal(updates['w'], [0.0, 0.0])
  assert isinstance(state[0], optax.ScaleByAdamState)


def test_adams_no_retrace():
  chex.clear_trace_counter()
  tx = wdax.adams(SCHED, weight_decay=0.5, mask=masks.include('kernel'))
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
    wdax.adamw(1e-3, coupling='adam')
  with pytest.raises(ValueError, match='unknown coupling'):
    wdax.sgdw(1e-3, coupling='LR')
  with pytest.raises(ValueError, match='peak_lr is used only by'):
    wdax.adamw(1e-3, peak_lr=1e-3)
  with pytest.raises(ValueError, match=r'adamw\(\.\.\.\): weight_decay .*non-negative'):
    wdax.adamw(1e-3, weight_decay=-0.1)
  with pytest.raises(ValueError, match='finite'):
    wdax.adamw(1e-3, weight_decay=float('nan'))
  with pytest.raises(ValueError, match='finite'):
    wdax.adams(1e-3, weight_decay=float('inf'))
  with pytest.raises(ValueError, match='learning_rate'):
    wdax.sgdw(-1e-3)
  with pytest.raises(ValueError, match='momentum'):
    wdax.sgdw(1e-3, momentum=-0.9)
  with pytest.raises(ValueError, match='nesterov'):
    wdax.sgdw(1e-3, nesterov=True)
  with pytest.raises(ValueError, match=r'adamw\(\.\.\.\): b2'):
    wdax.adamw(1e-3, b2=float('nan'))

  def unreadable(count):
    return 1e-3 if count < 10 else 1e-4

  for coupling in ('schedule', 'corrected'):
    with pytest.raises(ValueError, match=r'adamw\(\.\.\.\).*pass peak_lr'):
      wdax.adamw(unreadable, coupling=coupling)
  lr = lambda count: jnp.where(count < 10, 1e-3, 1e-4)  # noqa: E731
  wdax.adamw(lr, coupling='schedule', peak_lr=1e-3)  # given: fine
  wdax.adamw(unreadable, coupling='lr')  # never needs the peak
