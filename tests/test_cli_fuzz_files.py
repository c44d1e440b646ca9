"""Data files, fuzzed (issue 12): small generated .npz and .csv tables with
none, one or two defects each, swept with the CHEAP options. A file trains
exactly when it has no defect but harmless ones; otherwise the one line names
it. The contract every run must keep is in tests/support/cli_fuzzing.py."""

import io
import math
import os
import tempfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from support.cli_fuzzing import CHEAP
from support.cli_fuzzing import SETTINGS
from support.cli_fuzzing import check

pytestmark = pytest.mark.usefixtures('devices_started')

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
@settings(max_examples=48, **SETTINGS)
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
    line = check(argv, out, names=[path.encode('utf-8', 'backslashreplace').decode()])
  if not defects & _HARMLESS:
    assert (line is None) == (not defects), (line, defects)


# What a file may have and still train; with any other defect it is refused.
_HARMLESS = {
    'constant column', 'huge cell', 'tiny cell', 'drawn labels', 'string labels',
    'float labels', '3-D x', 'float16 x', 'int8 x', ' label ', 'byte-order mark', 'CRLF',
    'blank lines',
}
