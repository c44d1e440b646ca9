"""optax 0.2.8's tests of optax.adamw (and nadamw), re-expressed with wdax.adamw.

From ``optax/_src/alias_test.py``: the common tests every optax optimiser
passes (``test_optimization``, ``test_optimizers_accept_extra_args``,
``test_optimizers_can_be_wrapped_in_inject_hyperparams``,
``test_explicit_dtype``, ``test_preserve_dtype``,
``test_state_shape_dtype_shard_stability``, ``test_gradient_accumulation``),
run on ``wdax.adamw`` with the arguments optax gives ``adamw`` and ``nadamw``.
optax checks "does not recompile" with its own compilation log; here it is
``chex.assert_max_traces``.

The count of optax 0.2.8 test cases (a test times its parameters)
re-expressed with wdax in the ``test_optax_parity_*`` files, and how many hold:

* ``_src/alias_test.py``: 48 of adamw's and nadamw's cases, 48 hold (here).
* ``transforms/_adding_test.py``: the 2 decay cases, 2 hold; test_add_noise
  has no decay.
* ``transforms/_masking_test.py``: all 20, 20 hold.
* ``schedules/_inject_test.py``: 19 of 21, 19 hold; test_prng_key_not_
  hyperparameter and test_wrap_stateless_schedule test optax's own plumbing,
  with no decay or mask to put in.
* ``transforms/_accumulation_test.py``: the 8 MultiSteps cases, 8 hold;
  test_ema, test_ema_debias, test_skip_not_finite and test_skip_large_updates
  are not about MultiSteps and have no decay.
* ``transforms/_conditionality_test.py``: the 4 apply_if_finite cases, 4 hold;
  the 5 conditionally_transform / conditionally_mask cases are not
  apply_if_finite.
* ``contrib/_common_test.py``: 150 cases of the 9 contrib optimisers whose
  decay takes a mask, 150 hold (``tests/test_optax_parity_contrib.py`` says
  which were left out and why).

251 re-expressed, 251 hold.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import wdax

# optax's own cases, re-expressed: the full suite runs them, the fast loop not.
pytestmark = pytest.mark.slow

# optax's _OPTIMIZERS_UNDER_TEST entries for adamw and nadamw.
OPTIMIZERS = {
    'adamw': functools.partial(wdax.adamw, learning_rate=1e-1),
    'nadamw': functools.partial(wdax.adamw, learning_rate=1e-2, nesterov=True),
}
NAMES = sorted(OPTIMIZERS)


def _setup_parabola(dtype):
  initial_params = jnp.array([-1.0, 10.0, 1.0], dtype=dtype)
  final_params = jnp.array([1.0, -1.0, 1.0], dtype=dtype)
  if jnp.iscomplexobj(initial_params):
    final_params *= 1 + 1j

  def objective(params):
    return jnp.sum(optax.tree.norm(params - final_params, squared=True))

  return initial_params, final_params, objective


def _setup_rosenbrock(dtype):
  a, b = 1.0, 100.0
  if jnp.iscomplexobj(jnp.zeros([], dtype)):
    a *= 1 + 1j
  initial_params = jnp.array([0.0, 0.0], dtype=dtype)
  final_params = jnp.array([a, a**2], dtype=dtype)

  def objective(params):
    return jnp.abs(a - params[0]) ** 2 + b * jnp.abs(params[1] - params[0] ** 2) ** 2

  return initial_params, final_params, objective


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.complex64])
@pytest.mark.parametrize('target', [_setup_parabola, _setup_rosenbrock])
@pytest.mark.parametrize('name', NAMES)
def test_optimization(name, target, dtype):
  """alias_test.py::test_optimization, 8 cases."""
  opt = OPTIMIZERS[name]()
  initial_params, final_params, objective = target(dtype)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state):
    updates = jax.tree.map(lambda x: x.conj(), jax.grad(objective)(params))
    updates, state = opt.update(updates, state, params)
    return optax.apply_updates(params, updates), state

  params, state = initial_params, opt.init(initial_params)
  state = optax.tree.map_params(opt, lambda v: v, state)
  for _ in range(10_000):
    params, state = step(params, state)
  chex.assert_trees_all_close(params, final_params, rtol=3e-2, atol=3e-2)
  # A fresh start does not recompile either.
  params, state = step(initial_params, opt.init(initial_params))
  step(params, state)


@pytest.mark.parametrize('name', NAMES)
def test_optimizers_accept_extra_args(name):
  """alias_test.py::test_optimizers_accept_extra_args, 2 cases."""
  opt = OPTIMIZERS[name]()
  initial_params, _, objective = _setup_rosenbrock(jnp.float32)

  @jax.jit
  def step(params, state):
    updates = jax.grad(objective)(params)
    updates, state = opt.update(
        updates, state, params, unexpected_extra_args_your_optimizer_doesnt_expect=1
    )
    return optax.apply_updates(params, updates), state

  params, state = initial_params, opt.init(initial_params)
  for _ in range(2):
    params, state = step(params, state)
  chex.assert_tree_all_finite(params)


@pytest.mark.parametrize('name', NAMES)
def test_optimizers_can_be_wrapped_in_inject_hyperparams(name):
  """alias_test.py::test_optimizers_can_be_wrapped_in_inject_hyperparams, 2 cases."""
  opt = OPTIMIZERS[name]()
  opt_inject = optax.inject_hyperparams(OPTIMIZERS[name].func)(
      **OPTIMIZERS[name].keywords
  )
  params = [jnp.negative(jnp.ones((2, 3))), jnp.ones((2, 5, 2))]
  grads = [jnp.ones((2, 3)), jnp.negative(jnp.ones((2, 5, 2)))]
  updates, new_state = jax.jit(opt.update)(grads, jax.jit(opt.init)(params), params)
  updates_inject, new_state_inject = jax.jit(opt_inject.update)(
      grads, jax.jit(opt_inject.init)(params), params
  )
  chex.assert_trees_all_close(updates_inject, updates, rtol=1e-3)
  chex.assert_trees_all_close(new_state_inject.inner_state, new_state, rtol=1e-4)


_DTYPES = ['bfloat16', 'float32', 'complex64', None]


@pytest.mark.parametrize('state_dtype', _DTYPES)
@pytest.mark.parametrize('params_dtype', _DTYPES)
def test_explicit_dtype(params_dtype, state_dtype):
  """alias_test.py::test_explicit_dtype, the 16 adamw cases."""
  opt = wdax.adamw(0.1, mu_dtype=state_dtype)
  params_dtype = jax.dtypes.canonicalize_dtype(params_dtype)
  state = opt.init(jnp.array([0.0, 0.0], dtype=params_dtype))
  expected = params_dtype if state_dtype is None else jnp.dtype(state_dtype)
  assert optax.tree.get(state, 'mu').dtype == expected


@pytest.mark.parametrize('dtype', ['bfloat16', 'float32'])
@pytest.mark.parametrize('name', NAMES)
def test_preserve_dtype(name, dtype):
  """alias_test.py::test_preserve_dtype, 4 cases."""
  opt = OPTIMIZERS[name]()
  params = jnp.array([1.0, 2.0], dtype=dtype)
  grads = jax.grad(lambda x: jnp.sum(x**2))(params)
  updates, _ = jax.jit(opt.update)(grads, jax.jit(opt.init)(params), params)
  assert updates.dtype == grads.dtype


@pytest.mark.parametrize(
    'dtype',
    [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64, jnp.complex64, jnp.complex128],
)
@pytest.mark.parametrize('name', NAMES)
def test_state_shape_dtype_shard_stability(name, dtype):
  """alias_test.py::test_state_shape_dtype_shard_stability, 12 cases."""
  with jax.enable_x64(dtype in (jnp.float64, jnp.complex128)):
    opt = OPTIMIZERS[name]()
    initial_params, _, objective = _setup_parabola(dtype)

    @jax.jit
    def step(params, state):
      updates = jax.tree.map(lambda x: x.conj(), jax.grad(objective)(params))
      cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      updates, state = jax.lax.cond(
          cond, lambda: opt.update(updates, state, params), lambda: (params, state)
      )
      return optax.apply_updates(params, updates), state

    params, state = initial_params, opt.init(initial_params)
    for _ in range(2):
      params, new_state = step(params, state)
      assert jax.tree.leaves(params)[0].dtype == dtype
      cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      state = jax.lax.cond(cond, lambda: state, lambda: new_state)  # noqa: B023


@pytest.mark.parametrize('dtype', ['bfloat16', 'float32'])
@pytest.mark.parametrize('name', NAMES)
def test_gradient_accumulation(name, dtype):
  """alias_test.py::test_gradient_accumulation, 4 cases."""
  opt = optax.MultiSteps(OPTIMIZERS[name](), every_k_schedule=4)
  params = jnp.array([1.0, 2.0], dtype=dtype)
  grads = jax.grad(lambda x: jnp.sum(x**2))(params)
  updates, _ = jax.jit(opt.update)(grads, jax.jit(opt.init)(params), params)
  chex.assert_trees_all_equal(updates, jnp.zeros_like(grads))
  assert np.all(np.asarray(updates, np.float32) == 0)
