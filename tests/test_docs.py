"""The docs site: every exported name is in the API reference, and it builds.

The reference's pages are written from ``__all__`` (``docs/_ext/apipages.py``),
so a name added there is documented without editing the docs. These tests
check that no name is silently left out: in the pages' sources (fast), and in
the inventory of the built site, warnings as errors (slow: a Sphinx build).
"""

import importlib
import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support import shared

import wdax
from wdax import sweep

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / 'docs'
EXPORTED = [(wdax, name) for name in wdax.__all__] + [
    (sweep, name) for name in sweep.__all__
]


def _apipages():
  spec = importlib.util.spec_from_file_location(
      'apipages', DOCS / '_ext' / 'apipages.py'
  )
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def _resolve(dotted: str):
  """The object a documented name such as ``wdax.masks.Mask`` stands for."""
  parts = dotted.split('.')
  for cut in range(len(parts), 0, -1):
    try:
      obj = importlib.import_module('.'.join(parts[:cut]))
    except ImportError:
      continue
    for attr in parts[cut:]:
      obj = getattr(obj, attr)
    return obj
  raise ImportError(dotted)


def _names(dotted: str, value) -> bool:
  try:
    return _resolve(dotted) is value
  except (ImportError, AttributeError):
    return False


def _targets(text: str, current: str) -> set[str]:
  """Full names a page's autosummary rows and directives document or list."""
  found = set()
  for row in re.findall(r'^   ~?([\w.]+)$', text, flags=re.M):
    found.add(f'{current}.{row}')
  for directive in re.findall(r'^\.\. auto\w+:: ([\w.]+)$', text, flags=re.M):
    found.add(directive)
  for name, module in re.findall(
      r'^\.\. py:data:: (\w+)\n   :module: ([\w.]+)$', text, flags=re.M
  ):
    found.add(f'{module}.{name}')
  return found


@pytest.fixture(scope='module')
def pages():
  return _apipages().pages()


@pytest.mark.parametrize(
    'package,name', EXPORTED, ids=[f'{p.__name__}.{n}' for p, n in EXPORTED]
)
def test_every_exported_name_is_listed_in_the_reference_sources(
    pages, package, name
):
  page = pages[f'{package.__name__}.rst']
  targets = _targets(page, package.__name__)
  value = getattr(package, name)
  assert any(_names(t, value) for t in targets), (
      f'{package.__name__}.{name} is not on its package page'
  )


def test_the_reference_documents_no_internal_module():
  names = _apipages().public_modules()
  assert 'wdax.training' in names and 'wdax.sweep' in names
  assert [n for n in names if any(p.startswith('_') for p in n.split('.'))] == []


def _inventory(path: Path) -> dict[str, tuple[str, str]]:
  from sphinx.util.inventory import InventoryFile

  with open(path, 'rb') as f:
    inventory = InventoryFile.load(f, '', lambda base, uri: uri)
  return {
      name: (kind, item.uri if hasattr(item, 'uri') else item[2])
      for kind, items in inventory.items()
      for name, item in items.items()
  }


def _build_site(out):
  build = subprocess.run(
      [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-b',
       'html', str(DOCS), str(out)],
      cwd=ROOT, capture_output=True, text=True, timeout=600,
  )
  assert build.returncode == 0, build.stderr[-4000:]


@pytest.fixture(scope='module')
def built_site(tmp_path_factory):
  """The site, built once per test run."""
  return shared.folder(tmp_path_factory, 'html', _build_site)


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors_and_documents_all(built_site):
  inventory = _inventory(built_site / 'objects.inv')
  missing = []
  for package, name in EXPORTED:
    value = getattr(package, name)
    documented = [
        key for key, (kind, _) in inventory.items()
        if kind.startswith('py:') and key.rsplit('.', 1)[-1] == name
        and not any(p.startswith('_') for p in key.split('.'))
        and _names(key, value)
    ]
    if not documented:
      missing.append(f'{package.__name__}.{name}')
  assert missing == []


@pytest.mark.slow
def test_the_guides_are_pages_of_the_site(built_site):
  guides = sorted(p.stem for p in (DOCS / 'guides').glob('*.md'))
  assert 'which_decay' in guides
  built = sorted(p.stem for p in (built_site / 'guides').glob('*.html'))
  assert built == guides
