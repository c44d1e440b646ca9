"""Tests of wdax.sweep: folds, the vmapped grid against a plain loop, choice."""

import functools
import json
import math
import os
import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

import wdax
from wdax import sweep

LR = 1e-2
MODEL = sweep.MLP(hidden=(8,), classes=3)


def _data(n=60, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
  return x, y


# --- folds ----------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    counts=st.lists(st.integers(5, 40), min_size=2, max_size=6),
    folds=st.integers(2, 5),
    seed=st.integers(0, 100),
)
def test_stratified_folds_partition_and_balance(counts, folds, seed):
  y = np.repeat(np.arange(len(counts)), counts)
  y = np.random.default_rng(seed).permutation(y)
  masks = sweep.stratified_folds(y, folds, seed=seed)
  assert masks.shape == (folds, len(y)) and masks.dtype == bool
  # Every example is validated in exactly one fold.
  np.testing.assert_array_equal(masks.sum(axis=0), 1)
  # Each class is spread evenly: its per-fold counts differ by at most one.
  for c in range(len(counts)):
    per_fold = masks[:, y == c].sum(axis=1)
    assert per_fold.max() - per_fold.min() <= 1
    assert per_fold.sum() == counts[c]
  sizes = masks.sum(axis=1)
  assert sizes.max() - sizes.min() <= 1


def test_stratified_folds_depend_on_the_seed_only():
  y = np.repeat([0, 1, 2], [10, 11, 12])
  a = sweep.stratified_folds(y, 3, seed=1)
  np.testing.assert_array_equal(a, sweep.stratified_folds(y, 3, seed=1))
  assert (a != sweep.stratified_folds(y, 3, seed=2)).any()


@pytest.mark.parametrize(
    ('y', 'folds', 'match'),
    [
        ([0, 0, 1, 1, 1], 3, 'class 0 has 2 examples, fewer than the 3 folds'),
        ([0, 1, 0, 1], 1, 'folds must be an int >= 2'),
        ([[0, 1]], 2, 'y must be a vector'),
    ],
)
def test_stratified_folds_errors(y, folds, match):
  with pytest.raises(ValueError, match=match):
    sweep.stratified_folds(y, folds)


# --- the grid against a loop ------------------------------------------------


def _reference(kind, rate, mask):
  """The optimiser each kind stands for, built with a Python float rate."""
  if kind == 'l2':
    return optax.chain(wdax.l2(rate, mask=mask), optax.adam(LR))
  if kind == 'decoupled':
    return optax.chain(optax.adam(LR), wdax.decoupled(rate, lr=LR, mask=mask))
  raise AssertionError(kind)


@functools.cache
def _init():
  return jax.jit(
      lambda key, x: MODEL.init(key, x)['params'],
      compiler_options={'xla_backend_optimization_level': 0},
  )


@functools.cache
def _step(kind, rate, mask):
  """A jitted step of the optimiser ``kind`` at the Python float ``rate``."""
  tx = _reference(kind, rate, mask)

  @jax.jit
  def step(params, opt_state, xb, yb):
    def loss(p):
      logits = MODEL.apply({'params': p}, xb)
      return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    grads = jax.grad(loss)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  return tx, step


def _loop(x, y, train, kind, rate, seed, epochs, batch_size, mask):
  """Trains one model with a plain Python loop over a jitted step.

  Follows the schedule documented by ``grid``: ``key(seed)`` initialises,
  and epoch ``e`` visits the training examples in increasing order of
  ``np.random.default_rng([seed, e]).random(n)``.
  """
  params = _init()(jax.random.key(seed), x[:1])
  tx, step = _step(kind, rate, mask)
  opt_state = tx.init(params)
  members = np.flatnonzero(train)
  for e in range(epochs):
    noise = np.random.default_rng([seed, e]).random(len(x))
    order = members[np.argsort(noise[members])]
    for start in range(0, len(order), batch_size):
      batch = order[start : start + batch_size]
      params, opt_state = step(params, opt_state, x[batch], y[batch])
  return params


def _metrics(params, x, y, where):
  logits = np.asarray(MODEL.apply({'params': params}, x[where]))
  logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
  loss = -logp[np.arange(len(logp)), y[where]].mean()
  accuracy = (logits.argmax(1) == y[where]).mean()
  return loss, accuracy


