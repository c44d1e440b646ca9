r"""A sweep's progress in a folder: saved as it trains, read back to resume.

The folder holds ``manifest.json`` and one ``.npz`` file per saved part. A
part is one chunk of one rung of one training (``grid`` or ``refit``): the
chunk's parameters, optimiser and model state after its last finished
segment, its metrics so far, and how many segments it finished. Every
file is written under a temporary name, flushed to disk and renamed, and
the manifest, which names each part's file and its sha256, is rewritten the
same way after it; a part's older file is removed only then. A kill at any
moment leaves the last complete save.

On opening, the manifest's settings (:mod:`~wdax.sweep._fingerprint`) are
compared with the call's, and every file's checksum is checked. A missing
or damaged file (:class:`CheckpointDamaged`, a warning) drops its part and
every part trained after it, which are trained again: the same numbers,
since the training is deterministic. Only process 0 writes; every process
reads, so with several processes the folder must be one they share.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import os
import pathlib
import re
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from wdax.sweep.errors import CheckpointDamaged
from wdax.sweep.errors import CheckpointMismatch

FORMAT = 1
MANIFEST = 'manifest.json'
_PART = re.compile(r'^(grid|refit)-r\d+-c\d+-\d+\.npz$')


def write_atomic(path: pathlib.Path, data: bytes, *, sync_folder: bool = True) -> None:
  """Writes ``data`` to ``path`` so that a reader sees the old file or the
  whole new one: a temporary name, flushed to disk, then renamed; with
  ``sync_folder`` the rename is flushed too (a part's file skips it: the
  manifest's flush after it covers both renames)."""
  temporary = path.with_name(f'.{path.name}.{os.getpid()}.tmp')
  with open(temporary, 'wb') as f:
    f.write(data)
    f.flush()
    os.fsync(f.fileno())
  os.replace(temporary, path)
  if sync_folder:
    directory = os.open(path.parent, os.O_RDONLY)
    try:
      os.fsync(directory)
    finally:
      os.close(directory)


def pack(arrays: Mapping[str, Any]) -> bytes:
  """An ``.npz`` of ``arrays`` that keeps every dtype, bfloat16 and random
  keys included: raw bytes beside a JSON header of dtypes and shapes."""
  header, raw = {}, {}
  for name, a in arrays.items():
    impl = None
    if jax.dtypes.issubdtype(getattr(a, 'dtype', None), jax.dtypes.prng_key):
      impl, a = str(jax.random.key_impl(a)), jax.random.key_data(a)
    a = np.asarray(a)
    header[name] = [str(a.dtype), list(a.shape), impl]
    raw[name] = np.ascontiguousarray(a).reshape(-1).view(np.uint8)
  buffer = io.BytesIO()
  raw['__header__'] = np.frombuffer(json.dumps(header).encode(), np.uint8)
  np.savez(buffer, **raw)  # type: ignore[arg-type]
  return buffer.getvalue()


def unpack(data: bytes) -> dict[str, Any]:
  """The arrays :func:`pack` packed."""
  import jax.numpy as jnp

  with np.load(io.BytesIO(data), allow_pickle=False) as npz:
    header = json.loads(npz['__header__'].tobytes())
    out = {}
    for name, (dtype, shape, impl) in header.items():
      a = npz[name].view(jnp.dtype(dtype)).reshape(shape)
      out[name] = a if impl is None else jax.random.wrap_key_data(a, impl=impl)
  return out


def flatten(tree: Any, prefix: str) -> dict[str, Any]:
  """The leaves of ``tree`` under names ``prefix/0``, ``prefix/1``, ..."""
  return {f'{prefix}/{i}': leaf for i, leaf in enumerate(jax.tree.leaves(tree))}


def unflatten(like: Any, arrays: Mapping[str, Any], prefix: str) -> Any:
  """The tree of ``like``'s structure from :func:`flatten`'s arrays."""
  treedef = jax.tree.structure(like)
  count = len(jax.tree.leaves(like))
  return jax.tree.unflatten(treedef, [arrays[f'{prefix}/{i}'] for i in range(count)])


def _sha(data: bytes) -> str:
  return hashlib.sha256(data).hexdigest()


def _key(stage: str, rung: int, chunk: int) -> str:
  return f'{stage}/{rung}/{chunk}'


@dataclasses.dataclass(frozen=True)
class Part:
  """A saved chunk: ``segments`` of its rung's segments are trained."""

  stage: str
  rung: int
  chunk: int
  segments: int
  complete: bool
  configuration_epochs: int
  arrays: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Status:
  """What a checkpoint folder holds: configuration-epochs trained of those
  planned, and the stages finished."""

  trained: int
  planned: int
  finished: tuple[str, ...]


def _empty(settings: Mapping[str, str], shown: Mapping[str, str], planned: Mapping[str, int]) -> dict:
  return {
      'format': FORMAT, 'settings': list(settings.items()), 'shown': dict(shown),
      'planned': dict(planned), 'parts': {}, 'decisions': {}, 'stages': {},
      'finished': [], 'saves': 0,
  }


def read_manifest(folder: pathlib.Path) -> dict | None:
  """The manifest of ``folder``, ``None`` when absent; a damaged one is
  reported (:class:`CheckpointDamaged`) and read as absent."""
  path = folder / MANIFEST
  if not path.exists():
    return None
  try:
    wrapped = json.loads(path.read_bytes())
    body = wrapped['body']
    ok = wrapped['sha256'] == _sha(json.dumps(body, sort_keys=True).encode())
  except (ValueError, KeyError, TypeError):
    ok = False
  if not ok or body.get('format') != FORMAT:
    warnings.warn(
        f'checkpoint {folder}: {MANIFEST} is damaged or of another format; '
        'the sweep starts over.', CheckpointDamaged, stacklevel=3,
    )
    return None
  return body


def status(folder: str | os.PathLike) -> Status | None:
  """What ``folder`` holds, or ``None`` when it holds no checkpoint."""
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', CheckpointDamaged)
    body = read_manifest(pathlib.Path(folder))
  if body is None:
    return None
  trained = sum(p['configuration_epochs'] for p in body['parts'].values())
  return Status(trained, sum(body['planned'].values()), tuple(body['finished']))


class Store:
  """A checkpoint folder, open for one call of an entry point.

  ``settings`` are the call's digests, in the order a difference is named,
  ``shown`` their readable values, ``planned`` the configuration-epochs of
  each stage, ``stages`` the stages in the order they train. Saves between
  a chunk's segments come at most once every ``every`` seconds (0: after
  every segment); a chunk's end is always saved.
  """

  def __init__(
      self, folder: str | os.PathLike, settings: Mapping[str, str], shown: Mapping[str, str],
      planned: Mapping[str, int], stages: tuple[str, ...], *, restart: bool = False,
      every: float = 0.0,
  ):
    self.folder = pathlib.Path(folder)
    self.stages, self.every = stages, every
    self.writer = jax.process_index() == 0
    self.folder.mkdir(parents=True, exist_ok=True)
    body = None if restart else read_manifest(self.folder)
    if body is not None:
      _refuse(str(self.folder), body, settings, shown)
    self.body = _empty(settings, shown, planned) if body is None else body
    self.resumed = body is not None and bool(body['parts'])
    self._last = time.monotonic()
    if body is not None:
      self._check_files()
    _together('wdax checkpoint read')
    if self.writer:
      self._write_manifest()
      self._remove_unlisted()
    _together('wdax checkpoint opened')

  def _check_files(self) -> None:
    """Drops the first missing or damaged part and every later one."""
    order = {s: i for i, s in enumerate(self.stages)}
    parts = sorted(
        self.body['parts'].items(),
        key=lambda kv: (order.get(kv[1]['stage'], len(order)), kv[1]['rung'], kv[1]['chunk']),
    )
    for n, (_, entry) in enumerate(parts):
      path = self.folder / entry['file']
      if path.exists() and _sha(path.read_bytes()) == entry['sha256']:
        continue
      warnings.warn(
          f'checkpoint {self.folder}: {entry["file"]} ({entry["stage"]}, rung '
          f'{entry["rung"]}, chunk {entry["chunk"]}) is missing or damaged; it and '
          f'the {len(parts) - n - 1} part(s) saved after it are trained again.',
          CheckpointDamaged, stacklevel=4,
      )
      self._drop(entry, [k for k, _ in parts[n:]])
      return

  def _drop(self, first: dict, keys: list[str]) -> None:
    for key in keys:
      del self.body['parts'][key]
    later = self.stages[self.stages.index(first['stage']) + 1:] if first['stage'] in self.stages else ()
    for name in list(self.body['decisions']):
      stage, _, rung = name.partition('/')
      if stage in later or (stage == first['stage'] and int(rung) > first['rung']):
        del self.body['decisions'][name]
    self.body['finished'] = [s for s in self.body['finished'] if s != first['stage'] and s not in later]

  def _write_manifest(self) -> None:
    body = self.body
    wrapped = {'sha256': _sha(json.dumps(body, sort_keys=True).encode()), 'body': body}
    write_atomic(self.folder / MANIFEST, json.dumps(wrapped, sort_keys=True).encode())

  def _remove_unlisted(self) -> None:
    listed = {p['file'] for p in self.body['parts'].values()}
    for path in self.folder.iterdir():
      stale = _PART.match(path.name) and path.name not in listed
      if stale or (path.name.startswith('.') and path.name.endswith('.tmp')):
        path.unlink(missing_ok=True)

  def part(self, stage: str, rung: int, chunk: int) -> Part | None:
    """The saved part, its arrays read (and checked) now; ``None`` if none."""
    entry = self.body['parts'].get(_key(stage, rung, chunk))
    if entry is None:
      return None
    data = (self.folder / entry['file']).read_bytes()
    if _sha(data) != entry['sha256']:
      raise OSError(f'checkpoint {self.folder}: {entry["file"]} changed while the sweep ran.')
    return Part(
        stage, rung, chunk, entry['segments'], entry['complete'],
        entry['configuration_epochs'], unpack(data),
    )

  def due(self) -> bool:
    """Whether a save between segments is due, by :attr:`every`."""
    return time.monotonic() - self._last >= self.every

  def save(
      self, stage: str, rung: int, chunk: int, *, segments: int, complete: bool,
      configuration_epochs: int, arrays: Mapping[str, Any],
  ) -> None:
    """Saves a part (every process calls it; process 0 writes)."""
    self._last = time.monotonic()
    key = _key(stage, rung, chunk)
    old = self.body['parts'].get(key)
    self.body['saves'] += 1
    name = f'{stage}-r{rung}-c{chunk}-{self.body["saves"]}.npz'
    data = pack(arrays)
    self.body['parts'][key] = {
        'stage': stage, 'rung': int(rung), 'chunk': int(chunk), 'segments': int(segments),
        'complete': bool(complete), 'configuration_epochs': int(configuration_epochs),
        'file': name, 'sha256': _sha(data),
    }
    if self.writer:
      write_atomic(self.folder / name, data, sync_folder=False)
      self._write_manifest()
      if old is not None:
        (self.folder / old['file']).unlink(missing_ok=True)

  def decided(self, stage: str, rung: int) -> np.ndarray | None:
    """The configurations saved as going on to ``rung``, if decided."""
    found = self.body['decisions'].get(f'{stage}/{rung}')
    return None if found is None else np.asarray(found, np.int64)

  def decide(self, stage: str, rung: int, alive: np.ndarray) -> None:
    """Records the configurations that go on to ``rung``."""
    self.body['decisions'][f'{stage}/{rung}'] = [int(i) for i in alive]
    if self.writer:
      self._write_manifest()

  def check(self, stage: str, name: str, value: Any) -> None:
    """Records what the training of ``stage`` worked out (the chunk size);
    :class:`CheckpointMismatch` when it differs from the saved run's."""
    saved = self.body['stages'].setdefault(stage, {}).get(name)
    if saved is not None and saved != value:
      raise CheckpointMismatch(str(self.folder), f'{stage} {name}', str(saved), str(value))
    self.body['stages'][stage][name] = value

  def finish(self, stage: str) -> None:
    """Marks ``stage`` trained to the end."""
    if stage not in self.body['finished']:
      self.body['finished'].append(stage)
      if self.writer:
        self._write_manifest()

  def finished(self, stage: str) -> bool:
    return stage in self.body['finished']


def _refuse(folder: str, body: dict, settings: Mapping[str, str], shown: Mapping[str, str]) -> None:
  from wdax.sweep import _fingerprint

  saved = dict(body['settings'])
  name = _fingerprint.first_difference(saved, settings)
  if name is not None:
    was, now = body['shown'].get(name, 'absent'), shown.get(name, 'absent')
    if was == now:
      was, now = f'{was} (digest {saved.get(name, "-")[:12]})', f'{now} (digest {settings.get(name, "-")[:12]})'
    raise CheckpointMismatch(folder, name, was, now)


def _together(name: str) -> None:
  """Waits for every process, when there are several."""
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils

    multihost_utils.sync_global_devices(name)


_STOP: list[int] = []


def stop_requested() -> int | None:
  """The signal that asked the sweep to stop, if one did."""
  return _STOP[0] if _STOP else None


@contextlib.contextmanager
def stopping() -> Iterator[None]:
  """While open, SIGINT and SIGTERM ask the sweep to stop at its next safe
  point (:func:`stop_requested`) instead of ending it; a second one ends
  it at once. Outside the main thread it changes nothing."""
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

  def ask(signum, frame):
    _STOP.append(signum)
    for s, handler in previous.items():
      signal.signal(s, handler)

  _STOP.clear()
  for s in previous:
    signal.signal(s, ask)
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    _STOP.clear()
