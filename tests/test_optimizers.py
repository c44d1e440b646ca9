"""Tests for wdax.adamw and wdax.sgdw against optax, and the optimisers' errors.

Expected values come from optax's own optimisers (bit for bit where wdax
claims to be the same float operations) and from the closed form of the decay
per step under each coupling. Agreement between jitted and eager steps is
checked with ``chex.variants``. The PyTorch trajectories are replayed in
``test_optimizers_torch.py``, and AdamS is checked in
``test_optimizers_adams.py``.
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
from support.optimizer_runs import KERNEL_ONLY
from support.optimizer_runs import SCHED
from support.optimizer_runs import grads as _grads
from support.optimizer_runs import params as _params
from support.optimizer_runs import run as _run

import wdax
from wdax import masks

# adamw against optax.


class AdamwIsOptaxAdamw(chex.TestCase):
  """``coupling='lr'`` is optax.adamw bit for bit, with and without jit."""

  # Every value of each factor, each pair of factors' values at least once.
  @chex.variants(with_jit=True, without_jit=True)
  @parameterized.named_parameters(
      ('schedule_no_mask_f32', SCHED, None, jnp.float32),
      ('schedule_kernels_bf16', SCHED, KERNEL_ONLY, jnp.bfloat16),
      ('schedule_flax_default_f32', SCHED, masks.flax_default(), jnp.float32),
      ('constant_no_mask_bf16', 1e-2, None, jnp.bfloat16),
      ('constant_kernels_f32', 1e-2, KERNEL_ONLY, jnp.float32),
      ('constant_flax_default_bf16', 1e-2, masks.flax_default(), jnp.bfloat16),
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
  @parameterized.named_parameters(
      dict(testcase_name='eps_root', eps_root=1e-6),
      dict(testcase_name='mu_dtype_bf16', mu_dtype=jnp.bfloat16),
      dict(testcase_name='nesterov', nesterov=True),
      dict(testcase_name='betas_and_eps', b1=0.8, b2=0.99, eps=1e-6),
      dict(testcase_name='scheduled_decay', weight_decay=optax.linear_schedule(0.5, 0.1, 10)),
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
