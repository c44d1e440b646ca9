"""Writes the API reference's pages from the packages' ``__all__``.

A name added to ``wdax.__all__`` or ``wdax.sweep.__all__`` appears in the
reference at the next build, without editing the docs: a module gets a page
of its own (``automodule`` with ``:members:``, which follows the module's
``__all__`` when it has one); a function, class or type alias defined in one
of those public modules is documented there and linked from the package's
table; anything else (defined in an internal module) is documented on the
package's page under the package's own name, such as ``wdax.adamw``.

Only public modules are documented: those named in a package's ``__all__``,
plus the ones ``import wdax`` leaves to load on first use (:data:`LAZY`).
The pages are written to ``api/generated/`` (not kept in git) when the
builder starts.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import textwrap
import types
from pathlib import Path
from typing import Any

from sphinx.pycode import ModuleAnalyzer
from sphinx.pycode import PycodeError

PACKAGES = ('wdax', 'wdax.sweep')
# Public modules of wdax that are not in its __all__, because importing them
# loads Flax or Orbax; wdax.sweep is a package page of its own.
LAZY = ('wdax.training', 'wdax.sharding', 'wdax.checkpoint')
OUT = 'api/generated'


def _exported(package: types.ModuleType) -> list[tuple[str, Any]]:
  return [(name, getattr(package, name)) for name in package.__all__]


def public_modules() -> list[str]:
  """Every module that gets a page: the packages, their exported modules, LAZY."""
  names = list(PACKAGES) + list(LAZY)
  for package_name in PACKAGES:
    package = importlib.import_module(package_name)
    for _, value in _exported(package):
      if inspect.ismodule(value) and value.__name__ not in names:
        names.append(value.__name__)
  return names


def _attribute_docs(module: types.ModuleType) -> set[str]:
  try:
    docs = ModuleAnalyzer.for_module(module.__name__).find_attr_docs()
  except PycodeError:
    return set()
  return {name for (scope, name) in docs if scope == ''}


def _documents(module: types.ModuleType, name: str, value: Any) -> bool:
  """Whether ``automodule:: module`` with ``:members:`` documents ``name``."""
  if getattr(module, name, None) is not value:
    return False
  if hasattr(module, '__all__'):
    return name in module.__all__
  return (getattr(value, '__module__', None) == module.__name__
          or name in _attribute_docs(module))


def _home(name: str, value: Any, modules: list[types.ModuleType]) -> str | None:
  """The documented module that holds ``name``, if any, as autodoc sees it."""
  for module in modules:
    if module.__name__ not in PACKAGES and _documents(module, name, value):
      return module.__name__
  return None


def _data_doc(package_name: str, name: str, value: Any) -> str:
  """The ``#:`` or string doc of a re-exported constant, where it is written."""
  for module in list(sys.modules.values()):
    module_name = getattr(module, '__name__', '')
    if (module_name.startswith(package_name + '.')
        and getattr(module, name, None) is value):
      try:
        docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
      except PycodeError:
        continue
      if ('', name) in docs:
        return '\n'.join(docs['', name])
  return ''


def _entry(package_name: str, name: str, value: Any) -> str:
  """An entry documenting ``package_name.name`` under that name."""
  target = f'{package_name}.{name}'
  if inspect.isclass(value):
    return f'.. autoclass:: {target}\n   :members:\n'
  if inspect.isroutine(value):
    return f'.. autofunction:: {target}\n'
  # A constant's own type has a docstring (dict's, say) that is not its doc,
  # so its doc is read from the module that defines it.
  doc = textwrap.indent(_data_doc(package_name, name, value), '   ')
  return (f'.. py:data:: {name}\n   :module: {package_name}\n'
          f'   :type: {type(value).__name__}\n\n{doc}\n')


def _title(text: str) -> str:
  return f'{text}\n{"=" * len(text)}\n'


def _relative(package_name: str, target: str) -> str:
  return '~' + target.removeprefix(package_name + '.')


def package_page(package_name: str, modules: list[types.ModuleType]) -> str:
  """A package's page: its docstring, a table of its __all__, its own names."""
  package = importlib.import_module(package_name)
  rows, entries = [], []
  for name, value in _exported(package):
    if inspect.ismodule(value):
      rows.append(_relative(package_name, value.__name__))
      continue
    home = _home(name, value, modules)
    if home is not None:
      rows.append(_relative(package_name, f'{home}.{name}'))
      continue
    if inspect.isclass(value) or inspect.isroutine(value):
      rows.append(name)
    entries.append(_entry(package_name, name, value))
  parts = [
      _title(f'``{package_name}``'),
      f'.. automodule:: {package_name}\n',
      '.. rubric:: Contents\n',
      '.. autosummary::\n\n' + '\n'.join(f'   {row}' for row in rows) + '\n',
  ]
  if entries:
    parts.append(f'.. rubric:: Defined in ``{package_name}``\n')
    parts.extend(entries)
  return '\n'.join(parts)


def module_page(module_name: str) -> str:
  return '\n'.join([
      _title(f'``{module_name}``'),
      f'.. automodule:: {module_name}\n   :members:\n',
  ])


def pages() -> dict[str, str]:
  """File name (under ``api/generated``) to reStructuredText, one per module."""
  names = public_modules()
  modules = [importlib.import_module(name) for name in names]
  out = {}
  for name in names:
    text = package_page(name, modules) if name in PACKAGES else module_page(name)
    out[f'{name}.rst'] = text
  return out


def write(srcdir: Path) -> None:
  """Writes :func:`pages` to ``srcdir/api/generated``, dropping stale pages."""
  out = srcdir / OUT
  out.mkdir(parents=True, exist_ok=True)
  wanted = pages()
  for stale in set(p.name for p in out.glob('*.rst')) - set(wanted):
    (out / stale).unlink()
  for file_name, text in wanted.items():
    path = out / file_name
    # Rewriting an unchanged page would make Sphinx read it again.
    if not path.exists() or path.read_text() != text:
      path.write_text(text)


def setup(app: Any) -> dict[str, Any]:
  app.connect('builder-inited', lambda app: write(Path(app.srcdir)))
  return {'parallel_read_safe': True, 'parallel_write_safe': True}
