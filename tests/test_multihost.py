"""Several JAX processes: FSDP training, a checkpoint saved by all, resumed by one.

Two processes on this machine, each with 4 simulated CPU devices, meet at a
coordinator on localhost (``jax.distributed.initialize``, gloo collectives)
and train with :mod:`wdax.training` over one mesh of all 8 devices, saving a
checkpoint half way from both processes. The result must equal one process
with 8 devices running the same code, and the checkpoint must resume in a
single process. ``tests/support/multihost_worker.py`` is each process.
"""

import json
import os
import pathlib
import socket
import subprocess
import sys

import numpy as np
import pytest
from support import shared

pytestmark = pytest.mark.slow  # three runs of subprocesses

_WORKER = pathlib.Path(__file__).parent / 'support' / 'multihost_worker.py'
_TIMEOUT = 600


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _env(devices: int) -> dict[str, str]:
  env = dict(os.environ)
  env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
  env['JAX_PLATFORMS'] = 'cpu'
  return env


def _check(done: subprocess.CompletedProcess | subprocess.Popen, what: str, err: str):
  if done.returncode:
    raise AssertionError(f'{what} failed (exit {done.returncode}):\n{err[-4000:]}')


def _load(out: pathlib.Path) -> tuple[dict[str, np.ndarray], dict]:
  with np.load(out / 'params.npz') as f:
    params = {k: f[k] for k in f.files}
  return params, json.loads((out / 'run.json').read_text())


def _run_all(root: pathlib.Path) -> None:
  port = _free_port()
  both = [
      '--checkpoint', str(root / 'two' / 'ckpt'), '--out', str(root / 'two'),
  ]
  procs = [
      subprocess.Popen(
          [sys.executable, str(_WORKER), 'train', '--processes', '2',
           '--process-id', str(i), '--port', str(port), *both],
          env=_env(4), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      )
      for i in range(2)
  ]
  for i, proc in enumerate(procs):
    try:
      _, err = proc.communicate(timeout=_TIMEOUT)
    except subprocess.TimeoutExpired:
      for p in procs:
        p.kill()
      raise
    _check(proc, f'process {i} of the 2-process run', err)
  one = subprocess.run(
      [sys.executable, str(_WORKER), 'train', '--checkpoint',
       str(root / 'one' / 'ckpt'), '--out', str(root / 'one')],
      env=_env(8), capture_output=True, text=True, timeout=_TIMEOUT,
  )
  _check(one, 'the 1-process run', one.stderr)
  resumed = subprocess.run(
      [sys.executable, str(_WORKER), 'resume', '--checkpoint',
       str(root / 'two' / 'ckpt'), '--out', str(root / 'resumed')],
      env=_env(8), capture_output=True, text=True, timeout=_TIMEOUT,
  )
  _check(resumed, 'the resumed run', resumed.stderr)


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  """The three runs, once per test run, whichever worker asks first."""
  root = shared.folder(tmp_path_factory, 'multihost', _run_all)
  return {name: _load(root / name) for name in ('two', 'one', 'resumed')}


def _assert_params_close(a, b, tol):
  assert sorted(a) == sorted(b)
  for path in a:
    np.testing.assert_allclose(a[path], b[path], **tol, err_msg=path)


def test_two_processes_train_as_one_process_with_eight_devices(runs):
  two, two_run = runs['two']
  one, one_run = runs['one']
  assert two_run['step'] == one_run['step'] == 8
  # The same program over the same 8 devices; only the collectives' transport
  # (gloo between processes) differs, so agreement is to float32 rounding.
  _assert_params_close(two, one, {'rtol': 1e-5, 'atol': 1e-6})
  np.testing.assert_allclose(two_run['losses'], one_run['losses'], rtol=1e-5)
  assert two_run['losses'][-1] < two_run['losses'][0]  # it trained


def test_the_params_are_sharded_over_both_processes(runs):
  _, run = runs['two']
  # Every kernel and bias here has a dimension divisible by 8: FSDP splits
  # each over the mesh axis, which spans the devices of both processes.
  assert run['specs'] and all('data' in s for s in run['specs'].values()), run


def test_the_checkpoint_of_two_processes_resumes_in_one(runs):
  resumed, run = runs['resumed']
  two, two_run = runs['two']
  assert run['step'] == 8
  _assert_params_close(resumed, two, {'rtol': 1e-5, 'atol': 1e-6})
  np.testing.assert_allclose(run['losses'], two_run['losses'][4:], rtol=1e-5)
