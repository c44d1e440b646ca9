"""optax 0.2.8's MultiSteps and apply_if_finite tests, re-expressed with wdax.

From ``optax/transforms/_accumulation_test.py`` and
``optax/transforms/_conditionality_test.py``: the inner optimiser is wdax's
(``wdax.sgdw``, ``wdax.adamw``) or carries a wdax decay (``wdax.l2`` in place
of ``add_decayed_weights``). Where the decay changes optax's expected numbers
they are derived again by hand, in the comments.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdax

# optax's own cases, re-expressed: the full suite runs them, the fast loop not.
pytestmark = pytest.mark.slow


class _Loss(flax.linen.Module):

  @flax.linen.compact
  def __call__(self, x, dtype=jnp.float32, param_dtype=jnp.float32):
    return jnp.sum(flax.linen.Dense(10, dtype=dtype, param_dtype=param_dtype)(x) ** 2)


def test_multi_steps():
  """_accumulation_test.py::test_multi_steps, the decay as wdax.l2."""
  k_steps = 4
  data = jnp.ones([32, 7])
  loss = _Loss()
  params = loss.init({'params': jax.random.key(0)}, data)['params']

  def loss_apply(params, data):
    return loss.apply({'params': params}, data)

  ms_opt = optax.MultiSteps(
      optax.chain(optax.scale_by_adam(), wdax.l2(1e-2), optax.scale(-1e-4)), k_steps
  )
  opt_init, opt_update = ms_opt.gradient_transformation()

  @jax.jit
  def train_step(data, opt_state, params):
    grad = jax.grad(loss_apply)(params, data)
    return opt_update(grad, opt_state, params)

  opt_state = opt_init(params)
  prev_loss = loss_apply(params, data)
  for idx in range(5 * k_steps):
    updates, opt_state = train_step(data, opt_state, params)
    new_params = optax.apply_updates(params, updates)
    new_loss = loss_apply(new_params, data)
    if idx % k_steps < k_steps - 1:
      jax.tree.map(np.testing.assert_array_equal, new_params, params)
      np.testing.assert_equal(new_loss, prev_loss)
      assert not ms_opt.has_updated(opt_state)
    else:
      np.testing.assert_array_less(new_loss, prev_loss)
      prev_loss = new_loss
      assert ms_opt.has_updated(opt_state)
    params = new_params


def test_multi_steps_every_k_schedule():
  """_accumulation_test.py::test_multi_steps_every_k_schedule, with wdax.sgdw."""
  ms_opt = optax.MultiSteps(
      wdax.sgdw(1e-4, weight_decay=0.1), lambda step: jnp.where(step < 2, 1, 3)
  )
  opt_init, opt_update = ms_opt.gradient_transformation()
  params = {'a': jnp.zeros([])}
  opt_state = opt_init(params)
  grad = {'a': jnp.zeros([])}
  assert not ms_opt.has_updated(opt_state)
  for _ in range(2):
    _, opt_state = opt_update(grad, opt_state, params)
    assert ms_opt.has_updated(opt_state)
  for _ in range(5):
    for _ in range(2):
      _, opt_state = opt_update(grad, opt_state, params)
      assert not ms_opt.has_updated(opt_state)
    _, opt_state = opt_update(grad, opt_state, params)
    assert ms_opt.has_updated(opt_state)


def test_multi_steps_scan_dtype_stability():
  """_accumulation_test.py::test_multi_steps_scan_dtype_stability, wdax.sgdw."""
  ms_opt = optax.MultiSteps(
      wdax.sgdw(1e-4, weight_decay=0.1), 2, accumulator_dtype=jnp.float32
  )
  opt_init, opt_update = ms_opt.gradient_transformation()
  params = {'a': jnp.zeros([], dtype=jnp.bfloat16)}

  def train_step(state, _):
    grad = {'a': jnp.ones([], dtype=jnp.bfloat16)}
    updates, opt_state = opt_update(grad, state, params)
    return opt_state, updates

  final_state, _ = jax.lax.scan(train_step, opt_init(params), jnp.arange(4))
  assert final_state.acc_grads['a'].dtype == jnp.float32


def test_multi_steps_zero_nans():
  """_accumulation_test.py::test_multi_steps_zero_nans, with wdax.sgdw.

  optax only checks that the update runs (its issue 828); here the numbers
  are checked too. A NaN gradient makes the accumulated mean NaN, zero_nans
  turns it into 0 and records it, and what is left of the step is the
  decoupled decay alone: -lr * weight_decay * a = -1e-4 * 0.1 * 2 = -2e-5.
  """
  ms_opt = optax.MultiSteps(
      optax.chain(optax.zero_nans(), wdax.sgdw(1e-4, weight_decay=0.1)),
      every_k_schedule=2,
  )
  opt_init, opt_update = ms_opt.gradient_transformation()
  params = {'a': jnp.asarray(2.0)}
  updates, opt_state = opt_update({'a': jnp.asarray(jnp.nan)}, opt_init(params), params)
  np.testing.assert_array_equal(updates['a'], 0.0)
  assert not ms_opt.has_updated(opt_state)
  updates, opt_state = opt_update({'a': jnp.asarray(1.0)}, opt_state, params)
  assert ms_opt.has_updated(opt_state)
  assert bool(opt_state.inner_opt_state[0].found_nan['a'])
  np.testing.assert_allclose(updates['a'], -2e-5, rtol=1e-6)


def test_multi_steps_computes_mean():
  """_accumulation_test.py::test_multi_steps_computes_mean, with a wdax decay."""
  # The params are 0, so the decay adds 0 and optax's mean 2.5 stands.
  ms_opt = optax.MultiSteps(
      optax.chain(optax.scale(1.0), wdax.decoupled(0.5)), 4, use_grad_mean=True
  )
  opt_init, opt_update = ms_opt.gradient_transformation()
  params = {'a': jnp.zeros([])}
  opt_state = opt_init(params)
  grads = [{'a': jnp.ones([]) * i} for i in [1, 2, 3, 4]]
  assert not ms_opt.has_updated(opt_state)
  for grad in grads[:-1]:
    _, opt_state = opt_update(grad, opt_state, params)
    assert not ms_opt.has_updated(opt_state)
  new_params, opt_state = opt_update(grads[-1], opt_state, params)
  assert ms_opt.has_updated(opt_state)
  np.testing.assert_array_equal(new_params['a'], 2.5)


def test_multi_steps_skip_not_finite():
  """_accumulation_test.py::test_multi_steps_skip_not_finite, wdax.sgdw(1.0, wd=0.5)."""
  ms_opt = optax.MultiSteps(
      wdax.sgdw(1.0, weight_decay=0.5), 2,
      should_skip_update_fn=optax.skip_not_finite,
  )
  opt_init, opt_update = ms_opt.gradient_transformation()
  opt_update = jax.jit(opt_update)
  params = {'a': jnp.zeros([])}
  opt_state = jax.jit(opt_init)(params)
  # Two good mini-steps: mean gradient 1 at a = 0, decay of 0: a = -1.
  for mini_step in (1, 0):
    updates, opt_state = opt_update({'a': jnp.ones([])}, opt_state, params)
    assert int(opt_state.mini_step) == mini_step
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params['a'], -1.0)
  for bad in (jnp.array(float('inf')), jnp.full([], float('nan'))):
    updates, opt_state = opt_update({'a': bad}, opt_state, params)
    assert int(opt_state.mini_step) == 0  # skipped
    params = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(params['a'], -1.0)
  # Two good ones more, at a = -1: a - lr * (1 + 0.5 * a) = -1 - 0.5 = -1.5
  # (optax's plain SGD gave -2).
  for mini_step in (1, 0):
    updates, opt_state = opt_update({'a': jnp.ones([])}, opt_state, params)
    assert int(opt_state.mini_step) == mini_step
    params = optax.apply_updates(params, updates)
  np.testing.assert_array_equal(params['a'], -1.5)


@pytest.mark.parametrize('mu_dtype', [None, jnp.float32], ids=['adamw', 'adamw_mu_f32'])
def test_multi_steps_mixed_precision(mu_dtype):
  """_accumulation_test.py::test_multi_steps_mixed_precision, 2 cases, wdax.adamw."""
  k_steps = 4
  data = jnp.ones([32, 7])
  loss = _Loss()

  def loss_apply(params, data):
    return loss.apply({'params': params}, data)

  opt = wdax.adamw(0.1, mu_dtype=mu_dtype)
  ms_init, ms_update = optax.MultiSteps(opt, k_steps).gradient_transformation()

  def train_step(data, opt_state, params, update_fn, upd_dtype):
    grad = jax.grad(loss_apply)(params, data)
    grad = jax.tree.map(lambda x: x.astype(upd_dtype), grad)  # varying dtype
    return update_fn(grad, opt_state, params)

  def dtypes(tree):
    return jax.tree.map(lambda x: x.dtype, tree)

  for upd_dtype in (jnp.float32, jnp.float16, jnp.bfloat16):
    for param_dtype in (jnp.float32, jnp.float16, jnp.bfloat16):
      data = data.astype(param_dtype)
      params = loss.init({'params': jax.random.key(0)}, data, param_dtype=param_dtype)[
          'params'
      ]
      opt_state, ms_state = opt.init(params), ms_init(params)
      for _ in range(k_steps + 1):
        updates, opt_state = train_step(data, opt_state, params, opt.update, upd_dtype)
        ms_updates, ms_state = train_step(data, ms_state, params, ms_update, upd_dtype)
        assert dtypes(updates) == dtypes(ms_updates)
        new_params = optax.apply_updates(params, ms_updates)
        assert dtypes(new_params) == dtypes(params)
        params = new_params


# optax/transforms/_conditionality_test.py


def _build_sgd_extra_args():
  def update_fn(grads, state, params=None, *, foo=None, **extra_args):
    del extra_args, foo, params
    return grads, state

  t = optax.GradientTransformationExtraArgs(lambda params: {'foo': 1}, update_fn)
  return optax.chain(wdax.l2(0.5), optax.sgd(1.0), t)


_BUILDERS = {
    'sgdw': lambda: wdax.sgdw(1.0, weight_decay=0.5),
    'stateful_sgdw': lambda: wdax.sgdw(1.0, weight_decay=0.5, momentum=0.0),
    'l2_sgd_extra_args': _build_sgd_extra_args,
}


@pytest.mark.parametrize('name', sorted(_BUILDERS))
def test_apply_if_finite(name):
  """_conditionality_test.py::test_apply_if_finite, 3 cases, a wdax decay of 0.5.

  For SGD with lr 1 and decay 0.5 (decoupled or L2, the same for plain SGD)
  from p = 0 with gradient 1: p = -1; then p - (1 + 0.5 p) = -1.5 (optax's
  plain SGD: -2).
  """
  one, nan = jnp.array(1.0), jnp.array(jnp.nan)
  params = jnp.array(0.0)
  opt = optax.apply_if_finite(_BUILDERS[name](), 2)
  state = opt.init(params)
  grads_fn = jax.grad(jax.jit(lambda p, x: p * x))
  updates, state = opt.update(grads_fn(params, one), state, params)
  params = optax.apply_updates(params, updates)
  assert float(params) == -1.0 and bool(state.last_finite)
  for step in range(2):
    updates, state = opt.update(grads_fn(params, nan), state, params)
    params = optax.apply_updates(params, updates)
    assert float(params) == -1.0 and not bool(state.last_finite)
    assert int(state.notfinite_count) == step + 1
  updates, state = opt.update(grads_fn(params, one), state, params)
  params = optax.apply_updates(params, updates)
  assert float(params) == -1.5 and bool(state.last_finite)
  for step in range(2):
    updates, state = opt.update(grads_fn(params, nan), state, params)
    params = optax.apply_updates(params, updates)
    assert float(params) == -1.5 and not bool(state.last_finite)
    assert int(state.notfinite_count) == step + 1
  updates, state = opt.update(grads_fn(params, nan), state, params)
  params = optax.apply_updates(params, updates)
  assert bool(jnp.isnan(params))
  assert int(state.total_notfinite) == 5


def test_apply_if_finite_pmap():
  """_conditionality_test.py::test_apply_if_finite_pmap, with wdax.sgdw."""
  half, two = jnp.ones([1]) / 2.0, jnp.ones([1]) * 2.0  # arctanh(2) is NaN
  opt = optax.apply_if_finite(wdax.sgdw(1.0, weight_decay=0.5), 2)

  def fn_update(params, opt_state, x):
    grads = jax.grad(lambda p, x: jnp.arctanh(x) * p)(params, x)
    grads = jax.lax.psum(grads, axis_name='i')
    updates, new_opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), new_opt_state

  fn_update = jax.pmap(fn_update, axis_name='i')
  params = jnp.array(0.0)
  opt_state = opt.init(params)
  params = jax.tree.map(lambda x: x[None], params)
  opt_state = jax.tree.map(lambda x: x[None], opt_state)
  params, opt_state = fn_update(params, opt_state, half)
  assert bool(opt_state.last_finite)
  for step in range(2):
    params, opt_state = fn_update(params, opt_state, two)
    assert not bool(opt_state.last_finite)
    assert opt_state.notfinite_count.item() == step + 1
  params, opt_state = fn_update(params, opt_state, half)
  assert bool(opt_state.last_finite)
  for step in range(2):
    params, opt_state = fn_update(params, opt_state, two)
    assert not bool(opt_state.last_finite)
    assert opt_state.notfinite_count.item() == step + 1
  _, opt_state = fn_update(params, opt_state, two)
  assert opt_state.total_notfinite.item() == 5
