"""Checkpointed sweeps killed with SIGKILL in subprocesses, then started
again: the Python API (tests/support/checkpoint_worker.py), two processes, and
``wdax sweep`` killed by a harness that watches its checkpoint, or stopped
by SIGINT and SIGTERM. Each resumed run's numbers equal an uninterrupted
run's, bit for bit.
"""

import json
import pathlib
import signal
import socket
import subprocess
import sys
import time

import pytest
from support import host_devices
from support import shared

from wdax.sweep import _checkpoint

_WORKER = pathlib.Path(__file__).resolve().parent / 'support' / 'checkpoint_worker.py'

pytestmark = pytest.mark.slow


def _worker(folder, kill_after, prune, devices=1):
  return subprocess.run(
      [sys.executable, str(_WORKER), str(folder), str(kill_after), prune],
      env=host_devices.env(devices), capture_output=True, text=True, timeout=600, check=False,
  )


def _numbers(done):
  assert done.returncode == 0, done.stderr[-3000:]
  return json.loads(done.stdout.strip().splitlines()[-1])


def _run_uninterrupted(out):
  numbers = {prune: _numbers(_worker('-', 0, prune)) for prune in ('0', '2:2')}
  (out / 'numbers.json').write_text(json.dumps(numbers))


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  """Each way's uninterrupted numbers, once per test run."""
  out = shared.folder(tmp_path_factory, 'select_uninterrupted', _run_uninterrupted)
  return json.loads((out / 'numbers.json').read_text())


# 18 configurations in chunks of 4: 5 chunks of 4 segments, then the refit's
# 4. Pruned (rungs at 2, 4 and 8 epochs): 5 chunks of 1 segment, 3 of 1 and 2
# of 2, then the refit's 4, so the 14th call is in the refit. Each point is
# killed at least once, each way at least twice: unpruned inside the first
# chunk and inside the fourth, pruned inside a chunk, between rungs and in
# the refit.
@pytest.mark.parametrize(
    'kill_after,prune', [(1, '0'), (14, '0'), (2, '2:2'), (7, '2:2'), (14, '2:2')]
)
def test_a_select_killed_after_k_segments_resumes_bit_for_bit(tmp_path, uninterrupted, prune, kill_after):
  killed = _worker(tmp_path, kill_after, prune)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  assert _numbers(_worker(tmp_path, 0, prune)) == uninterrupted[prune]


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _processes(folder, kill_after, count=2):
  port = _free_port()
  workers = [
      subprocess.Popen(
          [sys.executable, str(_WORKER), str(folder), str(kill_after), '0', str(port), str(i), str(count)],
          env=host_devices.env(2), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
      )
      for i in range(count)
  ]
  out = []
  try:
    for w in workers:
      stdout, stderr = w.communicate(timeout=600)
      out.append((w.returncode, stdout, stderr))
  finally:
    for w in workers:
      if w.poll() is None:
        w.kill()
  return out


def test_two_processes_killed_resume_on_two_to_the_uninterrupted_result(tmp_path):
  whole = [json.loads(stdout.splitlines()[-1]) for _, stdout, _ in _processes('-', 0)]
  killed = _processes(tmp_path, 6)
  # Each kills itself after the same save; the other may see it die first.
  assert all(rc != 0 for rc, _, _ in killed), killed[0][2][-3000:]
  resumed = _processes(tmp_path, 0)
  for (rc, stdout, stderr), expected in zip(resumed, whole):
    assert rc == 0, stderr[-3000:]
    assert json.loads(stdout.splitlines()[-1]) == expected
  # A different process count is refused, naming it.
  alone = _worker(tmp_path, 0, '0', devices=4)
  assert alone.returncode != 0
  assert 'CheckpointMismatch' in alone.stderr and 'processes was 2, now 1' in alone.stderr


# --- the command line --------------------------------------------------------------

_CLI = [
    'sweep', '--data', 'wine', '--epochs', '12', '--folds', '2', '--hidden', '16',
    '--rates', '1e-3:1:3', '--chunk-size', '2', '--devices', '1', '--save-every', '0', '--quiet',
]


def _cli(*args):
  return subprocess.Popen(
      [sys.executable, '-m', 'wdax', *args], env=host_devices.env(1), stdout=subprocess.PIPE,
      stderr=subprocess.PIPE, text=True,
  )


def _saves(folder):
  try:
    body = json.loads((folder / 'checkpoint' / 'adamw' / 'manifest.json').read_bytes())['body']
  except (OSError, ValueError, KeyError):
    return 0
  return body['saves']


