"""The wdax command line, fuzzed: no input gives a traceback (issue 12).

Hypothesis drives ``wdax sweep`` and ``wdax describe`` in process, through
``main(argv)``, with generated options and generated data files. Every
outcome must be one of two:

- exit status 0 and the outputs written (results.json, strict JSON, and
  sweep.png for a sweep; the table for describe; the usage for --help);
- exit status 2, exactly one line on stderr, ``wdax: error: ...``, naming
  the offending option, file, line or column, no warning, and nothing
  created under ``--out``.

Never an exception out of ``main``, never another status. The runs that
succeed train an epoch or two of a tiny MLP on a few dozen rows. Values past
the int32 and float32 ranges are fuzzed (the command line refuses them);
in-range but costly ones (a million epochs) are not: they are valid and
merely slow.

The tests: the options of ``wdax sweep`` and ``wdax describe``
(tests/test_cli_fuzz_options.py), data files (tests/test_cli_fuzz_files.py)
and any argv (tests/test_cli_fuzz_argv.py), each importing this module as a
plain module; the fixtures ``devices_started`` and ``data_file`` are in
tests/conftest.py. The named regression cases for what the search found are
in tests/test_cli_refusals.py, beside the hand-picked bad inputs.
"""

import contextlib
import io
import json
import os
import re
import warnings

import jax
from hypothesis import event
from hypothesis import strategies as st

from wdax import cli

# The options of a cheap sweep of `data_file` (3 classes, 8 rows each): about
# a second, mostly compilation.
CHEAP = {
    '--epochs': '1',
    '--hidden': '2',
    '--rates': '1e-3,1',
    '--folds': '2',
    '--seeds': '1',
    '--batch-size': '8',
}

SETTINGS = dict(deadline=None, print_blob=True)


def invoke(argv):
  """``(status, stdout, stderr, warnings)`` of ``cli.main(argv)``."""
  flags, devices = os.environ.get('XLA_FLAGS'), len(jax.devices())
  # As a UTF-8 terminal: stdout strict, stderr escaping what it cannot encode.
  out = io.TextIOWrapper(io.BytesIO(), encoding='utf-8', errors='strict')
  err = io.TextIOWrapper(io.BytesIO(), encoding='utf-8', errors='backslashreplace')
  with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter('always')
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      status = cli.main(argv)
  assert os.environ.get('XLA_FLAGS') == flags and len(jax.devices()) == devices
  noisy = [w for w in caught if not issubclass(w.category, DeprecationWarning)]
  texts = []
  for stream in (out, err):
    stream.flush()
    texts.append(stream.buffer.getvalue().decode('utf-8'))
  return status, *texts, noisy


def _no_constants(name):
  raise AssertionError(f'results.json holds {name}, which is not JSON')


def check(argv, out, names):
  """Asserts the contract; returns the error line, or None on success.

  ``names``: what an error line may name (options, paths, tokens); at least
  one of them must be in it.
  """
  existed = os.path.exists(out)
  status, stdout, stderr, noisy = invoke(argv)
  event(f'exit {status}')
  if status == 0:
    if stdout.startswith('usage: wdax'):  # --help
      assert os.path.exists(out) == existed
    elif argv and argv[0] == 'sweep':
      assert sorted(os.listdir(out)) == ['checkpoint', 'results.json', 'sweep.png']
      with open(os.path.join(out, 'results.json')) as f:
        report = json.loads(f.read(), parse_constant=_no_constants)
      assert report['command'] == ['wdax', *argv]
      with open(os.path.join(out, 'sweep.png'), 'rb') as f:
        assert f.read(8) == b'\x89PNG\r\n\x1a\n'
    else:
      assert 'decayed:' in stdout
    return None
  assert status == 2, (status, stderr)
  lines = stderr.splitlines()
  assert len(lines) == 1 and lines[0].startswith('wdax: error: '), stderr
  assert not noisy, [str(w.message) for w in noisy]
  assert os.path.exists(out) == existed
  if existed:
    assert os.listdir(out) == []
  assert any(name in lines[0] for name in names), (lines[0], names)
  # Statistics: which refusals the search reached, paths and numbers elided.
  event(re.sub(r"\S*/\S*|'[^']*'|\d+", '_', lines[0])[13:60])
  return lines[0]


# --- option values ----------------------------------------------------------

