"""Tests of wdax.sweep._programs and _runner: chunks, devices and processes change nothing."""

import json
import pathlib
import socket
import subprocess
import sys

import numpy as np
import optax
import pytest
from support import host_devices

import wdax
from wdax import sweep

_WORKER = pathlib.Path(__file__).resolve().parent / 'support' / 'sweep_worker.py'


def _classes(n=60, seed=0):
  rng = np.random.default_rng(seed)
  x = rng.normal(size=(n, 4)).astype(np.float32)
  y = ((x[:, 0] + x[:, 1] > 0).astype(np.int32) + (x[:, 2] > 0.5)).astype(np.int32)
  return {'x': x, 'y': y}


def test_chunks_give_the_result_of_one_chunk():
  data = _classes()
  task = sweep.classifier(sweep.MLP(hidden=(8,), outputs=3))
  settings = dict(optimizer=sweep.kind('decoupled', lr=1e-2), folds=2, seeds=2, epochs=2, batch_size=8)
  space = {'rate': [0.0, 0.1, 1.0]}
  whole = sweep.grid(task, data, space, **settings)
  calls = []
  chunked = sweep.grid(
      task, data, space, chunk_size=5, progress=lambda d, t: calls.append((d, t)), **settings
  )
  assert (whole.chunk_size, whole.chunks) == (12, 1)
  # 12 configurations in chunks of at most 5: three chunks of 4.
  assert (chunked.chunk_size, chunked.chunks) == (4, 3)
  assert calls == [(i, 6) for i in range(1, 7)]  # 3 chunks x 2 evaluations
  for name in whole.metrics:
    np.testing.assert_allclose(chunked.curves[name], whole.curves[name], rtol=1e-6, atol=1e-7)
  # A budget for 4 configurations gives the same chunks.
  by_memory = sweep.grid(task, data, space, memory=whole.bytes_per_configuration * 4, **settings)
  assert (by_memory.chunk_size, by_memory.chunks) == (4, 3)
  for name in whole.metrics:
    np.testing.assert_allclose(by_memory.curves[name], whole.curves[name], rtol=1e-6, atol=1e-7)


@pytest.mark.slow  # three grids (7 CPU-s)
def test_the_learning_rate_swept_beside_the_rate_equals_separate_grids():
  data = _classes()
  task = sweep.classifier(sweep.MLP(hidden=(8,), outputs=3))

  def optimizer(rate, lr):
    return optax.chain(wdax.l2(rate), optax.adam(lr))

  settings = dict(folds=2, epochs=2, batch_size=8)
  both = sweep.grid(task, data, {'rate': [0.0, 1.0], 'lr': [1e-2, 1e-1]}, optimizer=optimizer, **settings)
  for j, lr in enumerate([1e-2, 1e-1]):
    alone = sweep.grid(
        task, data, {'rate': [0.0, 1.0]},
        optimizer=lambda rate, lr=lr: optax.chain(wdax.l2(rate), optax.adam(lr)), **settings,
    )
    np.testing.assert_allclose(both.curves['val_loss'][j::2], alone.curves['val_loss'], rtol=1e-5)


def _compare(got: dict, expected: dict) -> None:
  for name, values in expected['curves'].items():
    np.testing.assert_allclose(got['curves'][name], values, rtol=1e-5, atol=1e-6, err_msg=name)
  assert got['choice'] == expected['choice']
  for a, b in zip(got['refit_params'], expected['refit_params']):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
  for name, value in expected['refit_test'].items():
    np.testing.assert_allclose(got['refit_test'][name], value, rtol=1e-5)


@pytest.mark.slow
def test_eight_devices_give_the_result_of_one():
  done = subprocess.run(
      [sys.executable, str(_WORKER), 'devices'], env=host_devices.env(8), capture_output=True,
      text=True, timeout=600, check=False,
  )
  assert done.returncode == 0, done.stderr[-3000:]
  out = json.loads(done.stdout.strip().splitlines()[-1])
  # 36 configurations: chunks of a multiple of 8 devices against one.
  assert out['eight']['devices'] == 8 and out['one']['devices'] == 1
  assert out['eight']['chunk_size'] % 8 == 0
  _compare(out['eight'], out['one'])
  assert len({round(v, 6) for v in np.ravel(out['one']['curves']['val_loss'])}) > 1


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_give_the_result_of_one():
  port = _free_port()
  workers = [
      subprocess.Popen(
          [sys.executable, str(_WORKER), 'process', str(port), str(i), '2'],
          env=host_devices.env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      )
      for i in range(2)
  ]
  outputs = []
  try:
    for w in workers:
      stdout, stderr = w.communicate(timeout=600)
      assert w.returncode == 0, stderr[-3000:]
      outputs.append(json.loads(stdout.strip().splitlines()[-1]))
  finally:
    for w in workers:
      if w.poll() is None:
        w.kill()
  from support.sweep_worker import job

  single = job(sweep, optax, 1)
  for out in outputs:
    assert out['devices'] == 8
    _compare(out, single)
