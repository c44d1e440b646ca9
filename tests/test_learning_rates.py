"""Per-group learning rates: wdax.rates as an lr, frozen groups, per-layer values."""

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support.optimizer_runs import run

import wdax

COUPLINGS = ('lr', 'schedule', 'none', 'corrected')
SCHED_A = optax.warmup_cosine_decay_schedule(0.0, 2e-2, 3, 12, end_value=1e-3)
SCHED_B = optax.linear_schedule(5e-3, 1e-3, 12)


def _params():
  k = jax.random.split(jax.random.key(0), 4)
  return {
      'embed': jax.random.normal(k[0], (5, 3)).at[0, 0].set(-0.0),
      'body': {'kernel': jax.random.normal(k[1], (3, 3)), 'bias': jax.random.normal(k[2], (3,))},
      'head': {'kernel': jax.random.normal(k[3], (3, 2))},
  }


def _bits(x):
  return np.asarray(x).view(np.uint32)


def _partition_of_two(make_head, make_rest):
  labels = wdax.labels({'head': 'head'}, default='rest')
  return optax.partition({'head': make_head, 'rest': make_rest}, labels)


def test_per_group_schedules_equal_two_optax_adamw_in_a_partition():
  wd = wdax.rates({'bias': 0.0}, default=0.1)
  ours = wdax.adamw(wdax.rates({'head': SCHED_A}, default=SCHED_B), weight_decay=wd)
  no_bias = wdax.masks.exclude('bias')
  ref = _partition_of_two(
      optax.adamw(SCHED_A, weight_decay=0.1), optax.adamw(SCHED_B, weight_decay=0.1, mask=no_bias)
  )
  chex.assert_trees_all_equal(run(ours, _params(), 10), run(ref, _params(), 10))