@pytest.mark.parametrize('kind', ['l2', 'decoupled'])
def test_grid_equals_a_loop_of_the_same_trainings(kind):
  x, y = _data()
  mask = wdax.masks.flax_default()
  rates, folds, epochs, batch_size = [0.05, 3.0], 2, 3, 8
  result = sweep.grid(
      MODEL, x, y, rates, kind=kind, lr=LR, mask=mask, folds=folds, seeds=[7],
      epochs=epochs, batch_size=batch_size, evals=epochs,
  )
  np.testing.assert_array_equal(result.epochs, [1, 2, 3])
  val = sweep.stratified_folds(y, folds)
  for i, rate in enumerate(rates):
    for k in range(folds):
      params = _loop(x, y, ~val[k], kind, rate, 7, epochs, batch_size, mask)
      train_loss, train_acc = _metrics(params, x, y, ~val[k])
      val_loss, val_acc = _metrics(params, x, y, val[k])
      got = {m: result.curves[m][i, k, 0, -1] for m in sweep.METRICS}
      np.testing.assert_allclose(got['train_loss'], train_loss, rtol=2e-5)
      np.testing.assert_allclose(got['val_loss'], val_loss, rtol=2e-5)
      np.testing.assert_allclose(got['train_accuracy'], train_acc, atol=1e-6)
      np.testing.assert_allclose(got['val_accuracy'], val_acc, atol=1e-6)
  # The rates matter: the strong decay gives a different loss.
  assert not np.allclose(result.curves['val_loss'][0], result.curves['val_loss'][1])


def test_fit_equals_a_loop_and_returns_its_parameters():
  x, y = _data()
  x_train, y_train, x_test, y_test = x[:45], y[:45], x[45:], y[45:]
  # MODEL with a list attribute: an unhashable module, which is not cached.
  out = sweep.fit(
      sweep.MLP(hidden=[8], classes=3), x_train, y_train, 0.5,
      test=(x_test, y_test), kind='decoupled', lr=LR, seeds=[3], epochs=2,
      batch_size=8,
  )
  train = np.ones(len(x_train), bool)
  params = _loop(x_train, y_train, train, 'decoupled', 0.5, 3, 2, 8, None)
  chex.assert_trees_all_close(
      jax.tree.map(lambda a: a[0], out.params), params, rtol=1e-5, atol=1e-6
  )
  test_loss, test_acc = _metrics(params, x_test, y_test, np.ones(len(x_test), bool))
  np.testing.assert_allclose(out.curves['test_loss'][0, -1], test_loss, rtol=2e-5)
  np.testing.assert_allclose(out.curves['test_accuracy'][0, -1], test_acc, atol=1e-6)
  train_loss, _ = _metrics(params, x_train, y_train, train)
  np.testing.assert_allclose(out.curves['train_loss'][0, -1], train_loss, rtol=2e-5)


def test_select_refits_the_choice_with_the_grids_program():
  x, y = _data()
  x_train, y_train, x_test, y_test = x[:45], y[:45], x[45:], y[45:]
  # A batch size no other test uses, so these programs are compiled here.
  settings = dict(kind='decoupled', lr=LR, seeds=[3], epochs=2, batch_size=9)
  before = set(sweep._PROGRAMS)
  found = sweep.select(
      MODEL, x_train, y_train, [0.01, 0.5, 4.0], test=(x_test, y_test), folds=3,
      **settings,
  )
  assert found.choice == found.result.best()
  assert found.refit.rate == found.choice.rate
  # One set of programs, each compiled once: the refit ran the grid's.
  new = [sweep._PROGRAMS[k] for k in set(sweep._PROGRAMS) - before]
  assert len(new) == 1
  assert sorted(name for name, *_ in new[0].compiled) == ["init", "run"]
  train = np.ones(len(x_train), bool)
  params = _loop(x_train, y_train, train, 'decoupled', found.choice.rate, 3, 2, 9, None)
  chex.assert_trees_all_close(
      jax.tree.map(lambda a: a[0], found.refit.params), params, rtol=1e-5, atol=1e-6
  )
  test_loss, _ = _metrics(params, x_test, y_test, np.ones(len(x_test), bool))
  np.testing.assert_allclose(found.refit.curves['test_loss'][0, -1], test_loss, rtol=2e-5)