def _stop_after(process, folder, saves, signum):
  """Sends ``signum`` once ``saves`` saves are in the checkpoint."""
  while process.poll() is None and _saves(folder) < saves:
    time.sleep(0.005)
  process.send_signal(signum)
  stdout, stderr = process.communicate(timeout=600)
  return process.returncode, stdout, stderr


def _results(folder):
  out = json.loads((folder / 'results.json').read_text())
  del out['command'], out['run']
  return out


def _run_cli_uninterrupted(out):
  process = _cli(*_CLI, '--out', str(out))
  assert process.wait(timeout=600) == 0, process.stderr.read()[-3000:]


@pytest.fixture(scope='module')
def cli_uninterrupted(tmp_path_factory):
  """The uninterrupted command's results, once per test run."""
  return _results(shared.folder(tmp_path_factory, 'cli_uninterrupted', _run_cli_uninterrupted))


@pytest.mark.parametrize('saves', [1, 9])
def test_wdax_sweep_killed_resumes_with_the_same_command_bit_for_bit(tmp_path, cli_uninterrupted, saves):
  rc, _, _ = _stop_after(_cli(*_CLI, '--out', str(tmp_path)), tmp_path, saves, signal.SIGKILL)
  assert rc == -signal.SIGKILL
  status = _checkpoint.status(tmp_path / 'checkpoint' / 'adamw')
  again = _cli(*_CLI, '--out', str(tmp_path))
  stdout, stderr = again.communicate(timeout=600)
  assert again.returncode == 0, stderr[-3000:]
  # 4 rates x 2 folds x 12 epochs, and the refit's 12.
  assert (
      f"{status.trained} configuration-epochs already trained, {108 - status.trained} left "
      "(the refit's included)"
  ) in stdout
  assert _results(tmp_path) == cli_uninterrupted


def test_wdax_sweep_pruned_and_killed_resumes_bit_for_bit(tmp_path):
  pruned = [*_CLI, '--prune', '2:2']
  whole = tmp_path / 'whole'
  assert _cli(*pruned, '--out', str(whole)).wait(timeout=600) == 0
  rc, _, _ = _stop_after(_cli(*pruned, '--out', str(tmp_path / 'k')), tmp_path / 'k', 5, signal.SIGKILL)
  assert rc == -signal.SIGKILL
  assert _cli(*pruned, '--out', str(tmp_path / 'k')).wait(timeout=600) == 0
  assert _results(tmp_path / 'k') == _results(whole)


@pytest.mark.parametrize('signum', [signal.SIGINT, signal.SIGTERM])
def test_wdax_sweep_stopped_by_a_signal_saves_says_how_to_resume_and_exits_128_plus_it(
    tmp_path, cli_uninterrupted, signum
):
  rc, _, stderr = _stop_after(_cli(*_CLI, '--out', str(tmp_path)), tmp_path, 3, signum)
  assert rc == 128 + signum, stderr[-3000:]
  assert f'wdax: {signal.Signals(signum).name}: stopped at a safe point' in stderr
  assert 'Run the same command to resume: wdax sweep --data wine' in stderr
  assert _checkpoint.status(tmp_path / 'checkpoint' / 'adamw').trained > 0
  assert _cli(*_CLI, '--out', str(tmp_path)).wait(timeout=600) == 0
  assert _results(tmp_path) == cli_uninterrupted


def test_wdax_sweep_refuses_another_command_into_an_unfinished_run_unless_restart(tmp_path):
  rc, _, _ = _stop_after(_cli(*_CLI, '--out', str(tmp_path)), tmp_path, 2, signal.SIGKILL)
  assert rc == -signal.SIGKILL
  other = [*_CLI[:4], '10', *_CLI[5:]]
  refused = _cli(*other, '--out', str(tmp_path))
  _, stderr = refused.communicate(timeout=600)
  assert refused.returncode == 2
  assert '--epochs was 12, now 10' in stderr and '--restart' in stderr
  restarted = _cli(*other, '--out', str(tmp_path), '--restart')
  stdout, stderr = restarted.communicate(timeout=600)
  assert restarted.returncode == 0, stderr[-3000:]
  assert 'resuming' not in stdout


def test_a_finished_wdax_sweep_started_again_prints_its_results_without_training(tmp_path, cli_uninterrupted):
  assert _cli(*_CLI, '--out', str(tmp_path)).wait(timeout=600) == 0
  saves = _saves(tmp_path)
  again = _cli(*_CLI, '--out', str(tmp_path))
  stdout, stderr = again.communicate(timeout=600)
  assert again.returncode == 0, stderr[-3000:]
  assert (
      "the run finished (108 configuration-epochs trained, the refit's included); nothing is "
      'left to train'
  ) in stdout
  assert 'chosen rate:' in stdout
  assert _saves(tmp_path) == saves
  assert _results(tmp_path) == cli_uninterrupted
