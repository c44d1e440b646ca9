"""Tests of a checkpointed sweep (wdax.sweep._checkpoint, _resume,
_fingerprint): stopped at any segment and called again, it returns the
uninterrupted run's numbers, bit for bit; a different run is refused by
name; damaged files are trained again.

The stops here are in process (an exception or a signal from the progress
callback); tests/test_sweep_checkpoint_kills.py kills subprocesses with
SIGKILL.
"""

import os
import pathlib
import signal
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import wdax
from wdax import sweep
from wdax.sweep import _checkpoint
from wdax.sweep import _fingerprint
from wdax.sweep import _programs

_X = np.random.default_rng(0).normal(size=(48, 3)).astype(np.float32)
DATA = {'x': _X, 'y': (_X[:, 0] > 0).astype(np.int32)}
TASK = sweep.classifier(sweep.MLP(hidden=(8,), outputs=2))
SPACE = {'rate': [0.0, 1e-2, 1.0], 'lr': [1e-2, 3e-2]}
# 6 points x 2 folds = 12 configurations in 4 chunks of 3; 3 segments each.
SETTINGS = dict(
    optimizer=lambda rate, lr: wdax.adamw(lr, weight_decay=rate),
    folds=2, epochs=6, evals=3, batch_size=8, chunk_size=3, devices=1,
    # A save after every segment, whatever the machine's speed.
    checkpoint_every=0,
)


class Stop(Exception):
  pass


def stop_after(calls, action=None):
  """A progress callback that stops the sweep after ``calls`` compiled calls."""
  seen = []

  def progress(done, total):
    seen.append(done)
    if len(seen) == calls:
      if action is None:
        raise Stop
      action()

  return progress


def assert_same_result(a, b):
  assert a.curves.keys() == b.curves.keys()
  for name in a.curves:
    np.testing.assert_array_equal(a.curves[name], b.curves[name], err_msg=name, strict=True)
  np.testing.assert_array_equal(a.epochs, b.epochs)
  np.testing.assert_array_equal(a.rung, b.rung)
  np.testing.assert_array_equal(a.rungs, b.rungs)
  assert a.configuration_epochs == b.configuration_epochs
  assert (a.chunk_size, a.chunks, a.devices) == (b.chunk_size, b.chunks, b.devices)


@pytest.fixture(scope='module')
def uninterrupted():
  return {
      prune: sweep.grid(TASK, DATA, SPACE, prune=None if prune is None else sweep.Halving(*prune), **SETTINGS)
      for prune in (None, (2, 2))
  }


# The fast loop runs one stop of each kind; the others are marked slow.
SLOW = pytest.mark.slow


@pytest.mark.parametrize('prune', [None, pytest.param((2, 2), marks=SLOW)])
@pytest.mark.parametrize('calls', [pytest.param(1, marks=SLOW), 2, pytest.param(5, marks=SLOW)])
def test_a_grid_stopped_after_any_segment_resumes_to_the_uninterrupted_result(
    tmp_path, uninterrupted, prune, calls
):
  halving = None if prune is None else sweep.Halving(*prune)
  with pytest.raises(Stop):
    sweep.grid(
        TASK, DATA, SPACE, prune=halving, checkpoint=tmp_path, progress=stop_after(calls),
        **SETTINGS,
    )
  # The callback follows each segment's save: k segments of 3 configurations
  # of 2 epochs are saved.
  assert _checkpoint.status(tmp_path).trained == 3 * 2 * calls
  resumed = sweep.grid(TASK, DATA, SPACE, prune=halving, checkpoint=tmp_path, **SETTINGS)
  assert_same_result(resumed, uninterrupted[prune])


