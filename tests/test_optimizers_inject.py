"""wdax's optimisers under ``optax.inject_hyperparams``, stepped under ``jit``.

Every numeric argument optax would inject is injected in turn, given a value
other than its default, and checked against the optimiser built directly with
that value; then the injected value is changed between steps, which must
neither retrace nor differ from rebuilding the optimiser with the new value.
"""

import chex
import jax
import jax.numpy as jnp
import optax
import pytest

import wdax
from wdax import masks


def _params():
  k = jax.random.split(jax.random.key(1), 2)
  return {
      'Dense_0': {
          'kernel': jax.random.normal(k[0], (4, 3)),
          'bias': jax.random.normal(k[1], (3,)),
      },
  }


def _grads(params, i):
  return jax.tree.map(lambda p: jnp.cos(2 * p + i), params)


# (factory, fixed arguments, {argument: (first value, second value)}).
CASES = {
    'adamw': (
        wdax.adamw,
        {'mask': masks.include('kernel')},
        {
            'learning_rate': (3e-2, 1e-2),
            'b1': (0.8, 0.5),
            'b2': (0.99, 0.9),
            'eps': (1e-3, 1e-2),
            'eps_root': (1e-4, 1e-3),
            'weight_decay': (0.3, 0.05),
        },
    ),
    'adamw_schedule': (
        wdax.adamw,
        {'coupling': 'schedule', 'peak_lr': 0.1},
        {
            'learning_rate': (3e-2, 1e-2),
            'weight_decay': (0.3, 0.05),
            'peak_lr': (0.1, 0.05),
        },
    ),
    'adamw_corrected': (
        wdax.adamw,
        {'coupling': 'corrected', 'peak_lr': 0.1},
        {'learning_rate': (3e-2, 1e-2), 'peak_lr': (0.1, 0.05)},
    ),
    'sgdw': (
        wdax.sgdw,
        {'momentum': 0.5, 'mask': masks.include('kernel')},
        {
            'learning_rate': (3e-2, 1e-2),
            'weight_decay': (0.3, 0.05),
            'momentum': (0.9, 0.0),
        },
    ),
    'sgdw_nesterov': (
        wdax.sgdw,
        {'momentum': 0.5, 'nesterov': True},
        {'momentum': (0.9, 0.2)},
    ),
    'adams': (
        wdax.adams,
        {},
        {
            'learning_rate': (3e-2, 1e-2),
            'b1': (0.8, 0.5),
            'b2': (0.99, 0.9),
            'eps': (1e-3, 1e-2),
            'weight_decay': (0.3, 0.05),
        },
    ),
}

# Three of adamw's cases run in the fast loop, all in the full suite.
_FAST = {('adamw', 'learning_rate'), ('adamw', 'b1'), ('adamw', 'weight_decay')}
PAIRS = [
    pytest.param(
        case, arg, marks=() if (case, arg) in _FAST else pytest.mark.slow,
        id=f'{case}-{arg}',
    )
    for case, (_, _, args) in CASES.items()
    for arg in args
]


def _kwargs(case, arg, value):
  _, fixed, _ = CASES[case]
  kw = dict(fixed, **{arg: value})
  lr = kw.pop('learning_rate', 1e-2)
  return lr, kw


@pytest.mark.parametrize('case, arg', PAIRS)
def test_each_numeric_argument_injected_under_jit(case, arg):
  factory, _, args = CASES[case]
  first, second = args[arg]
  lr, kw = _kwargs(case, arg, first)
  static = ('mask',) if 'mask' in kw else ()
  injected = optax.inject_hyperparams(factory, static_args=static)(lr, **kw)
  direct = factory(lr, **kw)
  params = _params()

  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(state, params, i):
    updates, state = injected.update(_grads(params, i), state, params)
    return optax.apply_updates(params, updates), state

  state = jax.jit(injected.init)(params)
  ref_state, ref_params = direct.init(params), params
  ref_update = jax.jit(direct.update)
  # A hyperparameter given as a float32 array rounds apart from a Python
  # float by an ulp or so, which Adam's normalisation magnifies a little.
  tol = {'rtol': 2e-5, 'atol': 1e-6}
  for i in range(3):
    params, state = step(state, params, jnp.float32(i))
    updates, ref_state = ref_update(_grads(ref_params, i), ref_state, ref_params)
    ref_params = optax.apply_updates(ref_params, updates)
  chex.assert_trees_all_close(params, ref_params, **tol)
  chex.assert_trees_all_close(state.inner_state, ref_state, **tol)

  # A new value, between steps: the same program, the numbers of rebuilding.
  state.hyperparams[arg] = jnp.asarray(second, state.hyperparams[arg].dtype)
  params, state = step(state, params, jnp.float32(3))
  lr, kw = _kwargs(case, arg, second)
  rebuilt = factory(lr, **kw)
  updates, _ = jax.jit(rebuilt.update)(_grads(ref_params, 3), ref_state, ref_params)
  ref_params = optax.apply_updates(ref_params, updates)
  chex.assert_trees_all_close(params, ref_params, **tol)


@pytest.mark.parametrize('coupling', ['schedule', 'corrected'])
def test_an_injected_learning_rate_needs_peak_lr(coupling):
  # Its schedule, if any, is behind inject_hyperparams, out of sight.
  tx = optax.inject_hyperparams(wdax.adamw)(1e-2, coupling=coupling)
  params = _params()
  state = tx.init(params)
  with pytest.raises(ValueError, match='traced value.*pass peak_lr'):
    jax.jit(tx.update)(_grads(params, 0), state, params)


def test_inject_hyperparams_with_a_static_schedule_reads_its_peak_once():
  # learning_rate kept static: each trace builds adamw again with the same
  # schedule object; its peak (the schedule on 2**20 steps) is read once.
  shapes = []
  base = optax.linear_schedule(1e-2, 0.0, 100)

  def schedule(count):
    shapes.append(jnp.shape(count))
    return base(count)

  tx = optax.inject_hyperparams(wdax.adamw, static_args=('learning_rate',))(
      schedule, weight_decay=0.1, coupling='schedule'
  )
  params = _params()
  state = tx.init(params)
  for i in range(3):
    # A new function each time: traced anew, so adamw is built anew.
    jax.jit(lambda g, s, p: tx.update(g, s, p))(_grads(params, i), state, params)
  assert shapes.count((wdax.schedules.PEAK_HORIZON,)) == 1
  # Three traces, each evaluating the schedule at the step count for Adam's
  # lr scaling and for the decay's multiplier.
  assert shapes.count(()) == 6
