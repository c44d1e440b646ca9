"""Tests for wdax.training: Linen and NNX steps, masks on NNX state, metrics."""

import functools
import subprocess
import sys

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from flax.training import train_state

import wdax
from wdax import masks
from wdax import training

_RNG = np.random.default_rng(0)
_BATCHES = [
    {
        'x': jnp.asarray(_RNG.normal(size=(16, 5)), jnp.float32),
        'y': jnp.asarray(_RNG.normal(size=(16, 2)), jnp.float32),
    }
    for _ in range(3)
]


class _LinenMLP(nn.Module):
  @nn.compact
  def __call__(self, x):
    x = nn.LayerNorm()(nn.Dense(8)(x))
    return nn.Dense(2)(nn.relu(x))


class _LinenBN(nn.Module):
  @nn.compact
  def __call__(self, x, train: bool):
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(nn.Dense(8)(x))
    return nn.Dense(2)(x)


class _NnxMLP(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(5, 8, rngs=rngs)
    self.norm = nnx.LayerNorm(8, rngs=rngs)
    self.out = nnx.Linear(8, 2, rngs=rngs)

  def __call__(self, x):
    return self.out(nnx.relu(self.norm(self.hidden(x))))


class _NnxBN(nnx.Module):
  def __init__(self, rngs):
    self.hidden = nnx.Linear(5, 8, rngs=rngs)
    self.bn = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)
    self.out = nnx.Linear(8, 2, rngs=rngs)

  def __call__(self, x):
    return self.out(self.bn(self.hidden(x)))


_LINEN = _LinenMLP()


def _linen_loss(params, batch):
  pred = _LINEN.apply({'params': params}, batch['x'])
  return jnp.mean((pred - batch['y']) ** 2)


def _copy(tree):
  # Steps donate their state: every test gets arrays of its own.
  return jax.tree.map(jnp.copy, tree)


@functools.cache
def _linen_params():
  return jax.jit(_LINEN.init)(jax.random.key(0), _BATCHES[0]['x'])['params']


def _linen_state(tx, cls=training.TrainState):
  return cls.create(apply_fn=_LINEN.apply, params=_copy(_linen_params()), tx=tx)


@functools.cache
def _nnx_split(cls):
  return nnx.split(cls(nnx.Rngs(0)))


def _nnx_model(cls):
  graphdef, state = _nnx_split(cls)
  return nnx.merge(graphdef, _copy(state))


def _nnx_loss(model, batch):
  return jnp.mean((model(batch['x']) - batch['y']) ** 2)


def _decay_tx(mask):
  return optax.chain(optax.adam(1e-2), wdax.decoupled(0.3, lr=1e-2, mask=mask))


def _reference_step(loss_fn, tx):
  """A plain optax step on a params tree, written out by hand."""

  @jax.jit
  def step(params, opt_state, batch):
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss, grads, updates

  return step


def _norm(leaves):
  return float(np.sqrt(sum(np.sum(np.square(np.asarray(x))) for x in leaves)))


def _all_deleted(tree):
  return all(x.is_deleted() for x in jax.tree.leaves(tree))


# Linen.


