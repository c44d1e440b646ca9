"""Tests of wdax.sweep.search: grid, fit and select, their references and checks."""

import inspect
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support.sweep_reference import folds_of
from support.sweep_reference import loop

import wdax
from wdax import sweep


def _classes(n=60, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
  return {'x': x, 'y': y}


def _linear(weighted: bool) -> sweep.Task:
  """Half the mean squared error of a linear model ``x w + b``."""

  def init(key, batch):
    return {'w': jnp.zeros(batch['x'].shape[1]), 'b': jnp.zeros(())}

  def errors(params, batch):
    return 0.5 * (batch['x'] @ params['w'] + params['b'] - batch['y']) ** 2

  if weighted:

    def loss(params, batch, key, hp, *, weight):
      return sweep.mean(errors(params, batch), weight), {}

  else:

    def loss(params, batch, key, hp):
      return jnp.mean(errors(params, batch)), {}

  return sweep.Task(init=init, loss=loss)


def _ridge(x, y, rate):
  """The minimiser of ``mean(0.5 (x w + b - y)^2) + rate/2 |w|^2`` in float64:
  the bias is not penalised, so it is fitted to the centred data."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  mx, my = x.mean(axis=0), y.mean()
  xc, yc = x - mx, y - my
  w = np.linalg.solve(xc.T @ xc + len(x) * rate * np.eye(x.shape[1]), xc.T @ yc)
  return w, my - mx @ w


@pytest.mark.parametrize('weighted', [True, False])
def test_ridge_regression_in_closed_form(weighted):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 3)).astype(np.float32)
  y = (x @ np.array([1.5, -2.0, 0.5]) + 0.7 + 0.5 * rng.normal(size=40)).astype(np.float32)
  rates = [0.0, 0.1, 1.0]
  # Full-batch gradient descent: one minibatch of the 30 training examples.
  result = sweep.grid(
      _linear(weighted), {'x': x, 'y': y}, {'rate': rates},
      optimizer=lambda rate: optax.chain(wdax.l2(rate, mask=wdax.masks.include('w')), optax.sgd(0.3)),
      folds=4, epochs=600, batch_size=40 if weighted else 30, evals=1,
  )
  for i, rate in enumerate(rates):
    for k, val in enumerate(folds_of(result)):
      w, b = _ridge(x[~val], y[~val], rate)
      expected = np.mean(0.5 * (x[val].astype(np.float64) @ w + b - y[val]) ** 2)
      np.testing.assert_allclose(result.curves['val_loss'][i, k, 0, -1], expected, rtol=1e-4)
  # Decay that strong changes the answer.
  assert not np.allclose(result.curves['val_loss'][0], result.curves['val_loss'][2], rtol=1e-2)


def test_user_fold_ids():
  rng = np.random.default_rng(1)
  x = rng.normal(size=(24, 2)).astype(np.float32)
  data = {'x': x, 'y': (x @ np.array([1.0, -1.0])).astype(np.float32)}
  ids = np.repeat([2, 0, 1], 8)  # three groups, in an order of our own
  result = sweep.grid(
      _linear(True), data, {'lr': [0.1]}, optimizer=lambda lr: optax.sgd(lr),
      folds=ids, epochs=3, batch_size=5,
  )
  np.testing.assert_array_equal(result.fold_ids, ids)
  assert result.folds == 3

  def loss(params, state, batch, key, hp):
    err = batch['x'] @ params['w'] + params['b'] - batch['y']
    return jnp.mean(0.5 * err**2), state

  for k in range(3):
    val = ids == k
    params, _ = loop(
        lambda key: ({'w': jnp.zeros(2), 'b': jnp.zeros(())}, {}), loss,
        lambda hp: optax.sgd(hp['lr']), {'lr': 0.1}, data, ~val, seed=0, epochs=3,
        batch_size=5,
    )
    err = x[val] @ np.asarray(params['w']) + float(params['b']) - data['y'][val]
    np.testing.assert_allclose(result.curves['val_loss'][0, k, 0, -1], np.mean(0.5 * err**2), rtol=2e-5)


@pytest.mark.slow  # a fit and its loop (7 CPU-s); fit stays in the fast loop through select and its doctest
def test_fit_equals_a_loop_and_returns_its_parameters():
  data = _classes()
  train = {k: v[:45] for k, v in data.items()}
  test = {k: v[45:] for k, v in data.items()}
  # A list attribute: an unhashable model, which is not cached.
  model = sweep.MLP(hidden=[8], outputs=3)
  out = sweep.fit(
      sweep.classifier(model), train, {'rate': 0.5},
      optimizer=sweep.kind('decoupled', lr=1e-2), test=test, seeds=[3], epochs=2,
      batch_size=8,
  )

  def loss(params, state, batch, key, hp):
    logits = model.apply({'params': params}, batch['x'])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['y']).mean(), state

  params, _ = loop(
      lambda key: (model.init(key, train['x'][:1])['params'], {}), loss,
      lambda hp: optax.chain(optax.adam(1e-2), wdax.decoupled(hp['rate'], lr=1e-2)),
      {'rate': 0.5}, train, np.ones(45, bool), seed=3, epochs=2, batch_size=8,
  )
  chex.assert_trees_all_close(jax.tree.map(lambda a: a[0], out.params), params, rtol=1e-5, atol=1e-6)
  logits = model.apply({'params': params}, test['x'])
  test_loss = optax.softmax_cross_entropy_with_integer_labels(logits, test['y']).mean()
  np.testing.assert_allclose(out.test['loss'], test_loss, rtol=2e-5)
  np.testing.assert_allclose(out.test['accuracy'], np.mean(np.argmax(logits, -1) == test['y']), atol=1e-6)
  assert out.point == {'rate': 0.5} and out.seeds == (3,)
  assert sorted(out.curves) == ['test_accuracy', 'test_loss', 'train_accuracy', 'train_loss']


def _counted(task: sweep.Task, traces: list) -> sweep.Task:
  """``task`` with a loss that counts how often it is traced."""

  def loss(params, batch, key, hp, *, weight):
    traces.append(1)
    return task.loss(params, batch, key, hp, weight=weight)

  return sweep.Task(init=task.init, loss=loss)


def test_select_refits_with_the_grids_program():
  rng = np.random.default_rng(2)
  x = rng.normal(size=(50, 2)).astype(np.float32)
  data = {'x': x, 'y': (x @ np.array([1.0, 2.0]) + 0.1 * rng.normal(size=50)).astype(np.float32)}
  settings = dict(folds=3, epochs=3, batch_size=7)
  space = {'rate': [0.0, 0.3, 3.0]}

  def optimizer(rate):
    return optax.chain(wdax.l2(rate), optax.sgd(0.1))

  grid_traces, select_traces = [], []
  sweep.grid(_counted(_linear(True), grid_traces), data, space, optimizer=optimizer, **settings)
  found = sweep.select(
      _counted(_linear(True), select_traces), data, space, optimizer=optimizer,
      test=data, **settings,
  )
  # The select traced the loss as often as the grid alone, and once more for
  # its test program: the refit compiled no training program of its own.
  assert len(select_traces) == len(grid_traces) + 1
  assert found.choice.point == found.result.best('val_loss') == found.refit.point
  refit = sweep.fit(_linear(True), data, found.choice.point, optimizer=optimizer, test=data, **{
      k: v for k, v in settings.items() if k != 'folds'})
  chex.assert_trees_all_close(found.refit.params, refit.params, rtol=1e-6)
  np.testing.assert_allclose(found.refit.test['loss'], refit.test['loss'], rtol=1e-6)


def test_a_repeated_grid_traces_nothing():
  data = _classes()
  traces = []
  task = _counted(_linear(True), traces)
  data = {'x': data['x'], 'y': data['x'][:, 0]}
  args = dict(optimizer=lambda rate: optax.sgd(0.1), folds=2, epochs=2, batch_size=8)
  space = {'rate': [0.0]}
  optimizer = args.pop('optimizer')
  first = sweep.grid(task, data, space, optimizer=optimizer, **args)
  count = len(traces)
  again = sweep.grid(task, data, space, optimizer=optimizer, **args)
  assert count > 0 and len(traces) == count
  np.testing.assert_array_equal(first.curves['val_loss'], again.curves['val_loss'])


def test_select_chooses_by_the_metric_and_mode():
  data = _classes()
  found = sweep.select(
      sweep.classifier(sweep.MLP(hidden=(8,), outputs=3)), data, {'rate': [1e-3, 10.0]},
      optimizer=sweep.kind('adamw', lr=3e-2), metric='val_accuracy', mode='max',
      folds=2, epochs=2, batch_size=8,
  )
  assert found.choice.metric == 'val_accuracy' and found.choice.mode == 'max'
  assert found.choice == found.result.choose('val_accuracy', 'max')
  assert found.refit.test == {}


def test_diverged_trainings_are_marked_never_chosen_and_spare_their_neighbours():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(30, 2)).astype(np.float32)
  data = {'x': x, 'y': (x @ np.array([1.0, 2.0])).astype(np.float32)}
  settings = dict(optimizer=lambda lr: optax.sgd(lr), folds=3, epochs=4, batch_size=5)
  both = sweep.grid(_linear(True), data, {'lr': [0.05, 1e4]}, **settings)
  alone = sweep.grid(_linear(True), data, {'lr': [0.05]}, **settings)
  np.testing.assert_array_equal(both.diverged[0], False)
  np.testing.assert_array_equal(both.diverged[1], True)
  for name in both.metrics:
    np.testing.assert_allclose(both.curves[name][:1], alone.curves[name], rtol=1e-6)
  assert both.best('val_loss') == {'lr': 0.05}
  assert [row['diverged'] for row in both.table()] == [0, 3]
  mean, _ = both.summary('val_loss')
  assert np.isfinite(mean[0]) and np.isnan(mean[1])


# --- checks -----------------------------------------------------------------------


def _args(**change):
  args = dict(
      task=sweep.classifier(sweep.MLP(hidden=(4,), outputs=3)), data=_classes(),
      space={'rate': [0.1]}, optimizer=sweep.kind('adamw'), folds=2, epochs=1,
  )
  args.update(change)
  return args


@pytest.mark.parametrize(
    ('change', 'error', 'match'),
    [
        (dict(space={'rate': []}), ValueError, r"space\['rate'\] is empty"),
        (dict(space={}), ValueError, 'space is empty'),
        (dict(space={'rate': [0.1, -1.0]}), ValueError, r"space\['rate'\]: -1.0 is negative"),
        (dict(space={'rate': [float('nan')]}), ValueError, 'not finite'),
        (dict(space={'rate': [0.1], 'momentum': [0.9]}), ValueError, "space name 'momentum' is used by neither"),
        (dict(space={'lr': [0.1]}, optimizer=lambda rate, lr: optax.sgd(lr)), ValueError, "optimizer requires 'rate'"),
        (dict(data={'x': np.ones((5, 4)), 'y': np.zeros(4, np.int32)}), ValueError, r"data\['y'\] has 4 examples"),
        (dict(folds=np.array([0, 0, 2, 2] * 15)), ValueError, 'fold 1 is empty'),
        (dict(folds=np.zeros(7, int)), ValueError, r'one fold id per example \(60\)'),
        (dict(folds=40), ValueError, 'fewer than the 40 folds'),
        (dict(folds=1), ValueError, 'folds must be an int >= 2'),
        (dict(epochs=0), ValueError, 'epochs must be an int >= 1'),
        (dict(seeds=[]), ValueError, 'seeds is empty'),
        (dict(devices=99), ValueError, 'devices=99'),
        (dict(learning_rate=0.1), TypeError, "unexpected keyword argument 'learning_rate'"),
        (dict(task=sweep.MLP()), TypeError, 'task must be a sweep.Task'),
        (dict(optimizer='adamw'), TypeError, 'optimizer must be a callable'),
    ],
)
def test_grid_rejects_bad_arguments(change, error, match):
  with pytest.raises(error, match=match):
    sweep.grid(**_args(**change))


@pytest.mark.parametrize(
    ('change', 'error', 'match'),
    [
        (dict(metric='val_f1'), ValueError, "unknown metric 'val_f1'"),
        (dict(metric='val_accuracy'), ValueError, "give mode='min' or mode='max'"),
        (dict(mode='lowest'), ValueError, "unknown mode 'lowest'"),
        (dict(one_se='dropout'), ValueError, "no 'dropout'"),
        (dict(test={'x': np.ones((3, 5), np.float32), 'y': np.zeros(3, np.int32)}), ValueError, r"test\['x'\] has shape \(5,\)"),
    ],
)
def test_select_rejects_bad_arguments_before_training(change, error, match):
  traces = []
  task = sweep.classifier(sweep.MLP(hidden=(4,), outputs=3))
  args = _args(task=task, **change)
  optimizer = args['optimizer']

  def counting(rate):
    traces.append(1)
    return optimizer(rate)

  args['optimizer'] = counting
  with pytest.raises(error, match=match):
    sweep.select(**args)
  # Caught before anything compiled: only the check's tracing ran.
  assert len(traces) <= 3


def test_a_loss_without_weight_needs_a_full_minibatch():
  data = {'x': np.ones((6, 2), np.float32), 'y': np.ones(6, np.float32)}
  with pytest.raises(ValueError, match='batch_size 8 exceeds the 3 training examples of fold 0'):
    sweep.grid(_linear(False), data, {'lr': [0.1]}, optimizer=lambda lr: optax.sgd(lr), folds=2, batch_size=8)


def test_a_loss_breaking_the_contract_is_named():
  def init(key, batch):
    return {'w': jnp.zeros(2)}

  def loss(params, batch, key, hp):
    return batch['x'] @ params['w'], {}

  data = {'x': np.ones((6, 2), np.float32)}
  with pytest.raises(ValueError, match='must be a floating scalar'):
    sweep.grid(sweep.Task(init, loss), data, {'lr': [0.1]}, optimizer=lambda lr: optax.sgd(lr), folds=2, batch_size=2)


def test_signatures_show_the_settings():
  for fn in (sweep.grid, sweep.select):
    assert 'folds' in inspect.signature(fn).parameters
    assert inspect.signature(fn).parameters['epochs'].default == 20
  assert 'folds' not in inspect.signature(sweep.fit).parameters
  with pytest.raises(TypeError, match="unexpected keyword argument 'folds'"):
    sweep.fit(_linear(True), {'x': np.ones((4, 2)), 'y': np.ones(4)}, {'lr': 0.1}, optimizer=lambda lr: optax.sgd(lr), folds=3)


def test_import_wdax_stays_light():
  code = (
      'import sys, wdax; print(any(m.startswith("flax") for m in sys.modules), '
      '"wdax.sweep" in sys.modules, "wdax.cli" in sys.modules)'
  )
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert done.stdout.split() == ['False', 'False', 'False']
