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

The named regression cases for what this search found are in
tests/test_cli.py, beside the hand-picked bad inputs.
"""

import contextlib
import io
import json
import math
import os
import re
import tempfile
import warnings

import jax
import numpy as np
import pytest
from hypothesis import event
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from wdax import cli
from wdax.cli.parsing import CRITERIA
from wdax.cli.parsing import DATASETS

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

_SETTINGS = dict(deadline=None, print_blob=True)


@pytest.fixture(scope='module', autouse=True)
def _devices_started():
  # With JAX's backend started, `wdax sweep` cannot ask XLA for host devices:
  # no run here changes the devices or XLA_FLAGS of later tests. The checks
  # in `_invoke` make sure of it.
  jax.devices()


@pytest.fixture(scope='module')
def data_file(tmp_path_factory):
  rng = np.random.default_rng(0)
  y = np.arange(24) % 3
  x = rng.normal(size=(24, 3)) + y[:, None]
  path = tmp_path_factory.mktemp('data') / 'blobs.npz'
  np.savez(path, x=x, y=y)
  return str(path)


def _invoke(argv):
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


def _check(argv, out, names):
  """Asserts the contract; returns the error line, or None on success.

  ``names``: what an error line may name (options, paths, tokens); at least
  one of them must be in it.
  """
  existed = os.path.exists(out)
  status, stdout, stderr, noisy = _invoke(argv)
  event(f'exit {status}')
  if status == 0:
    if stdout.startswith('usage: wdax'):  # --help
      assert os.path.exists(out) == existed
    elif argv and argv[0] == 'sweep':
      assert sorted(os.listdir(out)) == ['results.json', 'sweep.png']
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

_JUNK = st.text(max_size=6)
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


def _bad_out(out):
  """A bad --out value, made real on the disk where it needs to be."""
  under = os.path.join(os.path.dirname(out), 'a-file')
  with open(under, 'w') as f:
    f.write('not a folder')
  return st.sampled_from(['', under, os.path.join(under, 'x'), out + '\0', 'x' * 300])


def _flag_value(draw, flag, value):
  """``--flag value`` or ``--flag=value``; a value starting with '-' may be
  read as an option, which argparse reports naming the flag."""
  if draw(st.booleans()):
    return [f'{flag}={value}']
  return [flag, value]


# --- one bad option ---------------------------------------------------------


@settings(max_examples=200, **_SETTINGS)
@given(data=st.data())
def test_one_bad_option_is_refused_by_name(data, data_file):
  flag = data.draw(st.sampled_from([*BAD, '--data', '--out', '--cache']), label='flag')
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'out')
    cache = os.path.join(tmp, 'cache')
    if flag == '--data':
      folder = os.path.join(tmp, 'folder.npz')
      os.mkdir(folder)
      # Built-in names are matched exactly: anything near one is a path.
      value = data.draw(st.sampled_from([
          os.path.join(tmp, 'missing.npz'), folder, data_file[:-4] + '.txt', '',
          data_file + '\0', 'Digits', 'iris', ' text', 'wine.csv',
      ]), label='value')
    elif flag in ('--out', '--cache'):
      value = data.draw(_bad_out(out if flag == '--out' else cache), label='value')
    else:
      value = data.draw(st.sampled_from(BAD[flag]), label='value')
    options = {'--data': data_file, '--out': out, **CHEAP, flag: value}
    argv = ['sweep', '--quiet']
    for name, v in options.items():
      argv += _flag_value(data.draw, name, v)
    assert _check(argv, out, names=[flag]) is not None
    assert not os.path.exists(cache)


# --- options combined -------------------------------------------------------


@pytest.mark.slow
@settings(max_examples=40, **_SETTINGS)
@given(data=st.data())
def test_options_combined(data, data_file):
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'out')
    options = [['--data', data_file], ['--out', out]]
    for flag in GOOD:
      # Mostly good, so that about half the runs train and extreme good
      # values meet (--lr 1e38 with --one-se); test_one_bad_option_is_refused_by_name
      # covers the bad ones. The defaults of the CHEAP options train for
      # long: they are never left out.
      how = data.draw(
          st.sampled_from(['good'] * 24 + ['bad', 'junk'] + ([] if flag in CHEAP else ['absent'] * 4)),
          label=flag,
      )
      values = {'good': st.sampled_from(GOOD[flag]), 'bad': st.sampled_from(BAD[flag]), 'junk': _JUNK}
      if how != 'absent':
        options.append(_flag_value(data.draw, flag, data.draw(values[how], label=f'{flag} value')))
    for flag in ('--one-se', '--quiet'):
      if data.draw(st.booleans(), label=flag):
        options.append([flag])
    argv = ['sweep', *sum(data.draw(st.permutations(options), label='order'), [])]
    _check(argv, out, names=[*(o[0].split('=')[0] for o in options), data_file])


# --- built-in data sets -----------------------------------------------------


@pytest.mark.slow
@settings(max_examples=12, **_SETTINGS)
@given(data=st.data())
def test_builtin_data_sets(data):
  name = data.draw(st.sampled_from(sorted(DATASETS)), label='data set')
  criterion = data.draw(st.sampled_from(['loss', 'accuracy', 'r2', 'perplexity']), label='criterion')
  kinds = data.draw(st.sampled_from(['adamw', 'l1,cautious']), label='kinds')
  extra = data.draw(st.sampled_from(
      [[], ['--lr', '1e-3,1e-2'], ['--dropout', '0,0.3'], ['--prune', '1:2'], ['--one-se']]
  ), label='options')
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'out')
    argv = [
        'sweep', '--data', name, '--criterion', criterion, '--kind', kinds, '--rates', '1e-2,1',
        '--epochs', '2', '--folds', '2', '--hidden', '4', '--batch-size', '64', '--quiet',
        '--devices', '1', '--out', out, *extra,
    ]
    line = _check(argv, out, names=['--criterion'])
  # Refused exactly when the data set has no such criterion.
  assert (line is None) == (criterion in CRITERIA[DATASETS[name]]), line


# --- data files -------------------------------------------------------------

_NUMBER = st.integers(-3, 3).map(float) | st.floats(-5, 5, allow_nan=False)

# Each generated file is a small good table with no defect (about a third of
# the time), one, or two of these.
_COMMON = [
    'zero rows', 'one row', 'two rows', 'no features', 'constant column', 'nan cell',
    'inf cell', 'huge cell', 'tiny cell', 'single class', 'one example of a class',
    'drawn labels', 'string labels', 'float labels', 'nan label', 'short y', 'long y',
]
_NPZ = [
    '3-D x', '1-D x', '2-D y', 'float16 x', 'int8 x', 'bool x', 'complex x', 'str x',
    'complex y', 'no x', 'no y', 'not a zip',
]
_CSV = [
    'no label column', 'Label', 'two label columns', ' label ', 'text cell', 'empty cell',
    'empty label', 'short row', 'long row', 'byte-order mark', 'latin-1', 'bad byte',
    'open quote', 'NUL', 'CRLF', 'blank lines', 'huge field',
]


def _defects(draw, specific):
  choices = ['none'] * len(_COMMON) + _COMMON + specific
  found = {draw(st.sampled_from(choices), label='defect')}
  if draw(st.integers(0, 4), label='two defects') == 0:
    found.add(draw(st.sampled_from(_COMMON + specific), label='defect'))
  found.discard('none')
  return found


@st.composite
def _table(draw, defects):
  """``(x, y)``: a small labelled table with the common ``defects``."""
  rows = 1 if 'one row' in defects else 2 if 'two rows' in defects else draw(
      st.sampled_from([12, 18, 24]), label='rows')
  if 'zero rows' in defects:
    rows = 0
  features = 0 if 'no features' in defects else draw(st.integers(1, 4), label='features')
  cells = draw(st.lists(_NUMBER, min_size=rows * features, max_size=rows * features))
  x = np.array(cells, float).reshape(rows, features)
  classes = draw(st.integers(2, 3), label='classes')
  y = np.arange(rows) % classes
  if x.size:
    cell = (draw(st.integers(0, rows - 1)), draw(st.integers(0, features - 1)))
    for defect, value in (('nan cell', math.nan), ('inf cell', -math.inf),
                          ('huge cell', 1e300), ('tiny cell', 1e-300)):
      if defect in defects:
        x[cell] = value
    if 'constant column' in defects:
      x[:, cell[1]] = x[0, cell[1]]
  if 'single class' in defects:
    y[:] = 0
  if 'one example of a class' in defects and rows:
    y[y == classes - 1] = 0
    y[-1] = classes - 1
  if 'drawn labels' in defects:
    y = np.array(draw(st.lists(st.integers(0, 3), min_size=rows, max_size=rows)), int)
  if 'string labels' in defects:
    y = np.array(['cat', 'dog', 'eel', 'fox'])[y]
  elif 'float labels' in defects or 'nan label' in defects:
    y = y.astype(float)
    if 'nan label' in defects and rows:
      y[draw(st.integers(0, rows - 1))] = math.nan
  if 'short y' in defects:
    y = y[:-1]
  if 'long y' in defects:
    y = np.concatenate([y, y[:1]])
  return x, y


@st.composite
def _npz(draw):
  defects = _defects(draw, _NPZ)
  if 'not a zip' in defects:
    return b'PK\x03\x04 not really a zip', defects
  x, y = draw(_table(defects))
  with np.errstate(all='ignore'):
    finite = np.nan_to_num(x, posinf=1e6, neginf=-1e6)
    changed = {
        '3-D x': lambda: x.reshape(len(x), -1, 1, 1) if x.size else x[:, :, None],
        '1-D x': lambda: x.reshape(-1),
        'float16 x': lambda: x.astype(np.float16),
        'int8 x': lambda: finite.astype(np.int8),
        'bool x': lambda: finite.astype(bool),
        'complex x': lambda: x.astype(complex),
        'str x': lambda: x.astype(str),
    }
    for defect, make in changed.items():
      if defect in defects:
        x = make()
  if 'complex y' in defects:
    y = y.astype(complex) if y.dtype.kind != 'U' else y
  if '2-D y' in defects:
    y = y[:, None]
  arrays = {'x': x, 'y': y}
  for name in ('x', 'y'):
    if f'no {name}' in defects:
      del arrays[name]
  buffer = io.BytesIO()
  np.savez(buffer, **arrays)
  return buffer.getvalue(), defects


@st.composite
def _csv(draw):
  defects = _defects(draw, _CSV)
  x, y = draw(_table(defects))
  header = [f'f{i}' for i in range(x.shape[1])]
  at = draw(st.integers(0, len(header)), label='label column')
  label = {'no label column': 'target', 'Label': 'Label', ' label ': ' label '}
  header.insert(at, next((label[d] for d in defects if d in label), 'label'))
  if 'two label columns' in defects:
    header.append('label')
  rows = []
  for i in range(max(len(x), len(y))):
    cells = [repr(float(v)) for v in x[i]] if i < len(x) else []
    cells.insert(min(at, len(cells)), str(y[i]) if i < len(y) else '')
    if 'two label columns' in defects:
      cells.append(cells[min(at, len(cells) - 1)])
    rows.append(cells)
  if rows:
    row = rows[draw(st.integers(0, len(rows) - 1))]
    where = draw(st.integers(0, len(row) - 1))
    if 'text cell' in defects and x.size:
      row[where if where != at else where - 1 if where else where + 1] = 'abc'
    if 'empty cell' in defects:
      row[where] = ''
    if 'empty label' in defects:
      row[min(at, len(row) - 1)] = ' '
    if 'short row' in defects:
      row.pop()
    if 'long row' in defects:
      row.append('1')
    if 'huge field' in defects:
      row[where] = '1' * 200_000
  ending = '\r\n' if 'CRLF' in defects else '\n'
  lines = [','.join(header), *(','.join(r) for r in rows)]
  if 'blank lines' in defects:
    lines.insert(len(lines) // 2, '')
    lines.append(',' * len(header))
  raw = (ending.join(lines) + ending).encode()
  if 'byte-order mark' in defects:
    raw = b'\xef\xbb\xbf' + raw
  if 'latin-1' in defects:
    raw = raw.replace(b'f0', 'f\xe9'.encode('latin-1'), 1)
  if 'bad byte' in defects:
    at = draw(st.integers(0, len(raw)))
    raw = raw[:at] + b'\xff' + raw[at:]
  if 'open quote' in defects:
    raw = raw.replace(b',', b',"', 1)
  if 'NUL' in defects:
    at = draw(st.integers(0, len(raw)))
    raw = raw[:at] + b'\0' + raw[at:]
  return raw, defects


@pytest.mark.slow
@settings(max_examples=80, **_SETTINGS)
@given(data=st.data())
def test_data_files(data):
  suffix = data.draw(st.sampled_from(['.npz', '.csv']), label='suffix')
  raw, defects = data.draw(_npz() if suffix == '.npz' else _csv(), label='file')
  # A byte that is not UTF-8 in a name reaches Python as a lone surrogate.
  odd = data.draw(st.sampled_from(['', '', '', '\udcff']), label='odd name')
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, f'data{odd}{suffix}')
    out = os.path.join(tmp, f'out{odd}')
    with open(path, 'wb') as f:
      f.write(raw)
    argv = ['sweep', '--data', path, '--out', out, '--quiet', '--devices', '1']
    for flag, value in CHEAP.items():
      argv += [flag, value]
    line = _check(argv, out, names=[path.encode('utf-8', 'backslashreplace').decode()])
  if not defects & _HARMLESS:
    assert (line is None) == (not defects), (line, defects)


# What a file may have and still train; with any other defect it is refused.
_HARMLESS = {
    'constant column', 'huge cell', 'tiny cell', 'drawn labels', 'string labels',
    'float labels', '3-D x', 'float16 x', 'int8 x', ' label ', 'byte-order mark', 'CRLF',
    'blank lines',
}


# --- describe ---------------------------------------------------------------

DESCRIBE = {
    '--model': (['mlp', 'transformer'], ['', 'cnn', 'MLP']),
    '--mask': (['flax', 'flax+embeddings', 'matrices', 'all'], ['', 'none', 'kernels']),
    '--rate': (['0', '1e-4', '0.5', '1e300', '2'], ['-1', 'nan', 'inf', '-inf', '1e400', 'a', '']),
    '--hidden': (['1', '8,4', '2147483647', ' 3 '], ['0', '', ',', '-1', '2147483648', 'x']),
}


@settings(max_examples=60, **_SETTINGS)
@given(data=st.data())
def test_describe(data):
  argv, bad = ['describe'], []
  for flag, (good, refused) in DESCRIBE.items():
    how = data.draw(st.sampled_from(['absent', 'good', 'good', 'bad', 'junk']), label=flag)
    if how == 'absent':
      continue
    value = data.draw(
        st.sampled_from(good) if how == 'good' else _JUNK if how == 'junk' else st.sampled_from(refused),
        label=f'{flag} value',
    )
    argv += _flag_value(data.draw, flag, value)
    if how == 'bad':
      bad.append(flag)
  with tempfile.TemporaryDirectory() as tmp:
    line = _check(argv, os.path.join(tmp, 'out'), names=[*DESCRIBE, 'argument'])
  assert (line is not None) >= bool(bad)


# --- any argv ---------------------------------------------------------------

_FLAGS = [*GOOD, *DESCRIBE, '--data', '--out', '--one-se', '--quiet', '--help', '-h',
          '--', '--ep', '--se', '--s', '-', '--no-such']
_TOKENS = (
    st.sampled_from(_FLAGS)
    | st.sampled_from(sorted({v for values in BAD.values() for v in values}))
    | st.sampled_from(sorted({v for values in GOOD.values() for v in values}))
    | st.text(max_size=8)
)


@settings(max_examples=150, **_SETTINGS)
@given(
    command=st.sampled_from(['sweep', 'describe', '', 'sweeps', '--help', '-x']),
    tokens=st.lists(_TOKENS, max_size=8),
)
def test_any_argv(command, tokens, data_file):
  with tempfile.TemporaryDirectory() as tmp:
    out = os.path.join(tmp, 'out')
    argv = [command, *tokens] if command else tokens
    if command == 'sweep':
      # Last, so these win over the same options among the tokens: a sweep
      # that runs stays small.
      argv += ['--data', data_file, '--out', out]
      for flag, value in CHEAP.items():
        argv += [flag, value]
    _check(argv, out, names=[*_FLAGS, 'argument', *(t for t in argv if t)])