@pytest.mark.parametrize('kind', sorted(sweep.KINDS))
def test_every_kind_accepts_a_traced_rate(kind):
  """vmap over the rate inside inject_hyperparams equals a loop of floats."""
  params = {'Dense_0': {'kernel': jnp.array([[0.5, -1.0], [2.0, 0.25]]), 'bias': jnp.array([0.1, -0.2])}}
  grads = {'Dense_0': {'kernel': jnp.array([[0.3, 0.1], [-0.2, 0.4]]), 'bias': jnp.array([0.5, 0.5])}}
  mask = wdax.masks.flax_default()
  rates = jnp.array([0.0, 0.3, 2.0])

  def one(rate):
    tx = optax.inject_hyperparams(lambda rate: sweep.KINDS[kind](rate, LR, mask))(rate=rate)
    state = tx.init(params)
    for _ in range(2):
      updates, state = tx.update(grads, state, params)
    return updates

  batched = jax.jit(jax.vmap(one))(rates)
  for i, rate in enumerate(rates.tolist()):
    tx = sweep.KINDS[kind](rate, LR, mask)
    state = tx.init(params)
    for _ in range(2):
      updates, state = tx.update(grads, state, params)
    chex.assert_trees_all_close(
        jax.tree.map(lambda a, i=i: a[i], batched), updates, rtol=1e-6, atol=1e-9
    )


# --- choosing -----------------------------------------------------------------


def _result(val_accuracy, val_loss, train_accuracy=None, rates=(0.01, 0.1, 1.0)):
  val_accuracy = np.asarray(val_accuracy, np.float32)[:, :, None, None]
  val_loss = np.asarray(val_loss, np.float32)[:, :, None, None]
  train_accuracy = (
      np.ones_like(val_accuracy)
      if train_accuracy is None
      else np.asarray(train_accuracy, np.float32)[:, :, None, None]
  )
  return sweep.Result(
      rates=np.asarray(rates),
      folds=val_accuracy.shape[1],
      seeds=(0,),
      curves={
          'train_loss': np.zeros_like(val_loss),
          'train_accuracy': train_accuracy,
          'val_loss': val_loss,
          'val_accuracy': val_accuracy,
      },
      epochs=np.array([5]),
      chunk_size=3,
      chunks=1,
      devices=1,
      bytes_per_configuration=0,
  )


def test_best_rate_and_standard_error_by_hand():
  result = _result(
      val_accuracy=[[0.80, 0.90, 0.70], [0.90, 0.80, 1.00], [0.60, 0.70, 0.80]],
      val_loss=[[0.5, 0.4, 0.6], [0.3, 0.5, 0.4], [0.9, 0.8, 0.7]],
  )
  choice = result.best('accuracy')
  # Rate 0.1: mean 0.9, sample sd 0.1, s.e. 0.1 / sqrt(3).
  assert choice.rate == 0.1 and choice.index == 1
  np.testing.assert_allclose(choice.mean, 0.9, rtol=1e-6)
  np.testing.assert_allclose(choice.se, 0.1 / math.sqrt(3), rtol=1e-5)
  by_loss = result.best('loss')
  assert by_loss.rate == 0.1
  np.testing.assert_allclose(by_loss.mean, 0.4, rtol=1e-6)
  np.testing.assert_allclose(by_loss.se, 0.1 / math.sqrt(3), rtol=1e-5)
  mean, se = result.summary('val_accuracy')
  np.testing.assert_allclose(mean, [0.8, 0.9, 0.7], rtol=1e-6)
  np.testing.assert_allclose(se, [0.1 / math.sqrt(3)] * 3, rtol=1e-5)


def test_accuracy_ties_go_to_the_lower_loss():
  result = _result(
      val_accuracy=[[0.9, 0.8], [0.8, 0.9], [0.5, 0.5]],
      val_loss=[[0.4, 0.4], [0.3, 0.3], [0.1, 0.1]],
  )
  assert result.best('accuracy').rate == 0.1
  assert result.best('loss').rate == 1.0
  assert result.best() == result.best('loss')  # the default