JUNK = st.text(max_size=6)
_INT_BAD = [
    '0', '-1', '', ' ', 'nan', 'inf', '1.5', '1e3', 'ten', '2147483648', '9' * 30,
    '-2147483649', '0x10',
]
_FLOAT_BAD = ['0', '-1', '', 'nan', 'NaN', 'inf', '-inf', 'abc', '1e39', '1e400', '-1e-9', '0x1p3']

GOOD = {
    '--epochs': ['1', '2', ' 1'],
    '--folds': ['2', '3'],
    '--seeds': ['1', '2'],
    '--hidden': ['2', '3,2', ' 4 ', '4,', '1'],
    '--batch-size': ['1', '5', '64', '2147483647'],
    '--lr': ['1e-3', '0.1', '1e38', '1e-30', '1e-3,1e-2', '3e-3, 1e-2 ,'],
    '--dropout': ['0', '0.1', '0,0.5', '0.99', '0.3,0.3'],
    '--prune': ['1', '1:2', '1:5', ' 1 : 2 '],
    '--rates': ['0', '1e-3,1', '1e-2:1:2', '3e38', '1e-3:1e-3:2', '1e-300'],
    '--criterion': ['loss', 'accuracy'],
    '--test-size': ['0.25', '0.5', '0.6', '1e-9'],
    '--seed': ['0', '7', '4294967295'],
    '--devices': ['1'],
    '--chunk-size': ['1', '3', '2147483647'],
    '--kind': ['adamw', 'l2', 'decoupled', 'cautious', 'adamw-none', 'adamw,l2', 'l1, cautious', 'adamw '],
}

# Values each option refuses: out of range, of the wrong type, empty,
# NaN or infinite, huge.
BAD = {
    '--epochs': _INT_BAD,
    '--folds': [*_INT_BAD, '1', '9', '100000', '2147483647'],
    '--seeds': _INT_BAD,
    '--hidden': ['0', '', ',', 'a', '4,0', '2147483648', '-3', '4;2', 'nan'],
    '--batch-size': _INT_BAD,
    '--lr': [*_FLOAT_BAD, '1e-3,0', '1e-3,,x', ',', '1e-3,nan'],
    '--dropout': ['1', '-0.1', 'nan', 'inf', '', ',', 'a', '0.5,1', '1e9', '0.1;0.2'],
    '--prune': ['0', '-1', '', 'a', '1:1', '1:0', '1:2:3', '1.5', ':3', '1:', '99:2', '2147483648', 'nan'],
    '--rates': [
        '', ',', 'a', '-1', 'nan', 'inf', '1e39', '1e-3:1', '1e-3:1:0', '0:1:3',
        '1:2:3:4', '1e-3:1:1001', 'nan:1:2', '1:inf:2', '1e-3:1:2.5', '0.1,,x',
        '1e-3:1e39:2',
    ],
    # r2 and perplexity are for a regression and for text, not a file of classes.
    '--criterion': ['', 'Loss', 'acc', 'loss,accuracy', 'r2', 'perplexity'],
    '--test-size': [*_FLOAT_BAD, '1', '1.5', '0.0'],
    '--seed': ['-1', '4294967296', 'a', '', '1.0', 'nan'],
    '--devices': ['0', '-2', 'a', '', '99', '2147483647', '2147483648'],
    '--chunk-size': _INT_BAD,
    '--kind': ['', 'adamx', 'ADAMW', 'adamw,adamx', ',', 'l2;l1'],
}


def flag_value(draw, flag, value):
  """``--flag value`` or ``--flag=value``; a value starting with '-' may be
  read as an option, which argparse reports naming the flag."""
  if draw(st.booleans()):
    return [f'{flag}={value}']
  return [flag, value]


# --- describe ---------------------------------------------------------------

# Each option of `wdax describe`: (values it takes, values it refuses).
DESCRIBE = {
    '--model': (['mlp', 'transformer'], ['', 'cnn', 'MLP']),
    '--mask': (['flax', 'flax+embeddings', 'matrices', 'all'], ['', 'none', 'kernels']),
    '--rate': (['0', '1e-4', '0.5', '1e300', '2'], ['-1', 'nan', 'inf', '-inf', '1e400', 'a', '']),
    '--hidden': (['1', '8,4', '2147483647', ' 3 '], ['0', '', ',', '-1', '2147483648', 'x']),
}
