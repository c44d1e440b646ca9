"""Tests of pruned grids (wdax.sweep.grid and select with prune=, trained by
wdax.sweep._runner): the survivors against the unpruned grid's own numbers,
and the checks of prune against the space."""

import dataclasses
import json
import subprocess
import sys

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from support import host_devices

import wdax
from wdax import sweep


def _classes(n=60, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
  return {'x': x, 'y': y}


# --- prune checked against the space -------------------------------------------


def test_grid_checks_prune_before_training_and_fit_does_not_take_it():
  task = sweep.classifier(sweep.MLP(hidden=(4,), outputs=3))
  with pytest.raises(ValueError, match='min_epochs=3 exceeds epochs=2'):
    sweep.grid(task, _classes(), {'rate': [0.1]}, optimizer=sweep.kind('adamw'), epochs=2, prune=sweep.Halving(3))
  with pytest.raises(TypeError, match="unexpected keyword argument 'prune'"):
    sweep.fit(task, _classes(), {'rate': 0.1}, optimizer=sweep.kind('adamw'), prune=sweep.Halving(1))


def test_one_se_is_checked_against_the_space():
  task = sweep.classifier(sweep.MLP(hidden=(4,), outputs=3))
  with pytest.raises(ValueError, match="prune: one_se names 'lr', which the space lacks; it has 'rate'"):
    sweep.grid(task, _classes(), {'rate': [0.0, 0.1]}, optimizer=sweep.kind('adamw'), epochs=2,
               folds=2, batch_size=8, prune=sweep.Halving(1, one_se='lr'))


def test_keep_is_checked_against_the_space():
  task = sweep.classifier(sweep.MLP(hidden=(4,), outputs=3))
  run = dict(optimizer=sweep.kind('adamw'), epochs=2, folds=2, batch_size=8)
  with pytest.raises(ValueError, match="prune: keep names 'lr', which the space lacks"):
    sweep.grid(task, _classes(), {'rate': [0.0, 0.1]}, prune=sweep.Halving(1, keep={'lr': 0.0}), **run)
  with pytest.raises(ValueError, match="prune: no point of the space has the values keep={'rate': 0.5}"):
    sweep.grid(task, _classes(), {'rate': [0.0, 0.1]}, prune=sweep.Halving(1, keep={'rate': 0.5}), **run)
  with pytest.raises(ValueError, match='keep must be a dict of names of the space to numbers'):
    sweep.Halving(1, keep={'rate': 'none'})
  assert sweep.Halving(1, keep={'rate': 0}) == sweep.Halving(1, keep=(('rate', 0.0),))
  assert hash(sweep.Halving(1, keep={'rate': 0}))


# --- pruned grids -----------------------------------------------------------------


class _NormedDropout(nn.Module):
  """Model state (BatchNorm) and dropout keys, both to be continued."""

  @nn.compact
  def __call__(self, x, *, dropout=0.0, train=False):
    x = nn.Dense(8, use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    x = sweep.dropout(nn.relu(x), dropout, self.make_rng('dropout') if train else None)
    return nn.Dense(3)(x)


SPACE = {'rate': [0.0, 0.1, 1.0], 'dropout': [0.0, 0.3, 0.6]}  # 9 points
SETTINGS = dict(
    optimizer=sweep.kind('adamw', lr=3e-2), folds=2, seeds=2, epochs=9,
    batch_size=8, evals=9, chunk_size=8,
)


@pytest.fixture(scope='module')
def full_and_pruned():
  task = sweep.classifier(_NormedDropout())
  full = sweep.grid(task, _classes(), SPACE, **SETTINGS)
  calls = []
  pruned = sweep.grid(
      task, _classes(), SPACE, prune=sweep.Halving(1, 3),
      progress=lambda done, total: calls.append((done, total)), **SETTINGS,
  )
  return full, pruned, calls


def _rungs_by_mean(full, alive, cuts, reached):
  """Marks in ``reached``, and returns it, the rung each of the ``alive``
  points reaches by the unpruned grid ``full``'s numbers: the ``r``-th cut
  ``(end, keep)`` keeps the ``keep`` of them of lowest mean validation loss
  at epoch ``end``, which reach rung ``r + 1``."""
  for r, (end, keep) in enumerate(cuts):
    at = int(np.flatnonzero(full.epochs == end)[0])
    means = full.curves['val_loss'][alive, :, :, at].mean(axis=(1, 2))
    order = np.argsort(means)
    # The choice is clear: no tie at the cut.
    assert means[order[keep]] - means[order[keep - 1]] > 1e-5
    alive = np.sort(alive[order[:keep]])
    reached[alive] = r + 1
  return reached


def test_the_kept_points_are_the_best_at_each_rung(full_and_pruned):
  full, pruned, _ = full_and_pruned
  # Rungs at 1, 3, 9 epochs; 9 points, then 3, then 1.
  np.testing.assert_array_equal(pruned.rungs, [1, 3, 9])
  expected = _rungs_by_mean(full, np.arange(9), [(1, 3), (3, 1)], np.zeros(9, int))
  np.testing.assert_array_equal(pruned.rung, expected)
  np.testing.assert_array_equal(np.bincount(pruned.rung), [6, 2, 1])
  np.testing.assert_array_equal(pruned.epochs_trained, np.array([1, 3, 9])[expected])
  np.testing.assert_array_equal(pruned.finished, expected == 2)


def test_survivors_equal_the_unpruned_grid(full_and_pruned):
  full, pruned, _ = full_and_pruned
  np.testing.assert_array_equal(pruned.epochs, full.epochs)
  for name in full.metrics:
    for p in range(9):
      trained = pruned.epochs <= pruned.epochs_trained[p]
      # Continued from the state each rung left: the very numbers of an
      # unpruned training, up to float rounding.
      np.testing.assert_allclose(
          pruned.curves[name][p][..., trained], full.curves[name][p][..., trained],
          rtol=1e-6, atol=1e-7, err_msg=f'{name} of point {p}',
      )
      assert np.isnan(pruned.curves[name][p][..., ~trained]).all()
  last = int(np.flatnonzero(pruned.finished)[0])
  assert pruned.best() == full.points[last]


def test_the_one_standard_error_rule_against_the_unpruned_grid(full_and_pruned):
  full, _, _ = full_and_pruned
  task = sweep.classifier(_NormedDropout())
  pruned = sweep.grid(task, _classes(), SPACE, prune=sweep.Halving(1, 2, one_se='rate'), **SETTINGS)
  # Rungs at 1, 2, 4, 8, 9 epochs; 9 points, then 5, 3, 2, 1. The expected
  # survivors, from the unpruned curves, written as the rule reads: the best,
  # then the largest rates within one standard error of it, then by mean.
  np.testing.assert_array_equal(pruned.rungs, [1, 2, 4, 8, 9])
  rates = np.array([p['rate'] for p in full.points])

  def rungs_reached(one_se):
    alive, reached = list(range(9)), np.zeros(9, int)
    for r, (end, keep) in enumerate([(1, 5), (2, 3), (4, 2), (8, 1)]):
      at = int(np.flatnonzero(full.epochs == end)[0])
      losses = {p: full.curves['val_loss'][p, :, :, at].ravel() for p in alive}
      means = {p: float(np.mean(v)) for p, v in losses.items()}
      best = min(alive, key=lambda p: (means[p], p))
      window = means[best] + np.std(losses[best], ddof=1) / np.sqrt(losses[best].size)
      within = sorted((p for p in alive if p != best and means[p] <= window and one_se),
                      key=lambda p: (-rates[p], means[p], p))
      rest = sorted((p for p in alive if p != best and p not in within), key=lambda p: (means[p], p))
      alive = sorted(([best] + within + rest)[:keep])
      reached[alive] = r + 1
    return reached

  np.testing.assert_array_equal(pruned.rung, rungs_reached(True))
  # The rule matters here: by the mean alone, other points would go on.
  assert not np.array_equal(rungs_reached(True), rungs_reached(False))
  for p in range(9):
    trained = pruned.epochs <= pruned.epochs_trained[p]
    np.testing.assert_allclose(
        pruned.curves['val_loss'][p][..., trained], full.curves['val_loss'][p][..., trained],
        rtol=1e-6, atol=1e-7,
    )


def test_configuration_epochs_and_calls_by_hand(full_and_pruned):
  full, pruned, calls = full_and_pruned
  # 4 trainings a point: 9 points for 1 epoch, 3 for 2 more, 1 for 6 more.
  assert pruned.configuration_epochs == 4 * (9 * 1 + 3 * 2 + 1 * 6) == 84
  assert full.configuration_epochs == 9 * 4 * 9
  # At most 8 a chunk: 36 configurations in 6 chunks of 6 (5 of 8 would
  # pad 4), kept for every rung: 6 chunks x 1 evaluation, then 12
  # configurations in 2 chunks x 2 evaluations, then 4 in 1 chunk x 6.
  assert (pruned.chunk_size, pruned.chunks) == (full.chunk_size, full.chunks) == (6, 6)
  assert calls == [(i, 6 + 4 + 6) for i in range(1, 17)]


def test_a_pruned_summary_and_table_are_at_the_last_rung(full_and_pruned):
  full, pruned, _ = full_and_pruned
  mean, _ = pruned.summary('val_loss')
  at = np.searchsorted(full.epochs, pruned.epochs_trained)
  expected = full.curves['val_loss'][np.arange(9), :, :, at].mean(axis=(1, 2))
  np.testing.assert_allclose(mean, expected, rtol=1e-6)
  rows = pruned.table()
  assert [row['rung'] for row in rows] == pruned.rung.tolist()
  assert [row['epochs_trained'] for row in rows] == pruned.epochs_trained.tolist()
  assert [row['diverged'] for row in rows] == [0] * 9


def test_kept_points_train_every_epoch_and_the_others_are_halved(full_and_pruned):
  full, _, _ = full_and_pruned
  task = sweep.classifier(_NormedDropout())
  halving = sweep.Halving(1, 3, keep={'rate': 0.0})
  kept = sweep.grid(task, _classes(), SPACE, prune=halving, **SETTINGS)
  spared = np.array([p['rate'] == 0.0 for p in full.points])  # points 0, 1, 2
  # The 3 points without decay train on; the 6 others are halved: 6, 2, 1.
  assert halving.points(9, 9, kept=3) == (9, 5, 4)
  np.testing.assert_array_equal(kept.rung[spared], [2, 2, 2])
  expected = np.zeros(9, int)
  expected[spared] = 2
  expected = _rungs_by_mean(full, np.flatnonzero(~spared), [(1, 2), (3, 1)], expected)
  np.testing.assert_array_equal(kept.rung, expected)
  for p in np.flatnonzero(spared):
    np.testing.assert_allclose(kept.curves['val_loss'][p], full.curves['val_loss'][p], rtol=1e-6, atol=1e-7)
  assert kept.configuration_epochs == 4 * (9 * 1 + 5 * 2 + 4 * 6)
  assert kept.configuration_epochs == halving.configuration_epochs(9, 9, 4, kept=3)


def test_one_rung_is_no_pruning():
  task = sweep.classifier(sweep.MLP(hidden=(8,), outputs=3))
  settings = dict(optimizer=sweep.kind('adamw', lr=3e-2), folds=2, epochs=3, batch_size=8)
  space = {'rate': [0.0, 1.0, 3.0]}
  full = sweep.grid(task, _classes(), space, **settings)
  one = sweep.grid(task, _classes(), space, prune=sweep.Halving(3, 2), **settings)
  for name in full.metrics:
    np.testing.assert_array_equal(one.curves[name], full.curves[name])
  np.testing.assert_array_equal(one.rungs, [3])
  np.testing.assert_array_equal(one.rung, [0, 0, 0])
  assert one.configuration_epochs == full.configuration_epochs == 3 * 2 * 3
  assert one.best() == full.best()


def _counted(traces):
  """A classifier whose loss counts how often it is traced."""
  task = sweep.classifier(sweep.MLP(hidden=(8,), outputs=3))

  def loss(params, batch, key, hp, **kwargs):
    traces.append(1)
    return task.loss(params, batch, key, hp, **kwargs)

  return dataclasses.replace(task, loss=loss)


@pytest.mark.slow  # pruned grids counted for traces (6 CPU-s)
def test_the_rungs_run_one_compiled_program():
  settings = dict(optimizer=sweep.kind('adamw', lr=3e-2), folds=2, epochs=4, batch_size=8, chunk_size=4)
  space = {'rate': [0.0, 0.01, 0.1, 1.0, 3.0, 10.0]}
  plain, pruned = [], []
  sweep.grid(_counted(plain), _classes(), space, **settings)
  result = sweep.grid(_counted(pruned), _classes(), space, prune=sweep.Halving(1, 2), **settings)
  # Three rungs of 12, 6 and 4 configurations in chunks of 4: the loss was
  # traced as often as for the unpruned grid, which runs one program.
  assert len(result.rungs) == 3 and result.chunk_size == 4
  assert len(pruned) == len(plain) > 0


def test_diverged_points_are_dropped_first():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(30, 2)).astype(np.float32)
  data = {'x': x, 'y': (x @ np.array([1.0, 2.0])).astype(np.float32)}

  def init(key, batch):
    return {'w': jnp.zeros(2), 'b': jnp.zeros(())}

  def loss(params, batch, key, hp, *, weight):
    return sweep.mean(0.5 * (batch['x'] @ params['w'] + params['b'] - batch['y']) ** 2, weight), {}

  task = sweep.Task(init=init, loss=loss)
  # lr 1e10 diverges in the first epoch; lr 1e-4 barely moves. Keep ceil(3/2) = 2.
  result = sweep.grid(
      task, data, {'lr': [1e10, 1e-4, 0.05]}, optimizer=lambda lr: optax.sgd(lr),
      folds=3, epochs=2, batch_size=5, prune=sweep.Halving(1, 2),
  )
  np.testing.assert_array_equal(result.rung, [0, 1, 1])
  np.testing.assert_array_equal(result.diverged[0], True)
  assert result.best() == {'lr': 0.05}


def test_evaluations_stay_where_they_were_and_rung_ends_are_added():
  task = sweep.classifier(sweep.MLP(hidden=(8,), outputs=3))
  settings = dict(optimizer=sweep.kind('adamw', lr=3e-2), folds=2, epochs=8, batch_size=8, evals=2)
  space = {'rate': [0.0, 1.0, 3.0]}
  full = sweep.grid(task, _classes(), space, **settings)
  pruned = sweep.grid(task, _classes(), space, prune=sweep.Halving(1, 3), **settings)
  np.testing.assert_array_equal(full.epochs, [4, 8])
  # The evaluations at 4 and 8, and at the rungs' ends 1, 3 and 8.
  np.testing.assert_array_equal(pruned.epochs, [1, 3, 4, 8])
  survivor = int(np.flatnonzero(pruned.finished)[0])
  np.testing.assert_allclose(
      pruned.curves['val_loss'][survivor][..., [2, 3]], full.curves['val_loss'][survivor],
      rtol=1e-6,
  )


@pytest.mark.slow  # a pruned select, its refit and its loop (8 CPU-s)
def test_select_chooses_among_the_finished_points_and_refits_with_the_grids_program():
  data = _classes()
  space = {'rate': [0.0, 0.1, 1.0, 3.0]}
  settings = dict(optimizer=sweep.kind('adamw', lr=3e-2), folds=2, epochs=4, batch_size=8)
  grid_traces, select_traces = [], []
  sweep.grid(_counted(grid_traces), data, space, prune=sweep.Halving(1, 2), **settings)
  found = sweep.select(
      _counted(select_traces), data, space, test=data, prune=sweep.Halving(1, 2),
      metric='val_accuracy', mode='max', **settings,
  )
  result = found.result
  assert np.bincount(result.rung).tolist() == [2, 1, 1]
  assert result.finished[found.choice.index]
  assert found.refit.point == found.choice.point
  # The refit compiled no training program of its own: one more trace, the
  # test program's.
  assert len(select_traces) == len(grid_traces) + 1
  refit = sweep.fit(
      sweep.classifier(sweep.MLP(hidden=(8,), outputs=3)), data, found.choice.point,
      optimizer=settings['optimizer'], test=data, epochs=4, batch_size=8,
  )
  np.testing.assert_allclose(found.refit.test['loss'], refit.test['loss'], rtol=1e-6)


def test_a_pruned_sweep_of_a_wdax_optimizer_resumes_its_state():
  # An optimiser whose state holds more than moments: a step count read by
  # the schedule of the decay.
  def optimizer(rate):
    return wdax.adamw(
        optax.linear_schedule(3e-2, 3e-3, 20), weight_decay=rate,
        mask=wdax.masks.flax_default(),
    )

  task = sweep.classifier(sweep.MLP(hidden=(8,), outputs=3))
  settings = dict(optimizer=optimizer, folds=2, epochs=4, batch_size=8)
  space = {'rate': [0.0, 0.1, 1.0]}
  full = sweep.grid(task, _classes(), space, **settings)
  pruned = sweep.grid(task, _classes(), space, prune=sweep.Halving(2, 3), **settings)
  survivor = int(np.flatnonzero(pruned.finished)[0])
  np.testing.assert_allclose(pruned.curves['val_loss'][survivor], full.curves['val_loss'][survivor], rtol=1e-6)


_EIGHT = '''
import json
import jax
import numpy as np
from wdax import sweep

assert jax.device_count() == 8
rng = np.random.default_rng(0)
x = rng.normal(size=(60, 4)).astype(np.float32)
y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
args = (sweep.classifier(sweep.MLP(hidden=(8,), outputs=3)), {'x': x, 'y': y},
        {'rate': [0.0, 0.1, 1.0], 'dropout': [0.0, 0.3, 0.6]})
settings = dict(optimizer=sweep.kind('adamw', lr=3e-2), folds=3, seeds=2, epochs=4, batch_size=8)
pruned = sweep.grid(*args, devices=8, prune=sweep.Halving(1, 2), **settings)
full = sweep.grid(*args, devices=1, **settings)
print(json.dumps({
    'chunk_size': pruned.chunk_size, 'rung': pruned.rung.tolist(),
    'pruned': np.nan_to_num(pruned.curves['val_loss'], nan=-1.0).tolist(),
    'full': full.curves['val_loss'].tolist(),
}))
'''


@pytest.mark.slow
def test_a_pruned_grid_on_eight_devices_continues_as_on_one():
  done = subprocess.run(
      [sys.executable, '-c', _EIGHT], env=host_devices.env(8), capture_output=True, text=True, timeout=600,
      check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  # 54 configurations over 8 devices; rungs at 1, 2, 4 epochs: 9, 5, 3 points.
  assert out['chunk_size'] % 8 == 0
  assert np.bincount(out['rung']).tolist() == [4, 2, 3]
  pruned, full = np.array(out['pruned']), np.array(out['full'])
  trained = np.array([1, 2, 4])[out['rung']][:, None] >= np.array([1, 2, 3, 4])[None, :]
  for p in range(9):
    np.testing.assert_allclose(
        pruned[p][..., trained[p]], full[p][..., trained[p]], rtol=1e-5, atol=1e-6
    )
    assert (pruned[p][..., ~trained[p]] == -1.0).all()
