"""What pyproject.toml declares: the imports it must cover, the files it ships.

The floors themselves are checked by running the fast tests in a venv resolved
to them (.ci/run).
"""

import ast
import importlib.metadata
import pathlib
import re
import sys
import tomllib

import wdax

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / 'pyproject.toml').read_text())['project']


def _normalized(name):
  return re.sub(r'[-_.]+', '-', name).lower()


def _declared(*extras):
  """The distributions the core and the extras require; ``wdax[x]`` brings x's."""
  requirements = list(PROJECT['dependencies'])
  extras = list(extras)
  while extras:
    for requirement in PROJECT['optional-dependencies'][extras.pop()]:
      nested = re.fullmatch(r'wdax\[(.+)\]', requirement)
      if nested:
        extras += nested.group(1).split(',')
      else:
        requirements.append(requirement)
  return {_normalized(re.match(r'[A-Za-z0-9_.-]+', r).group()) for r in requirements}


def _imported(folder, skip=()):
  """The top-level modules imported anywhere in folder's .py files."""
  local = {p.stem for p in folder.rglob('*.py')} | {
      p.name for p in folder.rglob('*') if p.is_dir()
  }
  names = set()
  for path in folder.rglob('*.py'):
    if any(part in skip for part in path.relative_to(folder).parts):
      continue
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
      if isinstance(node, ast.Import):
        names.update(alias.name.split('.')[0] for alias in node.names)
      elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names.add(node.module.split('.')[0])
  return names - local - set(sys.stdlib_module_names) - {'wdax'}


def _undeclared(modules, declared):
  """The modules no declared distribution provides."""
  provided_by = importlib.metadata.packages_distributions()
  return sorted(
      module
      for module in modules
      if not {_normalized(d) for d in provided_by.get(module, [])} & declared
  )


def test_every_module_the_tests_import_is_declared_for_dev():
  # tests/fixtures holds the script that made the torch reference, run by hand.
  imported = _imported(ROOT / 'tests', skip={'fixtures'})
  assert {'absl', 'hypothesis', 'ml_dtypes', 'sklearn', 'sphinx'} <= imported
  assert _undeclared(imported, _declared('dev')) == []


def test_every_module_wdax_imports_is_declared_for_the_cli():
  imported = _imported(ROOT / 'wdax')
  assert {'jax', 'numpy', 'optax', 'orbax', 'matplotlib'} <= imported
  assert _undeclared(imported, _declared('cli')) == []


def test_the_package_ships_its_type_marker_and_license():
  assert (ROOT / 'wdax' / 'py.typed').is_file()
  setuptools = tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['setuptools']
  assert 'py.typed' in setuptools['package-data']['wdax']
  assert 'Apache License' in (ROOT / 'LICENSE').read_text()
  assert PROJECT['license-files'] == ['LICENSE']


def test_the_version_is_written_once_in_wdax():
  assert 'version' not in PROJECT
  assert PROJECT['dynamic'] == ['version']
  setuptools = tomllib.loads((ROOT / 'pyproject.toml').read_text())['tool']['setuptools']
  assert setuptools['dynamic']['version'] == {'attr': 'wdax.__version__'}
  assert re.fullmatch(r'\d+\.\d+\.\d+', wdax.__version__)