def test_a_pruned_grid_stopped_in_a_later_rung_keeps_its_decided_rungs(tmp_path, uninterrupted):
  halving = sweep.Halving(2, 2)
  # Rung 0: 4 chunks of 1 segment; rung 1 (3 points, 6 configurations): 2 chunks.
  with pytest.raises(Stop):
    sweep.grid(TASK, DATA, SPACE, prune=halving, checkpoint=tmp_path, progress=stop_after(6), **SETTINGS)
  manifest = _checkpoint.read_manifest(pathlib.Path(tmp_path))
  going = manifest['decisions']['grid/1']
  assert len(going) == 6
  resumed = sweep.grid(TASK, DATA, SPACE, prune=halving, checkpoint=tmp_path, **SETTINGS)
  assert_same_result(resumed, uninterrupted[(2, 2)])
  assert sorted(np.flatnonzero(resumed.rung.repeat(2) >= 1)) == going


@SLOW
def test_select_stopped_in_its_refit_resumes_to_the_uninterrupted_selection(tmp_path):
  kw = dict(SETTINGS, test=DATA)
  whole = sweep.select(TASK, DATA, SPACE, **kw)
  # 12 grid calls, then the refit's first.
  with pytest.raises(Stop):
    sweep.select(TASK, DATA, SPACE, checkpoint=tmp_path, refit_progress=stop_after(2), **kw)
  assert _checkpoint.status(tmp_path).finished == ('grid',)
  again = sweep.select(TASK, DATA, SPACE, checkpoint=tmp_path, **kw)
  assert_same_result(again.result, whole.result)
  assert again.choice == whole.choice
  for name in whole.refit.curves:
    np.testing.assert_array_equal(again.refit.curves[name], whole.refit.curves[name])
  for a, b in zip(jax.tree.leaves(again.refit.params), jax.tree.leaves(whole.refit.params)):
    np.testing.assert_array_equal(a, b, strict=True)


@SLOW
def test_fit_stopped_after_a_segment_resumes_to_the_same_parameters(tmp_path):
  kw = dict(
      optimizer=sweep.kind('adamw', lr=1e-2), epochs=6, evals=3, batch_size=8, test=DATA,
      checkpoint_every=0,
  )
  whole = sweep.fit(TASK, DATA, {'rate': 1e-2}, **kw)
  with pytest.raises(Stop):
    sweep.fit(TASK, DATA, {'rate': 1e-2}, checkpoint=tmp_path, progress=stop_after(2), **kw)
  again = sweep.fit(TASK, DATA, {'rate': 1e-2}, checkpoint=tmp_path, **kw)
  for name in whole.curves:
    np.testing.assert_array_equal(again.curves[name], whole.curves[name])
  for a, b in zip(jax.tree.leaves(again.params), jax.tree.leaves(whole.params)):
    np.testing.assert_array_equal(a, b, strict=True)


def test_a_finished_run_called_again_compiles_and_trains_nothing(tmp_path, uninterrupted, monkeypatch):
  sweep.grid(TASK, DATA, SPACE, checkpoint=tmp_path, **SETTINGS)

  def refuse(*args, **kwargs):
    raise AssertionError('a finished run compiled a program')

  monkeypatch.setattr(_programs.Programs, 'compile', refuse)
  again = sweep.grid(TASK, DATA, SPACE, checkpoint=tmp_path, **SETTINGS)
  assert_same_result(again, uninterrupted[None])


@pytest.mark.parametrize('signum', [pytest.param(signal.SIGINT, marks=SLOW), signal.SIGTERM])
def test_a_signal_stops_at_the_next_segment_saved_and_resumable(tmp_path, uninterrupted, signum):
  # The caller's handlers (pytest-xdist's workers ignore SIGINT).
  callers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
  with pytest.raises(sweep.Interrupted) as stopped:
    sweep.grid(
        TASK, DATA, SPACE, checkpoint=tmp_path, **SETTINGS,
        progress=stop_after(4, lambda: os.kill(os.getpid(), signum)),
    )
  assert stopped.value.signal == signum
  # Signalled after the fourth segment, stopped after the fifth, saved.
  assert _checkpoint.status(tmp_path).trained == 5 * 3 * 2
  # The handlers are the caller's again.
  assert {s: signal.getsignal(s) for s in callers} == callers
  resumed = sweep.grid(TASK, DATA, SPACE, checkpoint=tmp_path, **SETTINGS)
  assert_same_result(resumed, uninterrupted[None])


