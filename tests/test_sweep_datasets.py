"""Tests of wdax.sweep.datasets: the built-in data sets and the text corpus."""

import builtins
import importlib.util
import os
import sysconfig

import numpy as np
import pytest

from wdax.sweep import datasets


def _modules(root, files):
  for name, text in files.items():
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text)
  return str(root)


def test_stdlib_corpus_reads_the_public_modules_in_name_order(tmp_path):
  root = _modules(tmp_path, {
      'b.py': b'import os\n', 'a.py': b'x = 1\n', '_private.py': b'no\n',
      'c.txt': b'no\n', 'pkg/d.py': b'no\n', 'e.py': b'y = 2\n',
  })
  assert datasets.stdlib_corpus(15, root=root) == b'x = 1\nimport os'
  assert datasets.stdlib_corpus(22, root=root) == b'x = 1\nimport os\ny = 2\n'
  with pytest.raises(ValueError, match='hold 22 bytes, fewer than size=23'):
    datasets.stdlib_corpus(23, root=root)


def test_stdlib_corpus_is_this_pythons_own_source():
  root = sysconfig.get_paths()['stdlib']
  names = sorted(n for n in os.listdir(root) if n.endswith('.py') and not n.startswith('_'))
  expected = b''
  for name in names:
    with open(os.path.join(root, name), 'rb') as f:
      expected += f.read()
    if len(expected) >= 50_000:
      break
  corpus = datasets.stdlib_corpus(50_000)
  assert corpus == expected[:50_000]
  assert datasets.stdlib_corpus(50_000) == corpus  # deterministic


def test_encode_and_decode_by_hand():
  ids = datasets.encode(b'\n\t ~A\r\xe2\x82\xac')
  assert ids.dtype == np.int32
  assert ids.tolist() == [0, 1, 2, 96, 2 + ord('A') - 32, 97, 97, 97, 97]
  assert datasets.VOCAB == 98
  assert datasets.decode(ids) == '\n\t ~A????'


def test_text_rows_are_the_corpus_in_order():
  data = datasets.text(size=1000, length=15)
  tokens = data.data['tokens']
  assert data.problem == 'language' and tokens.shape == (62, 16) and tokens.dtype == np.int32
  ids = datasets.encode(datasets.stdlib_corpus(1000))
  np.testing.assert_array_equal(tokens.ravel(), ids[: 62 * 16])
  np.testing.assert_array_equal(datasets.text(size=1000, length=15).data['tokens'], tokens)
  assert tokens.max() < datasets.VOCAB


def test_rows_refuses_too_few_tokens():
  with pytest.raises(ValueError, match='3 tokens make no row of 4'):
    datasets.rows(np.arange(3), 3)


@pytest.mark.parametrize(
    ('name', 'problem', 'shape'),
    [
        ('digits', 'classification', (1797, 64)),
        ('breast_cancer', 'classification', (569, 30)),
        ('wine', 'classification', (178, 13)),
        ('diabetes', 'regression', (442, 10)),
    ],
)
def test_the_tables_are_sklearns(name, problem, shape):
  from sklearn import datasets as sk

  x, y = getattr(sk, f'load_{name}')(return_X_y=True)
  data = datasets.load(name)
  assert data.problem == datasets.NAMES[name] == problem
  assert data.data['x'].shape == shape and data.examples == shape[0]
  np.testing.assert_array_equal(data.data['x'], x)
  np.testing.assert_array_equal(data.data['y'], y)
  assert data.data['x'].dtype == np.float64
  if problem == 'classification':
    names = getattr(sk, f'load_{name}')().target_names
    assert data.data['y'].dtype == np.int64 and len(data.classes) == y.max() + 1
    assert data.classes == tuple(str(n) for n in names)
  else:
    assert data.data['y'].dtype == np.float64 and data.classes is None


def test_digits_is_read_without_importing_sklearn(monkeypatch):
  from sklearn import datasets as sk

  x, y = sk.load_digits(return_X_y=True)
  real_import = builtins.__import__

  def no_sklearn(name, *args, **kwargs):
    assert not name.startswith('sklearn'), f'digits imported {name}'
    return real_import(name, *args, **kwargs)

  monkeypatch.setattr(builtins, '__import__', no_sklearn)
  data = datasets.load('digits')
  monkeypatch.undo()
  np.testing.assert_array_equal(data.data['x'], x)
  np.testing.assert_array_equal(data.data['y'], y)
  assert data.source == 'sklearn.datasets.load_digits'


def test_a_table_without_sklearn_installed_says_to_install_it(monkeypatch):
  monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
  with pytest.raises(ImportError, match=r"install it \(pip install 'wdax\[cli\]'\)"):
    datasets.load('digits')
