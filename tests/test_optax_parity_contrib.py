"""optax 0.2.8's common tests of its contrib optimisers, with wdax masks on their decay.

From ``optax/contrib/_common_test.py``: every contrib optimiser whose weight
decay takes a mask (``mask=`` or ``weight_decay_mask=``) runs optax's common
tests with a weight decay switched on and a wdax mask selecting what it
decays. The cases are optax's ``_MAIN_OPTIMIZERS_UNDER_TEST`` entries for those
optimisers (cocob twice, as in optax), times each test's own parameters:
``test_optimizers_accept_extra_args`` (optax's ``wrap`` parameter does nothing
for optimisers that are not wrappers: one case each),
``test_optimizers`` (4 targets), ``test_optimizers_can_be_wrapped_in_
inject_hyperparams``, ``test_preserve_dtype`` (2), ``test_gradient_
accumulation`` (2), ``test_state_shape_dtype_shard_stability`` (4) and
``test_optimizers_accept_learning_rate_schedule_if_type_annotated_as_such``:
10 entries x 15 = 150 cases. Left out: the contrib optimisers without a decay
mask (adopt, dadapt_adamw, madgrad, momo, momo_adam, prodigy, schedule_free_*:
their decay has no mask for wdax to give) and the wrapper entries (mechanize,
schedule_free, reduce_on_plateau over sgd: no decay of their own).

A further test, not optax's, checks that each optimiser's updates with a wdax
mask are bit for bit those with the same selection as a plain bool tree.
"""

import functools
import inspect

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from wdax import masks

# About a minute of small compilations in all: the whole file is slow.
pytestmark = pytest.mark.slow

WD = 1e-4
_MASK_ARG = {'muon': 'weight_decay_mask', 'sophia': 'weight_decay_mask'}

# optax's entries for the contrib optimisers whose decay takes a mask.
ENTRIES = [
    ('acprop', {'learning_rate': 1e-3}),
    ('ademamix', {'learning_rate': 1e-3}),
    ('simplified_ademamix', {'learning_rate': 1e-3}),
    ('cocob', {}),
    ('cocob', {'weight_decay': 1e-2}),
    ('dog', {'learning_rate': 1.0}),
    ('dowg', {'learning_rate': 1.0}),
    ('muon', {'learning_rate': 1e-2}),
    ('sophia', {'learning_rate': 1e-2}),
    ('galore', {'learning_rate': 1e-2, 'rank': 8}),
]
IDS = [f'{name}{"_wd" if "weight_decay" in kw else ""}' for name, kw in ENTRIES]


def _kwargs(name, kwargs, mask=None):
  """optax's arguments, with a decay on and a wdax mask choosing its leaves."""
  out = dict(kwargs)
  out.setdefault('weight_decay', WD)
  out[_MASK_ARG.get(name, 'mask')] = mask if mask is not None else masks.min_ndim(1)
  return out


def _make(name, kwargs, mask=None):
  return getattr(optax.contrib, name)(**_kwargs(name, kwargs, mask))


def _update_kwargs(name, objective, value=None):
  if name == 'sophia':
    return {'obj_fn': objective}
  return {}


def _setup_parabola(dtype):
  initial = jnp.array([-1.0, 10.0, 1.0], dtype=dtype)
  final = jnp.array([1.0, -1.0, 1.0], dtype=dtype)
  return initial, final, lambda p: jnp.sum(jnp.abs(p - final) ** 2)


def _setup_rosenbrock(dtype):
  initial = jnp.array([0.0, 0.0], dtype=dtype)
  final = jnp.array([1.0, 1.0], dtype=dtype)

  def objective(p):
    return jnp.abs(1.0 - p[0]) ** 2 + 100.0 * jnp.abs(p[1] - p[0] ** 2) ** 2

  return initial, final, objective


def _setup_matrix_parabola(dtype):
  initial = jnp.zeros((2, 2), dtype=dtype)
  final = jnp.array([[3.0, -2.0], [1.0, 4.0]], dtype=dtype)
  return initial, final, lambda p: jnp.sum(jnp.abs(p - final) ** 2)


def _setup_mixed_tensor_target(dtype):
  final = (
      jnp.array([1.0, -1.0, 2.0], dtype=dtype),
      jnp.array([[1.0, 0.0], [-1.0, 1.0]], dtype=dtype),
  )
  initial = (jnp.zeros((3,), dtype=dtype), jnp.zeros((2, 2), dtype=dtype))

  def objective(p):
    return jnp.sum(jnp.abs(p[0] - final[0]) ** 2) + jnp.sum(jnp.abs(p[1] - final[1]) ** 2)

  return initial, final, objective