def test_one_standard_error_rule_takes_the_largest_rate_within_it():
  result = _result(
      val_accuracy=[[0.80, 0.90, 0.70], [0.90, 0.80, 1.00], [0.84, 0.86, 0.85]],
      val_loss=[[0.5, 0.4, 0.6], [0.3, 0.5, 0.4], [0.9, 0.8, 0.7]],
  )
  # Best is 0.1 (0.9 ± 0.0577); 1.0 has mean 0.85 >= 0.9 - 0.0577.
  assert result.best('accuracy', one_se=True).rate == 1.0
  assert result.best('accuracy').rate == 0.1


def test_table_reports_the_gap_by_hand():
  result = _result(
      val_accuracy=[[0.8, 0.9], [0.9, 0.9], [0.6, 0.7]],
      val_loss=[[0.5, 0.4], [0.3, 0.5], [0.9, 0.8]],
      train_accuracy=[[1.0, 0.9], [0.95, 0.95], [0.7, 0.7]],
  )
  rows = result.table()
  assert [r['rate'] for r in rows] == [0.01, 0.1, 1.0]
  # Rate 0.01: gaps 0.2 and 0.0, mean 0.1, s.e. sd(0.2, 0) / sqrt(2) = 0.1.
  np.testing.assert_allclose(rows[0]['gap'], 0.1, atol=1e-6)
  np.testing.assert_allclose(rows[0]['gap_se'], 0.1, atol=1e-6)
  np.testing.assert_allclose(rows[1]['gap'], 0.05, atol=1e-6)
  np.testing.assert_allclose(rows[1]['gap_se'], 0.0, atol=1e-6)
  np.testing.assert_allclose(rows[2]['val_accuracy'], 0.65, atol=1e-6)


def test_unknown_criterion_and_metric():
  result = _result([[0.8, 0.9]] * 3, [[0.5, 0.4]] * 3)
  with pytest.raises(ValueError, match='unknown criterion'):
    result.best('f1')
  with pytest.raises(ValueError, match='unknown metric'):
    result.final('f1')


# --- chunks, devices, progress --------------------------------------------------


@pytest.mark.parametrize(
    ('configurations', 'devices', 'limit', 'expected'),
    [
        (80, 1, 80, (80, 1)),
        (80, 1, 18, (16, 5)),  # 5 chunks of 16 pad nothing; 5 of 18 would
        (80, 2, 38, (20, 4)),  # 4 of 20 pad nothing; 3 of 28 would pad 4
        (7, 2, 100, (8, 1)),  # a multiple of the device count
        (3, 8, 1, (8, 1)),  # never fewer than one per device
    ],
)
def test_chunk_sizes(configurations, devices, limit, expected):
  assert sweep._chunking(configurations, devices, 1, limit, None, 0) == expected


def test_memory_budget_sets_the_chunk_size():
  # 3 configurations fit the budget: 4 chunks of 3 would pad 2; 5 of 2 pad none.
  assert sweep._chunking(10, 1, 1000, None, 3000, 0) == (2, 5)
  # Without a budget argument, the default one applies; 2 per device fit.
  assert sweep._chunking(10, 2, 1000, None, None, 2000) == (2, 5)


def test_chunks_give_the_result_of_one_chunk():
  x, y = _data()
  settings = dict(kind='decoupled', lr=LR, folds=2, seeds=2, epochs=2, batch_size=8)
  rates = [0.0, 0.1, 1.0]
  whole = sweep.grid(MODEL, x, y, rates, **settings)
  calls = []
  chunked = sweep.grid(
      MODEL, x, y, rates, chunk_size=5, progress=lambda d, t: calls.append((d, t)),
      **settings,
  )
  assert (whole.chunk_size, whole.chunks) == (12, 1)
  # 12 configurations in chunks of at most 5: three chunks of 4.
  assert (chunked.chunk_size, chunked.chunks) == (4, 3)
  assert calls == [(i, 6) for i in range(1, 7)]  # 3 chunks x 2 evaluations
  for name in sweep.METRICS:
    np.testing.assert_allclose(chunked.curves[name], whole.curves[name], rtol=1e-6, atol=1e-7)
  # A budget for 4 configurations gives the same chunks (and reuses the
  # compiled program).
  by_memory = sweep.grid(
      MODEL, x, y, rates, memory=whole.bytes_per_configuration * 4, **settings
  )
  assert (by_memory.chunk_size, by_memory.chunks) == (4, 3)
  for name in sweep.METRICS:
    np.testing.assert_allclose(by_memory.curves[name], whole.curves[name], rtol=1e-6, atol=1e-7)