def test_linen_step_matches_a_hand_written_optax_step():
  mask = masks.flax_default()
  tx = _decay_tx(mask)
  state = _linen_state(tx)
  params = jax.tree.map(jnp.copy, state.params)
  opt_state = tx.init(params)
  step = training.train_step(_linen_loss, mask=mask)
  reference = _reference_step(_linen_loss, tx)
  for batch in _BATCHES:
    state, metrics = step(state, batch)
    params, opt_state, loss, grads, updates = reference(params, opt_state, batch)
    chex.assert_trees_all_close(state.params, params, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(metrics['loss'], loss, rtol=1e-6)
    np.testing.assert_allclose(
        metrics['grad_norm'], optax.tree.norm(grads), rtol=1e-5
    )
    np.testing.assert_allclose(
        metrics['update_norm'], optax.tree.norm(updates), rtol=1e-5
    )
  kernels = [params['Dense_0']['kernel'], params['Dense_1']['kernel']]
  others = [
      params['Dense_0']['bias'],
      params['Dense_1']['bias'],
      params['LayerNorm_0']['bias'],
      params['LayerNorm_0']['scale'],
  ]
  np.testing.assert_allclose(metrics['param_norm_decayed'], _norm(kernels), rtol=1e-5)
  np.testing.assert_allclose(
      metrics['param_norm_not_decayed'], _norm(others), rtol=1e-5
  )
  np.testing.assert_allclose(
      metrics['param_norm'], _norm(kernels + others), rtol=1e-5
  )
  # The same definitions as wdax.diagnostics.norms.
  norms = wdax.diagnostics.norms(state.params, mask)
  for name in ('decayed', 'not_decayed'):
    np.testing.assert_allclose(metrics[f'param_norm_{name}'], norms[name], rtol=1e-6)
  assert int(state.step) == len(_BATCHES)


def test_linen_step_compiles_once_and_donates_the_state():
  chex.clear_trace_counter()
  loss_fn = chex.assert_max_traces(_linen_loss, n=1)
  step = training.train_step(loss_fn, mask=masks.flax_default())
  state = _linen_state(_decay_tx(masks.flax_default()))
  for batch in _BATCHES:
    before = state
    state, _ = step(state, batch)  # a second trace would fail the chex counter
    assert _all_deleted(before)


def test_flax_train_state_with_python_int_step_compiles_once():
  # Flax's own TrainState.create starts step as the Python int 0.
  chex.clear_trace_counter()
  state = _linen_state(optax.sgd(0.1), cls=train_state.TrainState)
  assert isinstance(state.step, int)
  step = training.train_step(chex.assert_max_traces(_linen_loss, n=1))
  for batch in _BATCHES:
    state, _ = step(state, batch)
  assert int(state.step) == len(_BATCHES)


def test_aux_is_returned_and_metrics_can_be_turned_off():
  def loss_fn(params, batch):
    pred = _LINEN.apply({'params': params}, batch['x'])
    return jnp.mean((pred - batch['y']) ** 2), {'pred_mean': jnp.mean(pred)}

  step = training.train_step(loss_fn, metrics=False, donate=False)
  state = _linen_state(optax.sgd(0.1))
  _, metrics = step(state, _BATCHES[0])
  assert sorted(metrics) == ['aux', 'loss']
  pred = _LINEN.apply({'params': state.params}, _BATCHES[0]['x'])
  np.testing.assert_allclose(metrics['aux']['pred_mean'], jnp.mean(pred), rtol=1e-6)


def test_steps_with_and_without_metrics_share_one_state():
  # The documented way to log every n steps: two steps, one state. Each is
  # traced once: two losses, one trace each.
  chex.clear_trace_counter()

  def fast_loss(params, batch):
    return _linen_loss(params, batch)

  def logged_loss(params, batch):
    return _linen_loss(params, batch)

  fast = training.train_step(chex.assert_max_traces(fast_loss, n=1), metrics=False)
  logged = training.train_step(
      chex.assert_max_traces(logged_loss, n=1), mask=masks.flax_default()
  )
  state = _linen_state(optax.sgd(0.1))
  for i, batch in enumerate(_BATCHES * 2):
    state, metrics = (logged if i % 3 == 2 else fast)(state, batch)
  assert int(state.step) == 6 and 'param_norm' in metrics


def test_sgd_step_under_strict_dtype_promotion(strict_dtypes):
  del strict_dtypes
  mask = masks.flax_default()
  tx = optax.chain(optax.sgd(0.1), wdax.decoupled(0.5, lr=0.1, mask=mask))
  state = _linen_state(tx)
  expected = jax.tree.map(jnp.copy, state.params)
  state, metrics = training.train_step(_linen_loss, mask=mask)(state, _BATCHES[0])
  expected = _reference_step(_linen_loss, tx)(
      expected, tx.init(expected), _BATCHES[0]
  )[0]
  chex.assert_trees_all_close(state.params, expected, rtol=1e-6)
  assert metrics['param_norm'].dtype == jnp.float32


def test_loss_fn_must_return_a_scalar_or_a_pair():
  state = _linen_state(optax.sgd(0.1))
  with pytest.raises(ValueError, match='floating scalar'):
    training.train_step(lambda p, b: jnp.zeros(3), donate=False)(state, _BATCHES[0])
  with pytest.raises(ValueError, match='tuple of 3'):
    training.train_step(
        lambda p, b: (_linen_loss(p, b), 1, 2), donate=False
    )(state, _BATCHES[0])


def _bn_state(tx):
  model = _LinenBN()
  init = jax.jit(functools.partial(model.init, train=False))
  variables = init(jax.random.key(0), _BATCHES[0]['x'])
  return model, training.TrainState.create(
      apply_fn=model.apply,
      params=variables['params'],
      batch_stats=variables['batch_stats'],
      tx=tx,
  )


def test_linen_batch_stats_are_updated_like_apply_with_mutable():
  model, state = _bn_state(optax.sgd(0.1))

  def loss_fn(params, batch_stats, batch):
    pred, changed = model.apply(
        {'params': params, 'batch_stats': batch_stats},
        batch['x'],
        train=True,
        mutable=['batch_stats'],
    )
    return jnp.mean((pred - batch['y']) ** 2), (None, changed['batch_stats'])

  params = jax.tree.map(jnp.copy, state.params)
  stats = jax.tree.map(jnp.copy, state.batch_stats)
  step = training.train_step(loss_fn, mask=masks.flax_default())

  @jax.jit
  def reference(params, stats, batch):
    (loss, (_, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        params, stats, batch
    )
    return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads), stats, loss

  for batch in _BATCHES:
    state, metrics = step(state, batch)
    params, stats, loss = reference(params, stats, batch)
    np.testing.assert_allclose(metrics['loss'], loss, rtol=1e-6)
  chex.assert_trees_all_close(state.params, params, rtol=1e-5, atol=1e-6)
  chex.assert_trees_all_close(state.batch_stats, stats, rtol=1e-6)
  # The running mean moved off its initial zeros.
  assert float(jnp.abs(state.batch_stats['BatchNorm_0']['mean']).sum()) > 0
  assert 'aux' not in metrics


def test_batch_stats_loss_fn_with_the_wrong_shape_of_output_is_explained():
  model, state = _bn_state(optax.sgd(0.1))

  def loss_fn(params, batch_stats, batch):
    pred = model.apply(
        {'params': params, 'batch_stats': batch_stats}, batch['x'], train=False
    )
    return jnp.mean(pred**2)

  with pytest.raises(ValueError, match=r'\(loss, \(aux, new_batch_stats\)\)'):
    training.train_step(loss_fn, donate=False)(state, _BATCHES[0])


# NNX.


def _nnx_params_dict(model):
  # A copy: the model's own arrays are donated by the step.
  return jax.tree.map(jnp.copy, nnx.to_pure_dict(nnx.state(model, nnx.Param)))


_KERNEL_TREE = {
    'hidden': {'bias': False, 'kernel': True},
    'norm': {'bias': False, 'scale': False},
    'out': {'bias': False, 'kernel': True},
}


def _nnx_mask_forms():
  def bool_tree_from_params(params):
    # What a user writes for optax: a tree of bools built from the params.
    return jax.tree.map(lambda p: p.ndim == 2, params)

  return {
      'flax_default': masks.flax_default(),
      'include': masks.include('kernel'),
      'exclude': masks.exclude('bias', 'scale'),
      'min_ndim': masks.min_ndim(2),
      'combined': masks.include('hidden', 'out') & ~masks.include('bias'),
      'bool_tree': _KERNEL_TREE,
      'callable': bool_tree_from_params,
  }


def _flavour_forms():
  # One in the fast loop; every form in the full suite.
  fast = {('wdax.adamw', 'flax_default')}
  pairs = (
      [('wdax.decoupled', form) for form in sorted(_nnx_mask_forms())]
      + [('optax.adamw', form) for form in ('bool_tree', 'callable', 'flax_default')]
      + [('wdax.adamw', 'flax_default')]
  )
  return [
      pytest.param(*p, marks=() if p in fast else pytest.mark.slow) for p in pairs
  ]


@pytest.mark.parametrize('flavour, form', _flavour_forms())
def test_every_mask_form_works_on_nnx_optimizer_state(form, flavour):
  mask = _nnx_mask_forms()[form]
  if flavour == 'optax.adamw':
    if form == 'bool_tree':
      # optax.masked maps a plain dict over the nnx.State the optimiser
      # passes, and the container types differ; as_mask matches by path.
      mask = masks.as_mask(mask)
    tx = optax.adamw(1e-2, weight_decay=0.3, mask=mask)
  elif flavour == 'wdax.adamw':
    tx = wdax.adamw(1e-2, weight_decay=0.3, mask=mask)
  else:
    tx = _decay_tx(mask)
  model = _nnx_model(_NnxMLP)
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  step = training.nnx_train_step(graphdef, _nnx_loss, mask=mask)
  for batch in _BATCHES:
    state, metrics = step(state, batch)
  model, optimizer = nnx.merge(graphdef, state)
  expected = _nnx_adamw_reference()
  chex.assert_trees_all_close(_nnx_params_dict(model), expected, rtol=1e-5, atol=1e-6)
  assert int(optimizer.step[...]) == len(_BATCHES)
  kernels = [expected['hidden']['kernel'], expected['out']['kernel']]
  np.testing.assert_allclose(metrics['param_norm_decayed'], _norm(kernels), rtol=1e-5)


@functools.cache
def _nnx_adamw_reference():
  """Independent reference: optax.adamw on a plain dict with a bool-tree mask.

  Every mask form above selects the two kernels, and Adam followed by
  decoupled decay of lr * 0.3 is AdamW with weight decay 0.3.
  """
  params = _nnx_params_dict(_nnx_model(_NnxMLP))
  tx = optax.adamw(1e-2, weight_decay=0.3, mask=_KERNEL_TREE)
  opt_state = tx.init(params)
  reference = _reference_step(_nnx_loss_from_pure, tx)
  for batch in _BATCHES:
    params, opt_state = reference(params, opt_state, batch)[:2]
  return params


def _nnx_loss_from_pure(params, batch):
  model = _NnxMLP(nnx.Rngs(0))
  state = nnx.state(model, nnx.Param)
  nnx.replace_by_pure_dict(state, params)
  nnx.update(model, state)
  return _nnx_loss(model, batch)


def test_rates_work_on_nnx_optimizer_state():
  rates = wdax.rates({'hidden': 0.5}, default=0.1)
  mask = masks.flax_default()
  model = _nnx_model(_NnxMLP)
  tx = optax.chain(optax.sgd(0.1), wdax.decoupled(rates, lr=0.1, mask=mask))
  optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
  params = _nnx_params_dict(model)
  graphdef, state = nnx.split((model, optimizer))
  state, _ = training.nnx_train_step(graphdef, _nnx_loss, mask=mask)(
      state, _BATCHES[0]
  )
  grads = jax.jit(jax.grad(_nnx_loss_from_pure))(params, _BATCHES[0])
  # Hand-derived: theta - lr * g - lr * r * theta on kernels, r by group.
  r = {'hidden': 0.5, 'out': 0.1}
  expected = jax.tree_util.tree_map_with_path(
      lambda kp, p, g: p - 0.1 * g
      - (0.1 * r[kp[0].key] * p if kp[-1].key == 'kernel' else 0.0),
      params,
      grads,
  )
  model, _ = nnx.merge(graphdef, state)
  chex.assert_trees_all_close(_nnx_params_dict(model), expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize('pure', [False, True])
def test_nnx_step_compiles_once_and_donates_the_state(pure):
  chex.clear_trace_counter()
  loss_fn = chex.assert_max_traces(_nnx_loss, n=1)
  model = _nnx_model(_NnxMLP)
  optimizer = nnx.Optimizer(model, _decay_tx(masks.flax_default()), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  if pure:
    state = nnx.as_pure(state)
  step = training.nnx_train_step(graphdef, loss_fn, mask=masks.flax_default())
  for batch in _BATCHES:
    before = state
    state, _ = step(state, batch)  # a second trace would fail the chex counter
    assert _all_deleted(before)
  leaf = jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable))[0]
  assert isinstance(leaf, nnx.Variable) != pure


def test_nnx_batch_stats_are_carried_through_the_step():
  model = _nnx_model(_NnxBN)
  optimizer = nnx.Optimizer(model, optax.sgd(0.1), wrt=nnx.Param)
  graphdef, state = nnx.split((model, optimizer))
  state, _ = training.nnx_train_step(graphdef, _nnx_loss)(state, _BATCHES[0])
  model, _ = nnx.merge(graphdef, state)
  initial = _nnx_params_dict(_nnx_model(_NnxBN))['hidden']
  hidden = _BATCHES[0]['x'] @ initial['kernel'] + initial['bias'][None, :]
  # momentum 0.5 from a zero running mean: half the first batch's mean.
  np.testing.assert_allclose(
      model.bn.mean[...], 0.5 * np.mean(np.asarray(hidden), axis=0), rtol=1e-5, atol=1e-6
  )


# describe on both APIs.


def test_describe_reads_the_same_on_linen_params_and_nnx_state():
  linen = _linen_params()
  model = _nnx_model(_NnxMLP)
  mask = masks.flax_default()
  for params, names in [
      (linen, {'Dense_0', 'Dense_1'}),
      (nnx.state(model, nnx.Param), {'hidden', 'out'}),
      (nnx.as_pure(nnx.state(model, nnx.Param)), {'hidden', 'out'}),
  ]:
    report = wdax.describe(params, rate=1e-4, mask=mask)
    decayed = {r.path for r in report.rows if r.decayed}
    assert decayed == {f'{n}/kernel' for n in names}
    assert report.decayed == sum(
        int(np.prod(np.shape(x)))
        for path, x in zip(wdax.leaf_paths(params), jax.tree.leaves(params))
        if path.endswith('kernel')
    )
    assert 'kernel' in str(report)


def test_import_wdax_does_not_import_flax_or_orbax():
  code = (
      'import sys, wdax\n'
      "heavy = [m for m in sys.modules if m.split('.')[0] in ('flax', 'orbax')]\n"
      'assert not heavy, heavy\n'
      'assert callable(wdax.training.train_step)\n'
      "assert 'flax' in sys.modules\n"
  )
  subprocess.run([sys.executable, '-c', code], check=True, timeout=120)