@pytest.mark.parametrize('name, kwargs', ENTRIES, ids=IDS)
def test_optimizers_accept_extra_args(name, kwargs):
  """_common_test.py::test_optimizers_accept_extra_args."""
  opt = _make(name, kwargs)
  initial, _, objective = _setup_rosenbrock(jnp.float32)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(params, state):
    updates = jax.grad(objective)(params)
    extra = {'unexpected_extra_args_your_optimizer_doesnt_expect': 1}
    updates, state = opt.update(
        updates, state, params, **extra, **_update_kwargs(name, objective)
    )
    return optax.apply_updates(params, updates), state

  params, state = initial, opt.init(initial)
  for _ in range(2):
    params, state = step(params, state)
  step(initial, opt.init(initial))  # not compiled again


@pytest.mark.parametrize(
    'target',
    [_setup_parabola, _setup_rosenbrock, _setup_matrix_parabola, _setup_mixed_tensor_target],
)
@pytest.mark.parametrize('name, kwargs', ENTRIES, ids=IDS)
def test_optimizers(name, kwargs, target):
  """_common_test.py::test_optimizers, 4 targets, 30,000 steps each."""
  opt = _make(name, kwargs)
  initial, final, objective = target(jnp.float32)

  @jax.jit
  def step(params, state):
    updates = jax.grad(objective)(params)
    updates, state = opt.update(updates, state, params, **_update_kwargs(name, objective))
    return optax.apply_updates(params, updates), state

  state = optax.tree.map_params(opt, lambda v: v, opt.init(initial))
  (params, _), _ = jax.lax.scan(
      lambda c, _: (step(*c), None), (initial, state), length=30_000
  )
  chex.assert_trees_all_close(params, final, rtol=3e-2, atol=3e-2)


