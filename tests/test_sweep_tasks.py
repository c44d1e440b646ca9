"""Tests of wdax.sweep.tasks: each built-in task's grid against a hand loop."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import sklearn.metrics
from flax import nnx
from support.sweep_reference import folds_of
from support.sweep_reference import loop
from support.sweep_reference import take

import wdax
from wdax import sweep

LR = 1e-2


def _classes(n=60, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
  return {'x': x, 'y': y}


def _cross_entropy(logits, labels):
  return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


def _assert_metrics(result, i, k, expected, rtol=2e-5):
  for name, value in expected.items():
    got = result.curves[name][i, k, 0, -1]
    if name.endswith('accuracy'):
      np.testing.assert_allclose(got, value, atol=1e-6, err_msg=name)
    else:
      np.testing.assert_allclose(got, value, rtol=rtol, atol=1e-6, err_msg=name)


# --- classifier, linen --------------------------------------------------------


# The l2 twin runs in the full suite only (5 CPU-s).
@pytest.mark.parametrize('kind', [pytest.param('l2', marks=pytest.mark.slow), 'decoupled'])
def test_classifier_grid_equals_a_loop(kind):
  data = _classes()
  model = sweep.MLP(hidden=(8,), outputs=3)
  mask = wdax.masks.flax_default()
  rates, epochs, batch_size = [0.05, 3.0], 3, 8
  result = sweep.grid(
      sweep.classifier(model), data, {'rate': rates},
      optimizer=sweep.kind(kind, lr=LR, mask=mask), folds=2, seeds=[7],
      epochs=epochs, batch_size=batch_size, evals=epochs,
  )
  np.testing.assert_array_equal(result.epochs, [1, 2, 3])
  np.testing.assert_array_equal(result.fold_ids, sweep.stratified_folds(data['y'], 2))

  def init(key):
    return model.init(key, data['x'][:1])['params'], {}

  def loss(params, state, batch, key, hp):
    return _cross_entropy(model.apply({'params': params}, batch['x']), batch['y']), state

  def tx(hp):
    if kind == 'l2':
      return optax.chain(wdax.l2(hp['rate'], mask=mask), optax.adam(LR))
    return optax.chain(optax.adam(LR), wdax.decoupled(hp['rate'], lr=LR, mask=mask))

  for i, rate in enumerate(rates):
    for k, val in enumerate(folds_of(result)):
      params, _ = loop(
          init, loss, tx, {'rate': rate}, data, ~val, seed=7, epochs=epochs,
          batch_size=batch_size,
      )
      expected = {}
      for side, where in (('train', ~val), ('val', val)):
        logits = model.apply({'params': params}, data['x'][where])
        expected[f'{side}_loss'] = _cross_entropy(logits, data['y'][where])
        expected[f'{side}_accuracy'] = np.mean(np.argmax(logits, -1) == data['y'][where])
      _assert_metrics(result, i, k, expected)
  assert not np.allclose(result.curves['val_loss'][0], result.curves['val_loss'][1])


class _Normed(nn.Module):
  """A classifier with BatchNorm: statistics to carry, and to use at eval."""

  @nn.compact
  def __call__(self, x, *, train=False):
    x = nn.Dense(8, use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    return nn.Dense(3)(nn.relu(x))


@pytest.mark.slow  # a BatchNorm grid and its loop (5 CPU-s)
def test_batch_norm_statistics_are_carried_and_used_at_evaluation():
  data = _classes()
  model = _Normed()
  result = sweep.grid(
      sweep.classifier(model), data, {'rate': [0.1]},
      optimizer=lambda rate: optax.chain(wdax.l2(rate), optax.adam(LR)),
      folds=2, epochs=2, batch_size=8,
  )

  def init(key):
    variables = model.init(key, data['x'][:1])
    return variables['params'], {'batch_stats': variables['batch_stats']}

  def loss(params, state, batch, key, hp):
    logits, new = model.apply(
        {'params': params, **state}, batch['x'], train=True, mutable=['batch_stats']
    )
    return _cross_entropy(logits, batch['y']), new

  def tx(hp):
    return optax.chain(wdax.l2(hp['rate']), optax.adam(LR))

  for k, val in enumerate(folds_of(result)):
    # A model with state trains on full minibatches only: BatchNorm would
    # see the padding of a partial one.
    params, state = loop(
        init, loss, tx, {'rate': 0.1}, data, ~val, seed=0, epochs=2, batch_size=8,
        full_batches=True,
    )
    # The statistics moved, and evaluation reads them.
    assert not np.allclose(state['batch_stats']['BatchNorm_0']['mean'], 0.0)
    logits = model.apply({'params': params, **state}, data['x'][val])
    _assert_metrics(result, 0, k, {'val_loss': _cross_entropy(logits, data['y'][val])})


@pytest.mark.slow  # dropout swept, and a loop per point (8 CPU-s)
def test_dropout_swept_beside_the_rate():
  data = _classes()
  model = sweep.MLP(hidden=(16,), outputs=3)
  space = {'rate': [0.0, 0.5], 'dropout': [0.0, 0.4]}
  result = sweep.grid(
      sweep.classifier(model), data, space, optimizer=sweep.kind('adamw', lr=LR),
      folds=2, seeds=[3], epochs=2, batch_size=8,
  )
  assert result.points == [
      {'rate': 0.0, 'dropout': 0.0}, {'rate': 0.0, 'dropout': 0.4},
      {'rate': 0.5, 'dropout': 0.0}, {'rate': 0.5, 'dropout': 0.4},
  ]

  def init(key):
    return model.init(key, data['x'][:1])['params'], {}

  def loss(params, state, batch, key, hp):
    logits = model.apply(
        {'params': params}, batch['x'], dropout=hp['dropout'], train=True,
        rngs={'dropout': key},
    )
    return _cross_entropy(logits, batch['y']), state

  def tx(hp):
    return wdax.adamw(LR, weight_decay=hp['rate'])

  for i, point in enumerate(result.points):
    for k, val in enumerate(folds_of(result)):
      params, _ = loop(init, loss, tx, point, data, ~val, seed=3, epochs=2, batch_size=8)
      logits = model.apply({'params': params}, data['x'][val])
      _assert_metrics(result, i, k, {'val_loss': _cross_entropy(logits, data['y'][val])})
  # Dropout changed the training.
  assert not np.allclose(result.curves['val_loss'][0], result.curves['val_loss'][1])


# --- classifier, NNX ----------------------------------------------------------------


class _NnxNet(nnx.Module):
  def __init__(self, rngs):
    # No bias before BatchNorm: its gradient is zero but for rounding, which
    # Adam would magnify.
    self.hidden = nnx.Linear(4, 8, use_bias=False, rngs=rngs)
    self.norm = nnx.BatchNorm(8, momentum=0.5, rngs=rngs)
    self.drop = nnx.Dropout(0.3)
    self.out = nnx.Linear(8, 3, rngs=rngs)

  def __call__(self, x, *, rngs=None):
    return self.out(self.drop(nnx.relu(self.norm(self.hidden(x))), rngs=rngs))


def _nnx_net(rngs):
  return _NnxNet(rngs)


@pytest.mark.slow  # an NNX grid and its loop (9 CPU-s)
def test_nnx_model_grid_equals_a_loop():
  data = _classes()
  rates = [0.0, 0.5]
  result = sweep.grid(
      sweep.classifier(_nnx_net), data, {'rate': rates},
      optimizer=lambda rate: optax.chain(wdax.l2(rate), optax.adam(LR)),
      folds=2, seeds=[1], epochs=2, batch_size=8,
  )
  for i, rate in enumerate(rates):
    for k, val in enumerate(folds_of(result)):
      model = _nnx_net(nnx.Rngs(jax.random.key(1)))
      optimizer = nnx.Optimizer(
          model, optax.chain(wdax.l2(rate), optax.adam(LR)), wrt=nnx.Param
      )
      model.train()

      @nnx.jit
      def step(model, optimizer, batch, key):
        def objective(model):
          return _cross_entropy(model(batch['x'], rngs=nnx.Rngs(dropout=key)), batch['y'])

        optimizer.update(model, nnx.grad(objective)(model))

      members = np.flatnonzero(~val)
      for e in range(2):
        noise = np.random.default_rng([1, e]).random(len(val))
        visit = members[np.argsort(noise[members], kind='stable')]
        epoch_key = jax.random.fold_in(jax.random.key(1), e)
        # Full minibatches only: the model has state (BatchNorm).
        for j, start in enumerate(range(0, len(visit) - 7, 8)):
          batch = take(data, visit[start : start + 8])
          step(model, optimizer, batch, jax.random.fold_in(epoch_key, j))
      model.eval()
      logits = model(data['x'][val])
      _assert_metrics(result, i, k, {'val_loss': _cross_entropy(logits, data['y'][val])})


# --- regressor --------------------------------------------------------------------


@pytest.mark.slow  # a regressor grid and its loop (7 CPU-s); r2 stays in the fast loop
def test_regressor_grid_equals_a_loop_and_r2_is_sklearns():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(50, 3)).astype(np.float32)
  y = (x @ np.array([1.0, -2.0, 0.5]) + 0.3 * rng.normal(size=50)).astype(np.float32)
  data = {'x': x, 'y': y}
  model = sweep.MLP(hidden=(8,), outputs=1)
  rates = [0.0, 1.0]
  result = sweep.grid(
      sweep.regressor(model), data, {'rate': rates}, optimizer=sweep.kind('adamw', lr=3e-2),
      folds=3, epochs=4, batch_size=8,
  )
  np.testing.assert_array_equal(result.fold_ids, sweep.shuffled_folds(50, 3))

  def init(key):
    return model.init(key, x[:1])['params'], {}

  def loss(params, state, batch, key, hp):
    pred = model.apply({'params': params}, batch['x'])[:, 0]
    return jnp.mean((pred - batch['y']) ** 2), state

  def tx(hp):
    return wdax.adamw(3e-2, weight_decay=hp['rate'])

  for i, rate in enumerate(rates):
    for k, val in enumerate(folds_of(result)):
      params, _ = loop(
          init, loss, tx, {'rate': rate}, data, ~val, seed=0, epochs=4, batch_size=8
      )
      expected = {}
      for side, where in (('train', ~val), ('val', val)):
        pred = np.asarray(model.apply({'params': params}, x[where]))[:, 0]
        expected[f'{side}_loss'] = np.mean((pred - y[where]) ** 2)
        expected[f'{side}_r2'] = sklearn.metrics.r2_score(y[where], pred)
      _assert_metrics(result, i, k, expected, rtol=1e-4)


def test_r2_of_several_targets_is_sklearns_uniform_average():
  task = sweep.regressor(sweep.MLP(hidden=(4,), outputs=2))
  rng = np.random.default_rng(0)
  y = rng.normal(size=(9, 2)).astype(np.float32)
  pred = rng.normal(size=(9, 2)).astype(np.float32)
  weight = np.array([1, 1, 0, 1, 1, 1, 0, 1, 1], np.float32)

  class Fixed(nn.Module):
    @nn.compact
    def __call__(self, x):
      return x + 0.0 * self.param('b', nn.initializers.zeros, ())

  task = sweep.regressor(Fixed())
  params, state = task.init(jax.random.key(0), {'x': pred[:1], 'y': y[:1]})
  loss, metrics, _ = task.loss(params, {'x': pred, 'y': y}, None, {}, weight=weight, state=state)
  kept = weight > 0
  np.testing.assert_allclose(metrics['r2'], sklearn.metrics.r2_score(y[kept], pred[kept]), rtol=1e-5)
  np.testing.assert_allclose(loss, np.mean((pred[kept] - y[kept]) ** 2), rtol=1e-5)


# --- language model ------------------------------------------------------------------


@pytest.mark.slow  # a transformer grid and its loop, the heaviest test of the fast loop (25 CPU-s)
def test_language_model_grid_equals_a_loop():
  rng = np.random.default_rng(2)
  # Rows of a repeating pattern with noise: something to learn.
  base = (np.arange(9)[None, :] + rng.integers(0, 3, size=(30, 1))) % 7
  tokens = np.where(rng.random((30, 9)) < 0.1, rng.integers(0, 7, (30, 9)), base).astype(np.int32)
  data = {'tokens': tokens}
  model = sweep.TinyTransformer(vocab=7, width=8, heads=2, blocks=1, classes=None, positions=8)
  result = sweep.grid(
      sweep.language_model(model), data, {'rate': [0.0, 0.5]},
      optimizer=sweep.kind('adamw', lr=3e-2), folds=3, epochs=2, batch_size=8,
  )
  assert result.curves['val_loss'].dtype == np.float32
  np.testing.assert_array_equal(result.fold_ids, np.repeat([0, 1, 2], 10))

  def init(key):
    return model.init(key, tokens[:1, :-1])['params'], {}

  def per_token(params, rows):
    logits = model.apply({'params': params}, rows[:, :-1])
    return optax.softmax_cross_entropy_with_integer_labels(logits, rows[:, 1:]), logits

  def loss(params, state, batch, key, hp):
    return per_token(params, batch['tokens'])[0].mean(), state

  def tx(hp):
    return wdax.adamw(3e-2, weight_decay=hp['rate'])

  for i, rate in enumerate([0.0, 0.5]):
    for k, val in enumerate(folds_of(result)):
      params, _ = loop(
          init, loss, tx, {'rate': rate}, data, ~val, seed=0, epochs=2, batch_size=8
      )
      losses, logits = per_token(params, tokens[val])
      accuracy = np.mean(np.argmax(logits, -1) == tokens[val][:, 1:])
      _assert_metrics(result, i, k, {'val_loss': losses.mean(), 'val_accuracy': accuracy})


# --- the task contract -------------------------------------------------------------


def test_a_loss_without_weight_trains_on_full_minibatches_only():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(30, 2)).astype(np.float32)
  data = {'x': x, 'y': (x @ np.array([2.0, -1.0])).astype(np.float32)}

  def init(key, batch):
    return {'w': jnp.zeros(2)}

  def loss(params, batch, key, hp):
    err = batch['x'] @ params['w'] - batch['y']
    return jnp.mean(err**2), {'mae': jnp.mean(jnp.abs(err))}

  task = sweep.Task(init=init, loss=loss)
  assert not task.weighted and not task.stateful
  # 20 training examples per fold, batches of 6: 3 full ones, 2 left out.
  result = sweep.grid(
      task, data, {'lr': [0.05]}, optimizer=lambda lr: optax.sgd(lr), folds=3,
      epochs=3, batch_size=6,
  )
  def reference_loss(params, state, batch, key, hp):
    return loss(params, batch, key, hp)[0], state

  def tx(hp):
    return optax.sgd(hp['lr'])

  for k, val in enumerate(folds_of(result)):
    params, _ = loop(
        lambda key: ({'w': jnp.zeros(2)}, {}), reference_loss, tx, {'lr': 0.05}, data,
        ~val, seed=0, epochs=3, batch_size=6, full_batches=True,
    )
    err = x[val] @ np.asarray(params['w']) - data['y'][val]
    _assert_metrics(result, 0, k, {'val_loss': np.mean(err**2), 'val_mae': np.mean(np.abs(err))})


@pytest.mark.parametrize(
    ('make', 'error', 'match'),
    [
        (lambda: sweep.Task(init=1, loss=lambda p, b, k, h: 0), TypeError, 'init must be callable'),
        (lambda: sweep.Task(init=len, loss=len, folds='random'), ValueError, "folds must be one of"),
        (lambda: sweep.Task(init=len, loss=len, folds='stratified'), ValueError, 'give labels'),
        (lambda: sweep.Task(init=len, loss=len, hyperparameters='dropout'), TypeError, 'tuple of names'),
        (lambda: sweep.classifier(nnx.Linear(2, 2, rngs=nnx.Rngs(0))), TypeError, 'not a built module'),
        (lambda: sweep.classifier('mlp'), TypeError, 'linen Module or a function'),
    ],
)
def test_bad_tasks(make, error, match):
  with pytest.raises(error, match=match):
    make()


@pytest.mark.parametrize(
    ('task', 'data', 'match'),
    [
        (sweep.classifier(sweep.MLP(hidden=(4,), outputs=2)), _classes(), r'one logit per class \(3 classes\)'),
        (sweep.classifier(sweep.MLP(hidden=(4,), outputs=3)), {'x': np.ones((4, 2)), 'y': np.ones(4)}, "must be a vector of integer class labels"),
        (sweep.classifier(sweep.MLP(hidden=(4,), outputs=3)), {'inputs': np.ones((4, 2))}, "must be a dict with 'x'"),
        (sweep.regressor(sweep.MLP(hidden=(4,), outputs=2)), {'x': np.ones((4, 2)), 'y': np.ones(4)}, r'output 1 value\(s\) per example'),
        (sweep.language_model(sweep.TinyTransformer(vocab=5, width=8, heads=2, blocks=1, classes=None)), {'tokens': np.ones((4, 3), np.float32)}, 'int token rows'),
        (sweep.language_model(sweep.TinyTransformer(vocab=5, width=8, heads=2, blocks=1, classes=None)), {'tokens': np.full((4, 3), 7)}, r'ids 0 \.\. 7'),
    ],
)
def test_built_in_tasks_check_their_data(task, data, match):
  with pytest.raises(ValueError, match=match):
    sweep.grid(task, data, {'rate': [0.1]}, optimizer=sweep.kind('l2'), folds=2, epochs=1)


def test_mean_weights_rows():
  values = jnp.array([[1.0, 3.0], [5.0, 7.0], [100.0, 100.0]])
  assert float(sweep.mean(values, jnp.array([1.0, 1.0, 0.0]))) == 4.0
  assert float(sweep.mean(values)) == pytest.approx(216 / 6)


class _Deterministic(nn.Module):
  """Flax's own convention: a ``deterministic`` flag for dropout."""

  @nn.compact
  def __call__(self, x, *, deterministic=True):
    x = nn.Dropout(0.5, deterministic=deterministic)(nn.relu(nn.Dense(16)(x)))
    return nn.Dense(3)(x)


@pytest.mark.slow  # two grids of a dropout model (6 CPU-s)
def test_a_deterministic_flag_is_the_negation_of_training():
  data = _classes()
  model = _Deterministic()
  result = sweep.grid(
      sweep.classifier(model), data, {'rate': [0.1]}, optimizer=sweep.kind('l2', lr=LR),
      folds=2, seeds=[5], epochs=2, batch_size=8,
  )

  def init(key):
    return model.init(key, data['x'][:1])['params'], {}

  def loss(params, state, batch, key, hp):
    logits = model.apply(
        {'params': params}, batch['x'], deterministic=False, rngs={'dropout': key}
    )
    return _cross_entropy(logits, batch['y']), state

  def tx(hp):
    return optax.chain(wdax.l2(hp['rate']), optax.adam(LR))

  for k, val in enumerate(folds_of(result)):
    params, _ = loop(init, loss, tx, {'rate': 0.1}, data, ~val, seed=5, epochs=2, batch_size=8)
    logits = model.apply({'params': params}, data['x'][val])
    _assert_metrics(result, 0, k, {'val_loss': _cross_entropy(logits, data['y'][val])})
