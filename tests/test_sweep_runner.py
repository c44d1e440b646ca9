"""Tests of wdax.sweep._runner: a training stopped after any segment and
continued from its state on the host gives the numbers of one that never
stopped, bit for bit (what a checkpoint of a sweep builds on)."""

import concurrent.futures

import flax.linen as nn
import jax
import numpy as np
import pytest

from wdax import sweep
from wdax.sweep import _plan
from wdax.sweep import _runner
from wdax.sweep import _validation


class _NormedDropout(nn.Module):
  """Model state (BatchNorm) and dropout keys, both to be continued."""

  @nn.compact
  def __call__(self, x, *, train=False):
    x = nn.Dense(8, use_bias=False)(x)
    x = nn.BatchNorm(use_running_average=not train, momentum=0.5)(x)
    x = nn.Dropout(0.3, deterministic=not train)(nn.relu(x))
    return nn.Dense(3)(x)


def _training(**change):
  rng = np.random.default_rng(0)
  x = rng.normal(size=(40, 4)).astype(np.float32)
  data = {'x': x, 'y': ((x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5)).astype(np.int32)}
  task = sweep.classifier(_NormedDropout())
  settings = sweep.Settings(folds=2, seeds=2, epochs=4, batch_size=8)
  prep = _validation.prepare('grid', task, data, {'rate': [0.0, 0.1, 1.0]},
                           sweep.kind('adamw', lr=3e-2), settings)
  # 3 points x 2 folds x 2 seeds, point-major.
  point, fold, seed = (a.ravel() for a in np.meshgrid(np.arange(3), np.arange(2), [0, 1], indexing='ij'))
  fields = dict(
      job=prep.job, data=prep.data, train_table=prep.train_table, eval_table=prep.val_table,
      hp={'rate': np.array([0.0, 0.1, 1.0], np.float32)[point]}, seed=seed, split=fold,
      epochs=4, evals=2, devices=jax.devices()[:1], per_configuration=prep.per_configuration,
      chunk_size=4,
  )
  return _runner.Training(**{**fields, **change})


def _lowest_validation_loss(keep):
  def advance(rung, alive, metrics):
    return np.sort(alive[np.argsort(metrics[:, 1, 0], kind='stable')[:keep]])

  return advance


PRUNED = _plan.Rungs((1, 4), (12, 4), _lowest_validation_loss(4))


def _run(training, start=None, stop=None):
  """The training's state after ``stop`` segments (all by default), from
  ``start`` (a state on the host) or the beginning; with a session of its
  own, as a new process would open."""
  plan = _runner.make_plan(training)
  with concurrent.futures.ThreadPoolExecutor(max_workers=2) as pool:
    session = _runner.Session.open(training, plan, pool)
    state = start or _runner.State.start(plan, len(training.job.metrics), training.test is not None)
    while not state.finished_all(plan) and state.done != stop:
      _runner.step(session, state)
    return session, state


def test_the_plan_of_a_pruned_training():
  plan = _runner.make_plan(_training(rungs=PRUNED))
  # 12 configurations in 3 chunks of 4 for a segment to epoch 1; then the 4
  # that go on, one chunk, for two segments (to 2 and 4).
  assert (plan.chunk_size, plan.chunks, plan.points.tolist(), plan.calls) == (4, 3, [1, 2, 4], 5)


@pytest.mark.parametrize('stop', [1, 2, 3, 4])
def test_a_pruned_training_resumed_after_any_segment_is_bit_for_bit_the_same(stop):
  training = _training(rungs=PRUNED)
  whole = _runner.train(training)
  _, stopped = _run(training, stop=stop)
  assert stopped.done == stop
  session, resumed = _run(training, start=stopped.on_host())
  again = session.trained(resumed)
  np.testing.assert_array_equal(again.metrics, whole.metrics)
  np.testing.assert_array_equal(again.rung, whole.rung)
  # 8 stopped after 1 epoch, 4 went on to 4.
  assert again.configuration_epochs == whole.configuration_epochs == 8 * 1 + 4 * 4
  # The pruned configurations have no numbers after rung 0.
  assert np.isnan(whole.metrics[whole.rung == 0][:, 1:]).all()
  assert not np.isnan(whole.metrics[whole.rung == 1]).any()


def test_a_training_keeping_its_parameters_resumed_mid_chunk_is_the_same():
  training = _training(keep_params=True, chunk_size=8)
  whole = _runner.train(training)
  # Two chunks of 8 (12 configurations and 4 copies), two segments each:
  # stopped after the first chunk's first segment, its state on the host.
  _, stopped = _run(training, stop=1)
  assert (stopped.chunk, stopped.segment) == (0, 1)
  assert isinstance(jax.tree.leaves(stopped.on_host().carry)[0], np.ndarray)
  session, resumed = _run(training, start=stopped.on_host())
  again = session.trained(resumed)
  np.testing.assert_array_equal(again.metrics, whole.metrics)
  for a, b in zip(jax.tree.leaves((again.params, again.state)), jax.tree.leaves((whole.params, whole.state))):
    np.testing.assert_array_equal(a, b)
  assert jax.tree.leaves(whole.params)[0].shape[0] == 12