@pytest.mark.parametrize('damage', ['truncate', pytest.param('flip', marks=SLOW), pytest.param('delete', marks=SLOW)])
def test_a_damaged_part_is_trained_again_with_a_warning(tmp_path, uninterrupted, damage):
  sweep.grid(TASK, DATA, SPACE, checkpoint=tmp_path, **SETTINGS)
  parts = sorted(tmp_path.glob('grid-r0-c1-*.npz'))
  assert len(parts) == 1
  data = parts[0].read_bytes()
  if damage == 'truncate':
    parts[0].write_bytes(data[: len(data) // 2])
  elif damage == 'flip':
    parts[0].write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
  else:
    parts[0].unlink()
  with pytest.warns(sweep.CheckpointDamaged, match=r'grid-r0-c1-.*rung 0, chunk 1.* the 2 part'):
    again = sweep.grid(TASK, DATA, SPACE, checkpoint=tmp_path, **SETTINGS)
  assert_same_result(again, uninterrupted[None])
  # Saved whole again: a third call has nothing to warn of.
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    assert_same_result(sweep.grid(TASK, DATA, SPACE, checkpoint=tmp_path, **SETTINGS), uninterrupted[None])


@SLOW
def test_a_damaged_manifest_starts_over_with_a_warning(tmp_path, uninterrupted):
  with pytest.raises(Stop):
    sweep.grid(TASK, DATA, SPACE, checkpoint=tmp_path, progress=stop_after(3), **SETTINGS)
  manifest = tmp_path / 'manifest.json'
  manifest.write_bytes(manifest.read_bytes()[:-20])
  with pytest.warns(sweep.CheckpointDamaged, match='manifest.json is damaged'):
    again = sweep.grid(TASK, DATA, SPACE, checkpoint=tmp_path, **SETTINGS)
  assert_same_result(again, uninterrupted[None])
  assert not [p for p in tmp_path.iterdir() if p.name.endswith('.tmp')]


@pytest.mark.parametrize(
    ('change', 'named'),
    [
        (dict(epochs=4), 'epochs was 6, now 4'),
        pytest.param(dict(batch_size=4), 'batch_size was 8, now 4', marks=SLOW),
        pytest.param(dict(folds=3), 'folds was 2, now 3', marks=SLOW),
        pytest.param(dict(fold_seed=1), 'fold_seed was 0, now 1', marks=SLOW),
        pytest.param(dict(seeds=2), r'seeds was \(0,\), now \(0, 1\)', marks=SLOW),
        pytest.param(dict(prune=sweep.Halving(2, 2)), 'prune was None, now Halving', marks=SLOW),
        (dict(optimizer=lambda rate, lr: wdax.adamw(lr, weight_decay=2 * rate)), 'optimizer'),
        pytest.param(dict(optimizer=lambda rate, lr: wdax.sgdw(lr, weight_decay=rate)), 'optimizer', marks=SLOW),
        pytest.param(dict(space={'rate': [0.0, 1e-2, 1.0], 'lr': [1e-2, 4e-2]}), 'space', marks=SLOW),
        pytest.param(dict(data={'x': _X + np.float32(1e-6), 'y': DATA['y']}), 'data', marks=SLOW),
        pytest.param(dict(task=sweep.classifier(sweep.MLP(hidden=(9,), outputs=2))), 'task', marks=SLOW),
    ],
)
def test_a_different_run_into_the_folder_is_refused_naming_the_setting(tmp_path, change, named):
  with pytest.raises(Stop):
    sweep.grid(TASK, DATA, SPACE, checkpoint=tmp_path, progress=stop_after(2), **SETTINGS)
  given = {**SETTINGS, 'task': TASK, 'data': DATA, 'space': SPACE, **change}
  task, data, space = given.pop('task'), given.pop('data'), given.pop('space')
  with pytest.raises(sweep.CheckpointMismatch, match=named) as refused:
    sweep.grid(task, data, space, checkpoint=tmp_path, **given)
  assert refused.value.setting == named.split()[0]
  # restart=True discards the folder's run and trains this one.
  sweep.grid(task, data, space, checkpoint=tmp_path, restart=True, **given)
  assert _checkpoint.status(tmp_path).finished == ('grid',)


def test_a_grid_folder_is_refused_to_select():
  with pytest.raises(sweep.CheckpointMismatch, match="entry point was 'grid', now 'select'"):
    folder = pathlib.Path(os.environ.get('TMPDIR', '/tmp')) / f'wdax-ck-{os.getpid()}'
    sweep.grid(TASK, DATA, SPACE, checkpoint=folder, restart=True, **SETTINGS)
    sweep.select(TASK, DATA, SPACE, checkpoint=folder, **SETTINGS)


# --- the fingerprint ---------------------------------------------------------------


def test_equal_lambdas_have_one_digest_and_a_changed_constant_another():
  def make(scale):
    return lambda rate: wdax.adamw(1e-3, weight_decay=scale * rate)

  assert _fingerprint.digest(make(2.0)) == _fingerprint.digest(make(2.0))
  assert _fingerprint.digest(make(2.0)) != _fingerprint.digest(make(3.0))
  assert _fingerprint.digest(lambda r: r * 2) != _fingerprint.digest(lambda r: r * 3)
  assert _fingerprint.digest(lambda r: r + 1) != _fingerprint.digest(lambda r: r - 1)


def test_arrays_are_fingerprinted_by_dtype_shape_and_every_bit():
  a = np.arange(6, dtype=np.float32)
  assert _fingerprint.digest({'x': a}) == _fingerprint.digest({'x': a.copy()})
  b = a.copy()
  b[3] = np.nextafter(b[3], np.float32(10))
  assert _fingerprint.digest(a) != _fingerprint.digest(b)
  assert _fingerprint.digest(a) != _fingerprint.digest(a.reshape(2, 3))
  assert _fingerprint.digest(a) != _fingerprint.digest(a.astype(np.float64))
  assert _fingerprint.digest(jnp.asarray(a)) == _fingerprint.digest(a)


def test_floats_are_fingerprinted_exactly():
  assert _fingerprint.digest(0.1) != _fingerprint.digest(0.1 + 2**-56 * 8)
  assert _fingerprint.digest(sweep.Halving(2, 3)) != _fingerprint.digest(sweep.Halving(2, 2))


def test_the_first_difference_follows_the_given_order():
  saved = {'a': '1', 'b': '2', 'c': '3'}
  assert _fingerprint.first_difference(saved, {'a': '1', 'b': '9', 'c': '9'}) == 'b'
  assert _fingerprint.first_difference(saved, dict(saved)) is None
  assert _fingerprint.first_difference(saved, {'a': '1', 'b': '2'}) == 'c'


# --- the files ---------------------------------------------------------------------


def test_pack_keeps_every_bit_and_dtype():
  arrays = {
      'bf16': jnp.asarray([1.5, -0.0, np.nan], jnp.bfloat16),
      'f32': np.array([[np.inf, -1e-45]], np.float32),
      'i32': np.array([-(2**31), 7], np.int32),
      'key': jax.random.key(3),
      'empty': np.zeros((0, 2), np.float32),
  }
  back = _checkpoint.unpack(_checkpoint.pack(arrays))
  for name in ('bf16', 'f32', 'i32', 'empty'):
    a = np.asarray(arrays[name])
    assert back[name].dtype == a.dtype and back[name].shape == a.shape
    assert back[name].tobytes() == a.tobytes()
  np.testing.assert_array_equal(jax.random.key_data(back['key']), jax.random.key_data(arrays['key']))


def test_an_atomic_write_that_fails_leaves_the_old_file(tmp_path, monkeypatch):
  path = tmp_path / 'f'
  _checkpoint.write_atomic(path, b'old')

  def fail(*args):
    raise OSError('disk gone')

  monkeypatch.setattr(os, 'replace', fail)
  with pytest.raises(OSError):
    _checkpoint.write_atomic(path, b'new contents')
  assert path.read_bytes() == b'old'
