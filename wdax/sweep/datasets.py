r"""Built-in data sets, all offline: four of scikit-learn's bundled tables and
images, and a text corpus every Python installation has, its own standard
library's source.

=================  ==============  ==========================================
name               problem         what
=================  ==============  ==========================================
``digits``         classification  8×8 images of handwritten digits, 10 classes
``breast_cancer``  classification  30 features of cell nuclei, 2 classes
``wine``           classification  13 chemical features, 3 cultivars
``diabetes``       regression      10 features, disease progression a year on
``text``           language        the standard library's ``.py`` source
=================  ==============  ==========================================

:func:`load` returns a :class:`Dataset`: its ``data`` is what the matching
task takes (``{'x', 'y'}`` for :func:`~wdax.sweep.classifier` and
:func:`~wdax.sweep.regressor`, ``{'tokens'}`` for
:func:`~wdax.sweep.language_model`), unsplit and unstandardised.
The four tables are scikit-learn's bundled copies, so they need it
installed. ``digits``, the command line's default, is read straight from
scikit-learn's package files without importing scikit-learn (a second or
more of imports on a small machine); the other three go through
``sklearn.datasets``.
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.util
import os
import sysconfig
from typing import Any

import numpy as np

from wdax.sweep import _checks as checks

PROBLEMS = ('classification', 'regression', 'language')

# The problem each built-in data set poses.
NAMES = {
    'digits': 'classification',
    'breast_cancer': 'classification',
    'wine': 'classification',
    'diabetes': 'regression',
    'text': 'language',
}

# The text's tokens: newline, tab, the 95 printable ASCII characters, and
# one id for any other byte.
_NEWLINE, _TAB, _FIRST = 0, 1, 2
OTHER = _FIRST + 95
VOCAB = OTHER + 1


@dataclasses.dataclass(frozen=True)
class Dataset:
  """A built-in data set.

  Attributes:
    name: its name, a key of :data:`NAMES`.
    problem: ``'classification'``, ``'regression'`` or ``'language'``.
    data: ``{'x': float64 features (n, d), 'y': int labels or float
      targets (n,)}``, or ``{'tokens': int32 rows (n, T + 1)}``.
    source: where it was read from.
    classes: the class names of a classification, else ``None``.
  """

  name: str
  problem: str
  data: dict[str, np.ndarray]
  source: str
  classes: tuple[str, ...] | None = None

  @property
  def examples(self) -> int:
    """The number of examples (rows)."""
    return len(next(iter(self.data.values())))


def stdlib_corpus(size: int, *, root: str | None = None) -> bytes:
  """The first ``size`` bytes of the standard library's public modules.

  The files are the ``.py`` files directly in ``root`` (by default the
  running Python's standard library, ``sysconfig.get_paths()['stdlib']``)
  whose names do not start with ``_``, in sorted order of their names,
  read as bytes and joined as they are. The corpus is the same on every
  run of the same Python installation; other versions of Python hold
  other source.

  Raises:
    ValueError: if ``size`` is not a positive int, or the files hold fewer
      than ``size`` bytes.

  Examples:
    >>> from wdax.sweep import datasets
    >>> datasets.stdlib_corpus(8) == datasets.stdlib_corpus(8)
    True
  """
  size = checks.integer(size, 'size', 1)
  root = sysconfig.get_paths()['stdlib'] if root is None else root
  try:
    names = sorted(n for n in os.listdir(root) if n.endswith('.py') and not n.startswith('_'))
  except OSError as e:
    raise ValueError(f'stdlib_corpus(): cannot list {root!r} ({e.strerror}).') from None
  parts, total = [], 0
  for name in names:
    path = os.path.join(root, name)
    if not os.path.isfile(path):
      continue
    with open(path, 'rb') as f:
      parts.append(f.read(size - total))
    total += len(parts[-1])
    if total >= size:
      return b''.join(parts)
  raise ValueError(
      f'stdlib_corpus(): the {len(names)} modules of {root!r} hold {total} bytes, '
      f'fewer than size={size}.'
  )


def encode(raw: bytes) -> np.ndarray:
  r"""Character tokens of ``raw``: one int32 id per byte.

  Newline is 0, tab 1, the printable ASCII characters ``' '`` to ``'~'``
  are 2 to 96 in order, and every other byte (a carriage return, a byte of
  a multi-byte UTF-8 character) is :data:`OTHER`, 97; :data:`VOCAB` is 98.

  Examples:
    >>> from wdax.sweep import datasets
    >>> datasets.encode(b'a =\n\t\xc3').tolist()
    [67, 2, 31, 0, 1, 97]
  """
  b = np.frombuffer(bytes(raw), np.uint8).astype(np.int32)
  printable = (b >= 32) & (b < 127)
  ids = np.where(printable, b - 32 + _FIRST, OTHER)
  ids = np.where(b == 10, _NEWLINE, ids)
  return np.where(b == 9, _TAB, ids).astype(np.int32)


def decode(ids: Any) -> str:
  """The text of tokens made by :func:`encode`; :data:`OTHER` shows as ``'?'``.

  Examples:
    >>> from wdax.sweep import datasets
    >>> datasets.decode(datasets.encode(b'def f():\\n\\treturn 1'))
    'def f():\\n\\treturn 1'
  """
  table = ['\n', '\t', *(chr(c) for c in range(32, 127)), '?']
  return ''.join(table[int(i)] for i in np.asarray(ids).ravel())


def rows(ids: Any, length: int) -> np.ndarray:
  """``ids`` cut in order into rows of ``length + 1`` tokens (a model reads
  ``length`` and predicts each next one); the tokens past the last whole
  row are dropped.

  Examples:
    >>> import numpy as np
    >>> from wdax.sweep import datasets
    >>> datasets.rows(np.arange(7), 2).tolist()
    [[0, 1, 2], [3, 4, 5]]
  """
  length = checks.integer(length, 'length', 1)
  ids = np.asarray(ids, np.int32).ravel()
  n = len(ids) // (length + 1)
  if n == 0:
    raise ValueError(f'rows(): {len(ids)} tokens make no row of {length + 1}.')
  return ids[: n * (length + 1)].reshape(n, length + 1)


def text(size: int = 16384, length: int = 32, *, root: str | None = None) -> Dataset:
  """The language-model data set: :func:`stdlib_corpus` of ``size`` bytes,
  :func:`encode`\\ d and cut into :func:`rows` of ``length + 1`` tokens, in
  the order of the corpus.

  Examples:
    >>> from wdax.sweep import datasets
    >>> data = datasets.text(size=660, length=32)
    >>> data.problem, data.data['tokens'].shape
    ('language', (20, 33))
  """
  ids = encode(stdlib_corpus(size, root=root))
  root = sysconfig.get_paths()['stdlib'] if root is None else root
  return Dataset(
      name='text', problem='language', data={'tokens': rows(ids, length)},
      source=f'{size} bytes of the public modules of {root}',
  )


def _sklearn_data_file(name: str) -> str:
  """The path of ``name`` among scikit-learn's bundled data files, found
  without importing scikit-learn."""
  spec = importlib.util.find_spec('sklearn')
  if spec is None or not spec.submodule_search_locations:
    raise ImportError(
        "the built-in tables are scikit-learn's; install it (pip install 'wdax[cli]')"
    )
  return os.path.join(spec.submodule_search_locations[0], 'datasets', 'data', name)


def _digits() -> Dataset:
  """``sklearn.datasets.load_digits()``'s data and target, read as it reads
  them (``np.loadtxt`` of ``digits.csv.gz``, the label in the last column)."""
  with gzip.open(_sklearn_data_file('digits.csv.gz'), 'rt', encoding='utf-8') as f:
    table = np.loadtxt(f, delimiter=',')
  data = {'x': table[:, :-1], 'y': table[:, -1].astype(np.int64)}
  classes = tuple(str(n) for n in range(10))
  return Dataset('digits', 'classification', data, 'sklearn.datasets.load_digits', classes)


def _sklearn(name: str) -> Dataset:
  if name == 'digits':
    return _digits()
  from sklearn import datasets as sk

  loaded = getattr(sk, f'load_{name}')()
  x = np.asarray(loaded.data, np.float64)
  source = f'sklearn.datasets.load_{name}'
  if NAMES[name] == 'regression':
    return Dataset(name, 'regression', {'x': x, 'y': np.asarray(loaded.target, np.float64)}, source)
  names = tuple(str(n) for n in getattr(loaded, 'target_names', np.unique(loaded.target)))
  y = np.asarray(loaded.target, np.int64)
  return Dataset(name, 'classification', {'x': x, 'y': y}, source, names)


def load(name: str) -> Dataset:
  """The built-in data set ``name``, a key of :data:`NAMES`.

  ``text`` is :func:`text` with its defaults; the others are scikit-learn's
  bundled copies, read offline, features as float64.

  Raises:
    ValueError: for a name not in :data:`NAMES`.
    ImportError: for a table, when scikit-learn is not installed.

  Examples:
    >>> from wdax.sweep import datasets
    >>> wine = datasets.load('wine')
    >>> wine.problem, wine.data['x'].shape, wine.classes
    ('classification', (178, 13), ('class_0', 'class_1', 'class_2'))
    >>> datasets.load('iris')
    Traceback (most recent call last):
      ...
    ValueError: unknown data set 'iris'; the built-in ones are 'digits', 'breast_cancer', 'wine', 'diabetes', 'text'.
  """
  if name not in NAMES:
    raise ValueError(
        f'unknown data set {name!r}; the built-in ones are {", ".join(map(repr, NAMES))}.'
    )
  if name == 'text':
    return text()
  return _sklearn(name)
