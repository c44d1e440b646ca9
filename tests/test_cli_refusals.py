"""Tests of the bad input ``wdax sweep`` refuses: exit status 2, one line on
stderr naming the option, file, line or column, and nothing written.

The hand-picked cases come first, then those that once gave a traceback
(or were accepted silently). ``--help`` in
process returns 0, and no command is bad input too.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
from support.cli_inputs import TINY
from support.cli_inputs import blobs
from support.cli_inputs import csv_file
from support.cli_inputs import npz_file
from support.cli_inputs import refused
from support.cli_inputs import run

from wdax import cli
from wdax import sweep

pytestmark = pytest.mark.usefixtures('keep_xla_flags')


def _bad_inputs(tmp_path):
  x, y = blobs()
  x_nan = x.copy()
  x_nan[7, 2] = np.nan
  few = y.copy()
  few[few == 2] = 1
  few[:3] = 2  # class 2: three examples, about one in training
  return {
      'missing file': ['--data', str(tmp_path / 'nope.npz')],
      'missing column': ['--data', csv_file(tmp_path / 'c.csv', x, y, label='target')],
      'missing array': ['--data', str(_save(tmp_path / 'noy.npz', x=x))],
      'nan in npz': ['--data', npz_file(tmp_path / 'nan.npz', x_nan, y)],
      'nan in csv': ['--data', csv_file(tmp_path / 'nan.csv', x_nan, y)],
      'text in csv': ['--data', str(_text(tmp_path / 't.csv', 'a,label\n1,0\nx,1\n'))],
      'too few of a class': ['--data', npz_file(tmp_path / 'few.npz', x, few), '--folds', '5'],
      'empty grid': ['--rates', '1e-3:1:0'],
      'empty list': ['--rates', ','],
      'malformed grid': ['--rates', '1e-3:1'],
      'negative rate': ['--rates', '0.1,-1'],
      'unknown kind': ['--kind', 'adamx'],
      'bad extension': ['--data', str(_text(tmp_path / 'd.txt', '1,2\n'))],
      'bad option': ['--epochs', '0'],
  }


def _save(path, **arrays):
  np.savez(path, **arrays)
  return path


def _text(path, text):
  path.write_text(text)
  return path


EXPECTED = {
    'missing file': 'no such file',
    'missing column': "no 'label' column; the columns are 'f0'",
    'missing array': "missing array 'y'",
    'nan in npz': 'NaN or infinite values in 1 rows (first: row 7)',
    'nan in csv': "line 9, column 'f2': 'nan' is NaN or infinite",
    'text in csv': "line 3, column 'a': 'x' is not a number",
    'too few of a class': 'class 2 has 1 training example, fewer than --folds 5',
    'empty grid': 'the grid is empty',
    'empty list': 'the grid is empty',
    'malformed grid': 'expected START:STOP:NUM',
    'negative rate': "'-1' must be finite and non-negative",
    'unknown kind': "--kind 'adamx': unknown",
    'bad extension': 'expected a .npz file',
    'bad option': "argument --epochs: '0' must be at least 1",
}


@pytest.mark.parametrize('case', sorted(EXPECTED))
def test_bad_input_is_one_line_and_exit_2(case, tmp_path, capsys):
  out = tmp_path / 'out'
  args = _bad_inputs(tmp_path)[case]
  status = cli.main(['sweep', *args, '--out', str(out), '--quiet', '--devices', '1'])
  refused(status, capsys, EXPECTED[case])
  assert not out.exists()


# Issue 12: bad input that gave a traceback (or was accepted silently), from
# the issue and from the fuzz (tests/test_cli_fuzz_*.py): the option or file
# each case writes, and the line it now gets.


def _labelled_twice(path):
  x, y = blobs()
  lines = ['label,' + ','.join(f'f{i}' for i in range(5)) + ',label']
  lines += [','.join([str(c), *map(str, r), str(c)]) for r, c in zip(x, y)]
  return _text(path, '\n'.join(lines) + '\n')


def _label_missing_on_line_82(path):
  x, y = blobs()
  csv_file(path, x, y)
  with path.open('a') as f:
    f.write('1,2,3,4,5, \n')
  return path


FOUND = {
    'one fold': lambda tmp: (['--folds', '1'], "argument --folds: '1' must be at least 2"),
    'no rows': lambda tmp: (
        ['--data', npz_file(tmp / 'empty.npz', np.zeros((0, 3)), np.zeros(0))],
        'empty.npz: x has no rows; it has shape (0, 3)',
    ),
    'no features': lambda tmp: (
        ['--data', npz_file(tmp / 'thin.npz', np.zeros((80, 0)), np.arange(80) % 3)],
        'thin.npz: x has no features; it has shape (80, 0)',
    ),
    'complex x': lambda tmp: (
        ['--data', npz_file(tmp / 'z.npz', blobs()[0] + 1j, blobs()[1])],
        'z.npz: x must be real; it has dtype complex128',
    ),
    'not utf-8': lambda tmp: (
        ['--data', str(_bytes(tmp / 'l1.csv', b'a,label\n1,0\n\xe9,1\n'))],
        'l1.csv, line 3: byte 0xe9 is not UTF-8 text',
    ),
    'two label columns': lambda tmp: (
        ['--data', str(_labelled_twice(tmp / 'two.csv'))],
        "two.csv: the 'label' column appears 2 times (columns 1, 7); keep one",
    ),
    'empty label': lambda tmp: (
        ['--data', str(_label_missing_on_line_82(tmp / 'e.csv'))],
        "e.csv, line 82, column 'label': the label is empty",
    ),
    'NUL in a header': lambda tmp: (
        ['--data', str(_bytes(tmp / 'n.csv', b'f0\0,f1,label\n' + b'1,2,0\n3,4,1\n' * 12))],
        'n.csv, line 1: a NUL byte; save the file as UTF-8 text',
    ),
    'huge field': lambda tmp: (
        ['--data', str(_text(tmp / 'h.csv', 'a,label\n' + '1' * 200_000 + ',0\n'))],
        'h.csv, line 2: not valid CSV (field larger than field limit (131072))',
    ),
    'negative seed': lambda tmp: (['--seed', '-1'], "argument --seed: '-1' must be at least 0"),
    'epochs past int32': lambda tmp: (
        ['--epochs', '99999999999999999999'],
        "argument --epochs: '99999999999999999999' must be at most 2147483647",
    ),
    'rate past float32': lambda tmp: (
        ['--rates', '1e-3,1e39'], "--rates: '1e39' must be at most 3.402823e+38 (float32)"
    ),
    'lr past float32': lambda tmp: (
        ['--lr', '1e39'], "argument --lr: '1e39' must be at most 3.402823e+38 (float32)"
    ),
    'a million rates': lambda tmp: (
        ['--rates', '1e-3:1:1000000'], 'at most 1000 rates (NUM is 1000000)'
    ),
    'an MLP past the memory': lambda tmp: (
        ['--data', npz_file(tmp / 'd.npz', *blobs()), '--hidden', '2147483647'],
        '--hidden 2147483647 --seeds 1: training MLP(2147483647) on 5 features needs '
        'at least ',
    ),
    'seeds past the memory': lambda tmp: (
        ['--data', npz_file(tmp / 'd.npz', *blobs()), '--seeds', '2147483647'],
        '--hidden 256 --seeds 2147483647: training MLP(256) on 5 features needs at least ',
    ),
    'folder as data': lambda tmp: (['--data', str(tmp)], f'--data {tmp}: not a file'),
    'newline in a path': lambda tmp: (
        ['--data', str(tmp / 'a\nb.csv')], f'--data {tmp}/a\\nb.csv: no such file'
    ),
}


def _bytes(path, data):
  path.write_bytes(data)
  return path


@pytest.mark.parametrize('case', sorted(FOUND))
def test_input_that_once_gave_a_traceback_is_one_line_and_exit_2(case, tmp_path, capsys):
  out = tmp_path / 'out'
  args, expected = FOUND[case](tmp_path)
  status = cli.main(['sweep', *args, '--out', str(out), '--quiet', '--devices', '1'])
  refused(status, capsys, expected)
  assert not out.exists()


@pytest.mark.parametrize('case', ['empty', 'under a file', 'a file', 'NUL', 'long name'])
def test_bad_out_is_refused_before_training(case, tmp_path, capsys):
  a_file = tmp_path / 'a-file'
  a_file.write_text('')
  out, expected = {
      'empty': ('', '--out: give a folder'),
      'under a file': (str(a_file / 'x'), f'--out {a_file}/x: {a_file} is not a folder'),
      'a file': (str(a_file), f'--out {a_file}: exists and is not a folder'),
      'NUL': ('out\0', "--out 'out\\x00': a path cannot hold a NUL character"),
      'long name': (str(tmp_path / ('x' * 300)), 'a name in it is longer than'),
  }[case]
  # A --data that does not exist: the --out check comes first.
  status = cli.main(['sweep', '--data', str(tmp_path / 'none.npz'), '--out', out])
  refused(status, capsys, expected)
  assert sorted(os.listdir(tmp_path)) == ['a-file']


def test_devices_past_the_cores_are_refused(tmp_path):
  # A fresh process, XLA_FLAGS unset: one host device per core is asked for,
  # and no more, whatever --devices says.
  env = {k: v for k, v in os.environ.items() if k != 'XLA_FLAGS'}
  out = tmp_path / 'out'
  done = subprocess.run(
      [sys.executable, '-m', 'wdax', 'sweep', '--devices', '99', '--out', str(out)],
      capture_output=True, text=True, timeout=600, check=False, env=env,
  )
  cores = os.cpu_count()
  assert done.returncode == 2
  assert done.stderr.splitlines() == [
      f'wdax: error: --devices 99: only {cores} cpu device(s) are available ({cores} '
      'cores; XLA_FLAGS=--xla_force_host_platform_device_count=N simulates more)'
  ]
  assert not out.exists()


@pytest.mark.parametrize(
    ('error', 'shown'),
    [
        ('xla', 'RESOURCE_EXHAUSTED: Out of memory allocating 11880002440 bytes.'),
        ('numpy', 'Unable to allocate 102. GiB for an array with shape (1, 2, 214748365, 64)'),
    ],
)
def test_running_out_of_memory_is_one_line(error, shown, tmp_path, capsys, monkeypatch):
  # Past the sweep's memory estimate that --hidden and --seeds are checked
  # against, running out of memory in XLA or (for a huge --epochs) in NumPy
  # reaches the command line as the sweep's OutOfMemory (tests/
  # test_sweep_errors.py), and becomes the one line.
  import jax

  from wdax.sweep import errors

  def select(*args, **kwargs):
    with errors.out_of_memory():
      raise (jax.errors.JaxRuntimeError if error == 'xla' else MemoryError)(shown)

  monkeypatch.setattr(sweep, 'select', select)
  out = tmp_path / 'out'
  status = cli.main(['sweep', '--out', str(out), *TINY])
  refused(
      status, capsys,
      f'out of memory in the sweep of MLP(16), 2 epochs, 1 seed(s) ({shown}); try a '
      'smaller --hidden, --epochs, --seeds or --chunk-size',
  )
  assert not out.exists()


@pytest.mark.parametrize('rule', [[], ['--one-se']])
def test_a_sweep_diverged_at_every_rate_is_one_line(rule, tmp_path, capsys):
  # lr 1e38 makes every training NaN; wdax.sweep chooses no point with a
  # diverged training, so there is nothing to choose or refit.
  out = tmp_path / 'out'
  status = cli.main(['sweep', '--lr', '1e38', *rule, '--rates', '1e-3,1', *TINY, '--out', str(out)])
  refused(
      status, capsys,
      'the training diverged (NaN or infinite loss) at every one of the 3 rates with '
      '--kind adamw, so none can be chosen; try a smaller --lr',
  )
  assert not out.exists()


def test_help_in_process_returns_0(capsys):
  assert cli.main(['sweep', '--help']) == 0
  assert capsys.readouterr().out.startswith('usage: wdax sweep')


def test_a_line_break_in_an_argument_stays_on_one_line(capsys):
  refused(cli.main(['sweep', 'a\nb\u2028c']), capsys, 'unrecognized arguments: a\\nb\\u2028c')


def test_a_held_out_value_too_far_names_its_column(tmp_path, capsys):
  x, y = blobs()
  x = x.reshape(80, 5, 1)
  # Feature (3, 0) is 0 on every training example; one held-out example
  # sits 1e300 from it, which float32 cannot hold after standardising.
  held_out = sweep.stratified_split(y, 0.5, seed=0)[1]
  x[:, 3, 0] = 0.0
  x[held_out[0], 3, 0] = 1e300
  out = tmp_path / 'out'
  status = cli.main(['sweep', '--data', npz_file(tmp_path / 'far.npz', x, y), '--out', str(out), *TINY])
  refused(status, capsys, 'far.npz: x[:, 3, 0]: a held-out value is too far from the training values')
  assert not out.exists()


def test_bad_input_from_the_shell_is_one_line(tmp_path):
  out = tmp_path / 'out'
  done = run('sweep', '--data', str(tmp_path / 'missing.csv'), '--out', str(out))
  assert done.returncode == 2
  assert done.stderr.splitlines() == [
      f'wdax: error: --data {tmp_path / "missing.csv"}: no such file'
  ]
  assert not out.exists()


def test_no_command_is_bad_input(capsys):
  assert cli.main([]) == 2
  assert capsys.readouterr().err.startswith('wdax: error: ')