@pytest.mark.parametrize('coupling', COUPLINGS)
def test_each_group_follows_its_own_lr_as_separate_optimisers_would(coupling):
  wd = 0.3
  ours = wdax.adamw(
      wdax.rates({'head': SCHED_A}, default=SCHED_B), weight_decay=wd, coupling=coupling
  )
  ref = _partition_of_two(
      wdax.adamw(SCHED_A, weight_decay=wd, coupling=coupling),
      wdax.adamw(SCHED_B, weight_decay=wd, coupling=coupling),
  )
  chex.assert_trees_all_close(run(ours, _params(), 10), run(ref, _params(), 10), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize('coupling', COUPLINGS)
def test_per_step_decay_follows_the_coupling_table_per_group(coupling):
  # Zero gradients: Adam's step is 0, so each step multiplies by 1 - c_t,
  # with c_t from the table, each group with its own lr and peak.
  lam = 0.5
  params = {'a': jnp.ones(2), 'b': jnp.ones(2)}
  lrs = {'a': SCHED_A, 'b': SCHED_B}
  # The peaks: the end of A's warmup, B's start.
  peaks = {'a': 2e-2, 'b': 5e-3}
  tx = wdax.adamw(wdax.rates(lrs), weight_decay=lam, coupling=coupling)
  zero = lambda p, i: jax.tree.map(jnp.zeros_like, p)  # noqa: E731
  got = run(tx, params, 8, gradients=zero)
  for name, sched in lrs.items():
    eta = np.asarray(sched(np.arange(8)), np.float64)
    top = peaks[name]
    c = {'lr': eta * lam, 'schedule': lam * eta / top, 'none': lam + 0 * eta,
         'corrected': lam * eta**2 / top}[coupling]
    np.testing.assert_allclose(got[name], np.prod(1 - c) * np.ones(2), rtol=2e-6)


def _frozen_optimisers():
  lr = wdax.rates({'embed': 0.0, 'head': 3e-2}, default=1e-2)
  for coupling in COUPLINGS:
    yield f'adamw-{coupling}', wdax.adamw(lr, weight_decay=0.5, coupling=coupling)
    yield f'sgdw-{coupling}', wdax.sgdw(lr, weight_decay=0.5, momentum=0.9, coupling=coupling)
  yield 'adams', wdax.adams(lr, weight_decay=0.5)
  yield 'chain', optax.chain(
      optax.scale_by_adam(), wdax.scale_by_learning_rate(lr), wdax.decoupled(0.5, lr=lr)
  )
  for coupling in ('schedule', 'corrected'):
    yield f'follow-{coupling}', optax.chain(
        optax.scale_by_adam(), wdax.scale_by_learning_rate(lr),
        wdax.l1(0.5, lr=lr), wdax.cautious(0.5, lr=lr), wdax.toward('init', 0.5, lr=lr),
    )


@pytest.mark.parametrize('name,tx', list(_frozen_optimisers()), ids=lambda x: x if isinstance(x, str) else '')
def test_a_frozen_group_stays_bitwise_unchanged(name, tx):
  params = _params()
  got = run(tx, params, 6)
  assert np.array_equal(_bits(got['embed']), _bits(params['embed'])), name
  assert not np.array_equal(got['head']['kernel'], params['head']['kernel'])
  assert not np.array_equal(got['body']['kernel'], params['body']['kernel'])


def test_a_frozen_group_keeps_no_moments():
  params = _params()
  tx = wdax.adamw(wdax.rates({'embed': 0.0}, default=1e-2))
  state = jax.eval_shape(tx.init, params)
  paths = [p for p in wdax.leaf_paths(state) if 'mu' in p.split('/') or 'nu' in p.split('/')]
  assert paths and not any('embed' in p for p in paths)


def test_a_zero_scalar_array_in_rates_freezes_and_a_plain_zero_lr_freezes_everything():
  params = _params()
  got = run(wdax.adamw(wdax.rates({'embed': jnp.zeros([])}, default=1e-2), weight_decay=0.5), params, 3)
  assert np.array_equal(_bits(got['embed']), _bits(params['embed']))
  got = run(wdax.sgdw(0.0, weight_decay=0.5, coupling='none'), params, 3)
  chex.assert_trees_all_equal(got, params)


def _stacked_and_separate():
  k = jax.random.split(jax.random.key(1), 2)
  stacked = {'blocks': {'kernel': jax.random.normal(k[0], (3, 4, 4)), 'bias': jax.random.normal(k[1], (3, 4))}}
  separate = {
      'blocks': {str(i): {'kernel': stacked['blocks']['kernel'][i], 'bias': stacked['blocks']['bias'][i]}
                 for i in range(3)}
  }
  return stacked, separate


@pytest.mark.parametrize('coupling', COUPLINGS)
def test_stacked_layers_with_per_layer_values_equal_separate_leaves(coupling):
  stacked, separate = _stacked_and_separate()
  lrs, wds = [1e-3, 0.0, 1e-2], [0.1, 0.2, 0.0]
  ours = wdax.adamw(
      wdax.rates({'blocks': np.array(lrs)}), weight_decay=wdax.rates({'blocks': np.array(wds)}),
      coupling=coupling,
  )
  theirs = wdax.adamw(
      wdax.rates({f'blocks/{i}': lr for i, lr in enumerate(lrs)}),
      weight_decay=wdax.rates({f'blocks/{i}': wd for i, wd in enumerate(wds)}),
      coupling=coupling,
  )
  got, want = run(ours, stacked, 6), run(theirs, separate, 6)
  for i in range(3):
    for leaf in ('kernel', 'bias'):
      a, b = got['blocks'][leaf][i], want['blocks'][str(i)][leaf]
      if coupling == 'lr':
        assert np.array_equal(a, b), (i, leaf)
      else:
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # Layer 1 has lr 0: frozen, bitwise.
  assert np.array_equal(_bits(got['blocks']['kernel'][1]), _bits(stacked['blocks']['kernel'][1]))


def test_nanodo_adamw_mup_is_per_group_learning_rates():
  # nanodo's adamw_mup: optax.adamw, then x3 on every kernel's update, decay
  # included. Re-expressed: kernels at 3 times the learning rate.
  def mup(lr):
    kernels = wdax.masks.include('kernel')
    return optax.chain(optax.adamw(lr, weight_decay=0.1), optax.masked(optax.scale(3.0), kernels))

  ours = wdax.adamw(
      wdax.rates({'kernel': lambda t: 3.0 * SCHED_A(t)}, default=SCHED_A), weight_decay=0.1
  )
  chex.assert_trees_all_close(run(ours, _params(), 10), run(mup(SCHED_A), _params(), 10), rtol=1e-6, atol=1e-7)


def test_scale_by_learning_rate_with_one_number_is_optax():
  params = _params()
  chex.assert_trees_all_equal(
      run(optax.chain(optax.trace(0.9), wdax.scale_by_learning_rate(SCHED_A)), params, 4),
      run(optax.chain(optax.trace(0.9), optax.scale_by_learning_rate(SCHED_A)), params, 4),
  )


def test_a_leaf_no_learning_rate_covers_is_an_error_naming_it():
  with pytest.raises(ValueError, match="no learning rate for parameter path 'body/bias'"):
    wdax.adamw(wdax.rates({'embed': 0.0, 'kernel': 1e-3})).init(_params())


def test_a_per_layer_array_of_the_wrong_length_names_the_path():
  stacked, _ = _stacked_and_separate()
  with pytest.raises(ValueError, match="2 per-layer values for parameter path 'blocks/bias'.*size 3"):
    wdax.adamw(wdax.rates({'blocks': np.ones(2)})).init(stacked)
  with pytest.raises(ValueError, match="weight_decay: 2 per-layer values for parameter path 'blocks/bias'"):
    wdax.adamw(1e-3, weight_decay=wdax.rates({'blocks': np.ones(2)})).init(stacked)


@pytest.mark.parametrize('build, what', [
    (lambda r: wdax.sgdw(r), 'learning_rate'),
    (lambda r: wdax.adamw(1e-3, weight_decay=r, coupling='none', eps=1e-4), 'weight_decay'),
    (lambda r: wdax.decoupled(r, lr=0.5), 'lr \\* rate'),
])
def test_a_per_layer_value_that_overflows_the_dtype_is_a_value_error_naming_the_layer(
    build, what
):
  # float16's largest finite value is 65504: entry 1 of 3 overflows it.
  stacked = {'blocks': {'kernel': jnp.ones((3, 2), jnp.float16)}}
  per_layer = wdax.rates({'blocks': np.array([0.1, 1e6, 0.2])})
  with pytest.raises(ValueError) as err:
    build(per_layer).init(stacked)
  assert re.search(
      f"{what} .*entry 1 of 3.*parameter path 'blocks/kernel' overflows its dtype float16",
      str(err.value),
  ), str(err.value)


def test_a_typo_or_shadowed_pattern_in_learning_rates_is_named():
  with pytest.raises(ValueError, match="pattern 'haed' matches no parameter"):
    wdax.sgdw(wdax.rates({'haed': 0.1}, default=0.01)).init(_params())
  with pytest.raises(ValueError, match="pattern 'head/kernel' has no effect"):
    wdax.decoupled(0.1, lr=wdax.rates({'head': 0.1, 'head/kernel': 0.2}, default=0.01)).init(_params())


def test_a_jitted_step_with_per_group_schedules_traces_once():
  params = _params()
  tx = wdax.adamw(wdax.rates({'head': SCHED_A}, default=SCHED_B), coupling='corrected')
  state = tx.init(params)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def step(p, s):
    u, s = tx.update(jax.tree.map(jnp.ones_like, p), s, p)
    return optax.apply_updates(p, u), s

  for _ in range(3):
    params, state = step(params, state)
  assert jax.eval_shape(tx.init, params) is not None


def test_per_group_peak_lr_replaces_the_read_peak():
  params = {'a': jnp.ones(2), 'b': jnp.ones(2)}
  zero = lambda p, i: jax.tree.map(jnp.zeros_like, p)  # noqa: E731
  tx = wdax.sgdw(
      wdax.rates({'a': SCHED_A, 'b': 1e-2}), weight_decay=0.5, coupling='schedule',
      peak_lr=wdax.rates({'a': 4e-2}, default=1e-2),
  )
  got = run(tx, params, 4, gradients=zero)
  eta = np.array([float(SCHED_A(t)) for t in range(4)])
  np.testing.assert_allclose(got['a'], np.prod(1 - 0.5 * eta / 4e-2) * np.ones(2), rtol=2e-6)
  np.testing.assert_allclose(got['b'], (1 - 0.5) ** 4 * np.ones(2), rtol=2e-6)
