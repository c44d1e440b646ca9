"""What the command-line tests share: the options of a tiny sweep, ``wdax`` in
a new process, small labelled data files, and the check of a refusal.

The sweep runs (tests/test_cli_runs.py), the bad-input refusals
(tests/test_cli_refusals.py), ``wdax describe`` (tests/test_cli_describe.py)
and the built-in data sets (tests/test_cli_problems.py) import it as a plain
module. Tests that run ``wdax sweep`` in process take the ``keep_xla_flags``
fixture of tests/conftest.py.
"""

import os
import subprocess
import sys

import numpy as np

# A sweep of a few seconds: two epochs of a 16-unit MLP, two folds.
TINY = ['--epochs', '2', '--folds', '2', '--hidden', '16', '--batch-size', '16', '--quiet', '--devices', '1']


def run(*args, env=()):
  """``wdax args`` in a new process: its ``CompletedProcess``, text captured.

  ``env`` sets environment variables, or unsets those given as None.
  """
  env = {**os.environ, **dict(env)}
  return subprocess.run(
      [sys.executable, '-m', 'wdax', *args], capture_output=True, text=True,
      timeout=600, check=False, env={k: v for k, v in env.items() if v is not None},
  )


def blobs(n=80, seed=0):
  """``(x, y)``: ``n`` rows of 5 features in 3 classes, rounded to 4 places."""
  rng = np.random.default_rng(seed)
  y = np.arange(n) % 3
  x = rng.normal(size=(n, 5)) + 2.0 * y[:, None]
  return x.round(4), y


def npz_file(path, x, y):
  """Saves ``x`` and ``y`` as ``path`` (.npz); returns the path as a string."""
  np.savez(path, x=x, y=y)
  return str(path)


def csv_file(path, x, y, label='label'):
  """Writes ``x`` as columns ``f0, f1, ...`` and ``y`` as the column
  ``label``, last; returns the path as a string."""
  lines = [','.join([f'f{i}' for i in range(x.shape[1])] + [label])]
  lines += [','.join([*map(str, row), str(lab)]) for row, lab in zip(x, y)]
  path.write_text('\n'.join(lines) + '\n')
  return str(path)


def refused(status, capsys, expected):
  """Asserts exit status 2 and one line on stderr holding ``expected``."""
  captured = capsys.readouterr()
  assert status == 2
  lines = captured.err.splitlines()
  assert len(lines) == 1, captured.err
  assert lines[0].startswith('wdax: error: ')
  assert expected in lines[0], lines[0]
