"""Loading a data set: a built-in one (:mod:`wdax.sweep.datasets`), or a
classification in a .npz or .csv file.

Every problem with a file is reported as :class:`BadInput` naming the file
and, where there is one, the line and column.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import os
from typing import Any

import numpy as np

from wdax.cli.errors import BadInput
from wdax.sweep import datasets


@dataclasses.dataclass(frozen=True)
class Data:
  """A loaded data set.

  Attributes:
    x: the features as float64, one row per example; for text, the int32
      token rows.
    labels: the raw labels, one per row, the regression targets, or
      ``None`` for text.
    source: where they came from, for messages and results.json.
    names: the names of the feature columns of a .csv, else ``None``.
    shape: the shape of one example before it was flattened into a row.
    problem: ``'classification'``, ``'regression'`` or ``'language'``.
    classes: the names of the classes when ``labels`` are their codes
      0, 1, ... (a built-in classification), else ``None``.
  """

  x: Any
  labels: Any
  source: str
  names: tuple[str, ...] | None
  shape: tuple[int, ...]
  problem: str = 'classification'
  classes: tuple[str, ...] | None = None

  def column(self, j: int) -> str:
    """Feature ``j`` as a message names it: ``column 'a'`` or ``x[:, 2, 3]``."""
    if self.names is not None:
      return f'column {self.names[j]!r}'
    return f'x[:, {", ".join(str(int(i)) for i in np.unravel_index(j, self.shape))}]'


def _load_npz(path: str):
  try:
    # Opened here, so that the file is closed even when NumPy cannot read it.
    with open(path, 'rb') as file, np.load(file, allow_pickle=False) as f:
      arrays = {k: f[k] for k in f.files}
  except Exception as e:  # noqa: BLE001 - any unreadable file is bad input
    raise BadInput(f'{path}: not a readable .npz file ({type(e).__name__}: {e})') from None
  missing = [k for k in ('x', 'y') if k not in arrays]
  if missing:
    raise BadInput(
        f'{path}: missing array {" and ".join(map(repr, missing))}; it has '
        f'{", ".join(map(repr, sorted(arrays))) or "no arrays"}'
    )
  x, y = arrays['x'], arrays['y']
  if not np.issubdtype(x.dtype, np.number):
    raise BadInput(f'{path}: x must be numeric; it has dtype {x.dtype}')
  if np.issubdtype(x.dtype, np.complexfloating):
    raise BadInput(f'{path}: x must be real; it has dtype {x.dtype}')
  if x.ndim < 2:
    raise BadInput(f'{path}: x must have one row per example; it has shape {x.shape}')
  if x.shape[0] == 0:
    raise BadInput(f'{path}: x has no rows; it has shape {x.shape}')
  if x[0].size == 0:
    raise BadInput(f'{path}: x has no features; it has shape {x.shape}')
  if y.ndim != 1 or len(y) != len(x):
    raise BadInput(
        f'{path}: y must be a vector with one label per row of x ({len(x)}); it '
        f'has shape {y.shape}'
    )
  if not (
      np.issubdtype(y.dtype, np.integer)
      or np.issubdtype(y.dtype, np.floating)
      or y.dtype.kind in 'bSU'
  ):
    raise BadInput(
        f'{path}: y must hold class labels (integers, whole numbers or strings); '
        f'it has dtype {y.dtype}'
    )
  if np.issubdtype(y.dtype, np.floating) and not np.isfinite(y).all():
    raise BadInput(f'{path}: y has NaN or infinite labels')
  return x.reshape(len(x), -1).astype(np.float64), y, None, x.shape[1:]


def _text(path: str) -> str:
  """The file's text, UTF-8 with or without a byte-order mark."""
  try:
    with open(path, 'rb') as f:
      raw = f.read()
  except OSError as e:
    raise BadInput(f'--data {path}: cannot read it ({e.strerror})') from None
  try:
    text = raw.decode('utf-8-sig')
  except UnicodeDecodeError as e:
    line = raw.count(b'\n', 0, e.start) + 1
    raise BadInput(
        f'{path}, line {line}: byte {raw[e.start]:#04x} is not UTF-8 text; '
        'save the file as UTF-8'
    ) from None
  if '\0' in text:  # binary, or UTF-16 without a byte-order mark
    line = text.count('\n', 0, text.index('\0')) + 1
    raise BadInput(f'{path}, line {line}: a NUL byte; save the file as UTF-8 text')
  return text


