r"""What identifies a sweep: a digest of each setting, compared in order.

A checkpoint folder holds one run. Before it resumes, every setting that
changes the numbers (the task, the data, the space, the optimiser, the
folds, seeds, epochs, batch size, pruning, the devices and process count,
and the versions of wdax, JAX, jaxlib, NumPy, optax and Flax) is reduced to
a digest and compared with the saved one; the first that differs is named.

Arrays are hashed by dtype, shape and bytes. A function (a ``lambda`` given
as ``optimizer``, a task's ``init`` or ``loss``) is described by its module,
qualified name and code: bytecode, constants, names, defaults, the values in
its closure and the globals it reads that are plain values. A frozen
dataclass (a built-in task, a Flax module, :func:`~wdax.sweep.kind`) is
described by its type and fields, any other object by its type and its
``__dict__``. What this cannot see: a function's behaviour that depends on
mutable state reached through a module or an object outside its closure
(``config.lr`` read at call time from an imported module), or on code it
calls in another module that was edited between the runs: those are covered
only by the versions recorded, not by their code. A value that cannot be
described at all (e.g. an open file) is described by its type alone.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.metadata
import json
import types
from collections.abc import Mapping
from typing import Any

import numpy as np

# Nested values below this depth are described by their type alone.
_DEPTH = 24
_VERSIONED = ('wdax', 'jax', 'jaxlib', 'numpy', 'optax', 'flax')


def digest(value: Any) -> str:
  """A sha256 hex digest of :func:`describe` of ``value``."""
  text = json.dumps(describe(value), sort_keys=True, separators=(',', ':'))
  return hashlib.sha256(text.encode()).hexdigest()


def describe(value: Any) -> Any:
  """A JSON value that is equal for equal values: arrays by their bytes,
  functions by their code and closure, dataclasses by their fields."""
  return _describe(value, _DEPTH, set())


def _array(a: Any) -> list[Any]:
  a = np.asarray(a)
  data = np.ascontiguousarray(a).view(np.uint8) if a.size else b''
  return ['array', str(a.dtype), list(a.shape), hashlib.sha256(bytes(data)).hexdigest()]


def _name(value: Any) -> str:
  return f'{getattr(value, "__module__", "?")}.{getattr(value, "__qualname__", repr(value))}'


def _describe(value: Any, depth: int, seen: set[int]) -> Any:
  if value is None or isinstance(value, (bool, int, str)):
    return value
  if isinstance(value, float):
    return ['float', value.hex()]
  if isinstance(value, bytes):
    return ['bytes', hashlib.sha256(value).hexdigest()]
  if isinstance(value, (np.ndarray, np.generic)) or type(value).__module__.startswith('jax'):
    if hasattr(value, 'dtype') and hasattr(value, 'shape'):
      return _array(_host(value))
  if depth <= 0 or id(value) in seen:
    return ['seen', _name(type(value))]
  seen = seen | {id(value)}
  more = functools.partial(_describe, depth=depth - 1, seen=seen)
  if isinstance(value, (list, tuple, set, frozenset)):
    items = [more(v) for v in value]
    if isinstance(value, (set, frozenset)):
      items.sort(key=repr)
    return [type(value).__name__, items]
  if isinstance(value, Mapping):
    return ['map', sorted(([repr(k), more(v)] for k, v in value.items()), key=lambda kv: kv[0])]
  if isinstance(value, (type, types.ModuleType, types.BuiltinFunctionType)):
    return ['named', _name(value) if not isinstance(value, types.ModuleType) else value.__name__]
  if isinstance(value, types.FunctionType):
    return _function(value, more)
  if isinstance(value, types.CodeType):
    return _code(value, more)
  if isinstance(value, types.MethodType):
    return ['method', more(value.__func__), more(value.__self__)]
  if isinstance(value, functools.partial):
    return ['partial', more(value.func), more(value.args), more(value.keywords)]
  if dataclasses.is_dataclass(value) and not isinstance(value, type):
    fields = {f.name: getattr(value, f.name, None) for f in dataclasses.fields(value)}
    return ['dataclass', _name(type(value)), more(fields)]
  state = getattr(value, '__dict__', None)
  if isinstance(state, dict):
    return ['object', _name(type(value)), more(state)]
  return ['opaque', _name(type(value))]


def _host(value: Any) -> Any:
  import jax

  if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
    return np.asarray(jax.random.key_data(value))
  return np.asarray(value)


def _code(code: types.CodeType, more: Any) -> list[Any]:
  return [
      'code', code.co_qualname if hasattr(code, 'co_qualname') else code.co_name,
      code.co_code.hex(), [more(c) for c in code.co_consts], list(code.co_names),
      list(code.co_varnames),
  ]


def _function(fn: types.FunctionType, more: Any) -> list[Any]:
  cells = [c.cell_contents if _filled(c) else None for c in fn.__closure__ or ()]
  # The globals it reads that are plain values; modules and functions
  # there are named, their code is covered by the versions recorded.
  reads = {}
  for name in _names(fn.__code__):
    if name in fn.__globals__:
      found = fn.__globals__[name]
      reads[name] = ['named', _name(found)] if _versioned(found) else more(found)
  return [
      'function', _name(fn), more(fn.__code__), more(fn.__defaults__),
      more(fn.__kwdefaults__), more(cells), reads,
  ]


def _versioned(value: Any) -> bool:
  """Whether ``value`` comes from a package whose version is recorded."""
  module = value.__name__ if isinstance(value, types.ModuleType) else getattr(value, '__module__', None)
  return isinstance(module, str) and module.partition('.')[0] in _VERSIONED


def _names(code: types.CodeType) -> list[str]:
  out = list(code.co_names)
  for const in code.co_consts:
    if isinstance(const, types.CodeType):
      out += _names(const)
  return out


def _filled(cell: Any) -> bool:
  try:
    return cell.cell_contents is not _EMPTY
  except ValueError:
    return False


_EMPTY = object()


def versions() -> dict[str, str]:
  """The installed versions of the packages that change the numbers."""
  out = {}
  for package in _VERSIONED:
    try:
      out[package] = importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
      out[package] = 'absent'
  import wdax

  out['wdax'] = getattr(wdax, '__version__', out['wdax'])
  return out


def first_difference(saved: Mapping[str, str], given: Mapping[str, str]) -> str | None:
  """The first setting of ``given`` (in its order) whose digest differs
  from ``saved``'s, or that one of them lacks; ``None`` when they agree."""
  for name, value in given.items():
    if saved.get(name) != value:
      return name
  for name in saved:
    if name not in given:
      return name
  return None