@pytest.mark.parametrize('name, kwargs', ENTRIES, ids=IDS)
def test_optimizers_can_be_wrapped_in_inject_hyperparams(name, kwargs):
  """_common_test.py::test_optimizers_can_be_wrapped_in_inject_hyperparams."""
  factory = getattr(optax.contrib, name)
  hparams = _kwargs(name, kwargs)
  opt = factory(**hparams)
  # optax's list of arguments inject_hyperparams cannot take, and the mask: a
  # callable, which inject_hyperparams would take for a schedule otherwise.
  static = [_MASK_ARG.get(name, 'mask')] + [
      a
      for a in ('warmup_steps', 'num_betas', 'clip_value_fn', 'ns_steps', 'rank',
                'update_proj_gap')
      if a in inspect.signature(factory).parameters
  ]
  opt_inject = optax.inject_hyperparams(factory, tuple(static))(**hparams)
  params = [jnp.negative(jnp.ones((2, 3))), jnp.ones((2, 5, 2))]
  grads = [jnp.ones((2, 3)), jnp.negative(jnp.ones((2, 5, 2)))]
  extra = _update_kwargs(name, lambda x: optax.tree.norm(x, squared=True))
  updates, new_state = jax.jit(functools.partial(opt.update, **extra))(
      grads, jax.jit(opt.init)(params), params
  )
  updates_inject, new_state_inject = jax.jit(
      functools.partial(opt_inject.update, **extra)
  )(grads, jax.jit(opt_inject.init)(params), params)
  chex.assert_trees_all_close(updates_inject, updates, rtol=1e-5)
  chex.assert_trees_all_close(new_state_inject.inner_state, new_state, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('dtype', ['bfloat16', 'float32'])
@pytest.mark.parametrize('name, kwargs', ENTRIES, ids=IDS)
def test_preserve_dtype(name, kwargs, dtype):
  """_common_test.py::test_preserve_dtype, 2 dtypes."""
  opt = _make(name, kwargs)
  fun = lambda x: jnp.sum(x**2)  # noqa: E731
  params = jnp.array([1.0, 2.0], dtype=dtype)
  grads = jax.grad(fun)(params)
  update = functools.partial(opt.update, **_update_kwargs(name, fun))
  updates, _ = jax.jit(update)(grads, jax.jit(opt.init)(params), params)
  assert updates.dtype == params.dtype


@pytest.mark.parametrize('dtype', ['bfloat16', 'float32'])
@pytest.mark.parametrize('name, kwargs', ENTRIES, ids=IDS)
def test_gradient_accumulation(name, kwargs, dtype):
  """_common_test.py::test_gradient_accumulation, 2 dtypes."""
  opt = _make(name, kwargs)
  fun = lambda x: jnp.sum(x**2)  # noqa: E731
  update = functools.partial(opt.update, **_update_kwargs(name, fun))
  opt = optax.MultiSteps(
      optax.GradientTransformationExtraArgs(opt.init, update), every_k_schedule=4
  )
  params = jnp.array([1.0, 2.0], dtype=dtype)
  grads = jax.grad(fun)(params)
  updates, _ = jax.jit(opt.update)(grads, jax.jit(opt.init)(params), params)
  chex.assert_trees_all_equal(updates, jnp.zeros_like(grads))


@pytest.mark.parametrize('dtype', [jnp.float16, jnp.bfloat16, jnp.float32, jnp.float64])
@pytest.mark.parametrize('name, kwargs', ENTRIES, ids=IDS)
def test_state_shape_dtype_shard_stability(name, kwargs, dtype):
  """_common_test.py::test_state_shape_dtype_shard_stability, 4 dtypes."""
  with jax.enable_x64(dtype == jnp.float64):
    opt = _make(name, kwargs)
    initial, _, objective = _setup_parabola(dtype)

    @jax.jit
    def step(params, state):
      updates = jax.grad(objective)(params)
      cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      updates, state = jax.lax.cond(
          cond,
          lambda: opt.update(updates, state, params, **_update_kwargs(name, objective)),
          lambda: (params, state),
      )
      return optax.apply_updates(params, updates), state

    params, state = initial, opt.init(initial)
    for _ in range(2):
      params, new_state = step(params, state)
      assert jax.tree.leaves(params)[0].dtype == dtype
      cond = jax.random.randint(jax.random.key(0), (), 0, 2) == 0
      state = jax.lax.cond(cond, lambda: state, lambda: new_state)  # noqa: B023


@pytest.mark.parametrize('name, kwargs', ENTRIES, ids=IDS)
def test_optimizers_accept_learning_rate_schedule(name, kwargs):
  """_common_test.py::test_optimizers_accept_learning_rate_schedule_if_type_annotated_as_such."""
  factory = getattr(optax.contrib, name)
  annotation = inspect.signature(factory).parameters['learning_rate'].annotation
  assert annotation in (optax.ScalarOrSchedule, optax.Schedule)
  initial, _, objective = _setup_parabola(jnp.float32)
  with_schedule = _make(name, dict(kwargs, learning_rate=optax.constant_schedule(1e-3)))
  with_lr = _make(name, dict(kwargs, learning_rate=1e-3))

  def step(opt, params, state):
    updates = jax.grad(objective)(params)
    updates, state = opt.update(updates, state, params, **_update_kwargs(name, objective))
    return optax.apply_updates(params, updates), state

  a, b = initial, initial
  sa, sb = with_schedule.init(a), with_lr.init(b)
  for _ in range(10):
    a, sa = step(with_schedule, a, sa)
    b, sb = step(with_lr, b, sb)
  chex.assert_trees_all_close(a, b)


# Not optax's: the wdax mask selects exactly what the same bool tree does.


@pytest.mark.parametrize('name, kwargs', ENTRIES, ids=IDS)
def test_a_wdax_mask_is_the_same_bool_tree(name, kwargs):
  params = {
      'Dense_0': {'kernel': jnp.linspace(-1.0, 1.0, 12).reshape(4, 3), 'bias': jnp.ones(3)},
      'LayerNorm_0': {'scale': jnp.full((3,), 2.0)},
  }
  selection = {'Dense_0': {'kernel': True, 'bias': False}, 'LayerNorm_0': {'scale': False}}
  kwargs = dict(kwargs, weight_decay=0.1)
  ours = _make(name, kwargs, masks.exclude('bias', 'scale'))
  ref = _make(name, kwargs, selection)
  objective = lambda p: sum(jnp.sum(jnp.sin(x) ** 2) for x in jax.tree.leaves(p))  # noqa: E731
  extra = _update_kwargs(name, objective)

  def run(opt):
    update = jax.jit(functools.partial(opt.update, **extra))
    p, state = params, opt.init(params)
    for _ in range(3):
      u, state = update(jax.grad(objective)(p), state, p)
      p = optax.apply_updates(p, u)
    return p

  got, want = run(ours), run(ref)
  chex.assert_trees_all_equal(got, want)
  assert not np.array_equal(
      run(_make(name, dict(kwargs, weight_decay=0.0), selection))['Dense_0']['kernel'],
      got['Dense_0']['kernel'],
  )  # the decay acted on the kernel