def _records(path: str):
  """``(line, row)`` for each record of the .csv, ``line`` where it ends."""
  reader = csv.reader(io.StringIO(_text(path), newline=''))
  while True:
    try:
      row = next(reader)
    except StopIteration:
      return
    except csv.Error as e:
      raise BadInput(f'{path}, line {reader.line_num}: not valid CSV ({e})') from None
    yield reader.line_num, row


def _load_csv(path: str):
  records = _records(path)
  first = next(records, None)
  if first is None:
    raise BadInput(f'{path}: the file is empty')
  header = [h.strip() for h in first[1]]
  if 'label' not in header:
    raise BadInput(
        f"{path}: no 'label' column; the columns are "
        f'{", ".join(map(repr, header[:10]))}{" ..." if len(header) > 10 else ""}'
    )
  at = [i for i, h in enumerate(header) if h == 'label']
  if len(at) > 1:
    raise BadInput(
        f"{path}: the 'label' column appears {len(at)} times (columns "
        f'{", ".join(str(i + 1) for i in at)}); keep one'
    )
  column = at[0]
  features = [i for i in range(len(header)) if i != column]
  if not features:
    raise BadInput(f"{path}: no feature columns besides 'label'")
  x, y = [], []
  for line, row in records:
    if not any(cell.strip() for cell in row):
      continue
    if len(row) != len(header):
      raise BadInput(f'{path}, line {line}: {len(row)} fields, expected {len(header)}')
    values = []
    for i in features:
      cell = row[i].strip()
      try:
        value = float(cell)
      except ValueError:
        raise BadInput(
            f'{path}, line {line}, column {header[i]!r}: {cell!r} is not a number'
        ) from None
      if not math.isfinite(value):
        raise BadInput(
            f'{path}, line {line}, column {header[i]!r}: {cell!r} is NaN or '
            'infinite'
        )
      values.append(value)
    if not row[column].strip():
      raise BadInput(f"{path}, line {line}, column 'label': the label is empty")
    x.append(values)
    y.append(row[column].strip())
  if not x:
    raise BadInput(f'{path}: no data rows')
  labels = np.asarray(y)
  try:
    labels = labels.astype(np.int64)
  except ValueError:
    pass
  names = tuple(header[i] for i in features)
  return np.asarray(x, np.float64), labels, names, (len(names),)


def _builtin(name: str) -> Data:
  try:
    found = datasets.load(name)
  except (ValueError, OSError, ImportError) as e:  # e.g. no .py sources, no sklearn
    raise BadInput(f'--data {name}: {e}') from None
  if found.problem == 'language':
    tokens = found.data['tokens']
    return Data(tokens, None, found.source, None, tokens.shape[1:], 'language')
  x = found.data['x']
  return Data(x, found.data['y'], found.source, None, x.shape[1:], found.problem, found.classes)


def load(data: str) -> Data:
  """The data set ``data``: the name of a built-in one
  (:data:`wdax.sweep.datasets.NAMES`), or a .npz or .csv file of classes."""
  if data in datasets.NAMES:
    return _builtin(data)
  path = data
  if not os.path.isfile(path):
    what = 'not a file' if os.path.exists(path) else 'no such file'
    raise BadInput(f'--data {path}: {what}')
  suffix = os.path.splitext(path)[1].lower()
  if suffix == '.npz':
    x, y, names, shape = _load_npz(path)
  elif suffix == '.csv':
    x, y, names, shape = _load_csv(path)
  else:
    raise BadInput(
        f'--data {path}: expected a .npz file (arrays x and y) or a .csv file '
        "(with a 'label' column)"
    )
  bad = ~np.isfinite(x).all(axis=1)
  if bad.any():
    raise BadInput(
        f'{path}: x has NaN or infinite values in {int(bad.sum())} rows (first: '
        f'row {int(np.argmax(bad))})'
    )
  return Data(x, y, os.path.abspath(path), names, shape)


def label(value: Any) -> str:
  """A class label for a message: ``2`` or ``'cat'``."""
  value = value.item() if hasattr(value, 'item') else value
  return repr(value) if isinstance(value, str) else str(value)