def test_evaluation_points():
  np.testing.assert_array_equal(sweep._evaluation_points(20, 10), np.arange(2, 21, 2))
  np.testing.assert_array_equal(sweep._evaluation_points(7, 10), np.arange(1, 8))
  np.testing.assert_array_equal(sweep._evaluation_points(13, 5), [3, 5, 8, 10, 13])


_WORKER = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    from wdax import sweep
    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4)).astype(np.float32)
    y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
    settings = dict(kind='l2', lr=1e-2, folds=3, epochs=2, batch_size=8)
    model = sweep.MLP(hidden=(8,), classes=3)
    rates = [0.0, 0.1, 1.0]
    eight = sweep.grid(model, x, y, rates, devices=8, **settings)
    one = sweep.grid(model, x, y, rates, devices=1, **settings)
    print(json.dumps({
        'devices': [eight.devices, one.devices],
        'chunk_size': [eight.chunk_size, one.chunk_size],
        'max_difference': max(
            float(np.max(np.abs(eight.curves[m] - one.curves[m]))) for m in sweep.METRICS
        ),
        'val_loss': eight.curves['val_loss'].ravel().tolist(),
    }))
    """
)


def test_eight_devices_give_the_result_of_one():
  env = dict(os.environ)
  env['XLA_FLAGS'] = (env.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
  env['JAX_PLATFORMS'] = 'cpu'
  done = subprocess.run(
      [sys.executable, '-c', _WORKER], env=env, capture_output=True, text=True,
      timeout=300, check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  # 9 configurations: one chunk of 16 over 8 devices, 7 of them padding.
  assert out['devices'] == [8, 1]
  assert out['chunk_size'] == [16, 9]
  assert out['max_difference'] < 1e-5
  assert len(set(np.round(out['val_loss'], 6))) > 1


# --- checks -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ('change', 'match'),
    [
        (dict(rates=[]), 'rates is empty'),
        (dict(rates=[0.1, -1.0]), 'finite and non-negative'),
        (dict(rates=[float('nan')]), 'finite and non-negative'),
        (dict(folds=40), 'fewer than the 40 folds'),
        (dict(kind='adamx'), "unknown kind 'adamx'"),
        (dict(kind=lambda rate, lr: optax.adam(lr), mask=wdax.masks.flax_default()), 'mask applies to named kinds'),
        (dict(epochs=0), 'epochs must be an int >= 1'),
        (dict(seeds=[]), 'seeds is empty'),
        (dict(model=sweep.MLP(hidden=(4,), classes=2)), 'one logit per class'),
        (dict(devices=99), 'devices=99'),
    ],
)
def test_grid_rejects_bad_arguments(change, match):
  x, y = _data()
  args = dict(model=MODEL, x=x, y=y, rates=[0.1], folds=2, epochs=1)
  args.update(change)
  with pytest.raises(ValueError, match=match):
    sweep.grid(**args)


@pytest.mark.parametrize(
    ('x', 'y', 'match'),
    [
        (np.array([[0.0, np.nan], [1.0, 1.0]]), [0, 1], 'NaN or infinite values in 1 rows'),
        (np.ones((3, 2)), [0, 1], 'one label per row'),
        (np.ones((2, 2)), [0.5, 1.0], 'integer class labels'),
        (np.ones((2, 2)), [-1, 1], 'labels 0, 1'),
        (np.ones(3), [0, 1, 0], 'at least 2-D'),
    ],
)
def test_check_data_errors(x, y, match):
  with pytest.raises(ValueError, match=match):
    sweep.check_data(x, y)


def test_import_wdax_stays_light():
  code = 'import sys, wdax; print(any(m.startswith("flax") for m in sys.modules), "wdax.sweep" in sys.modules, "wdax.cli" in sys.modules)'
  done = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, check=True)
  assert done.stdout.split() == ['False', 'False', 'False']
