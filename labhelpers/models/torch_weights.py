"""Read a legacy (pre-zip) PyTorch ``state_dict`` file into NumPy arrays, without torch.

A ``.pth`` file is a pickle, and unpickling can run any callable the file names (``os.system``,
``builtins.eval``, ...). This module is the security boundary for the weights we read: its
unpickler resolves exactly these globals and refuses every other one, before anything is called:

* ``collections.OrderedDict`` (the state_dict itself, and the empty backward-hooks dict of each tensor),
* ``torch._utils._rebuild_tensor_v2`` (replaced by a function that records a view of a storage),
* ``torch.<Type>Storage`` for the plain numeric types (stand-ins that only name a NumPy dtype).

Nothing from torch is imported or executed: the stand-ins only describe arrays, which are then
cut out of the raw storage bytes that follow the pickles, with their bounds checked. The file size
is bounded (``max_bytes``) before it is read, and every refusal names the file.

The legacy layout (``torch.save(..., _use_new_zipfile_serialization=False)``, torch < 1.6's
default): pickle(magic number), pickle(protocol 1001), pickle(sys_info), pickle(the object, with
storages as persistent ids ``("storage", <Type>Storage, key, location, numel[, view])``),
pickle(list of storage keys), then per key in that order: numel (int64, little-endian) and the
storage's bytes.
"""

from __future__ import annotations

import io
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np

__all__ = ["UnsafePickleError", "TorchFileError", "load_legacy_state_dict", "MAX_BYTES"]

MAX_BYTES = 256 * 1024 * 1024  # a state_dict we read is tens of MB; refuse anything past this
MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "LongStorage": "<i8",
    "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1", "ByteStorage": "u1",
    "BoolStorage": "?",
}


class TorchFileError(ValueError):
    """The file is not a legacy PyTorch state_dict we can read (or it is damaged)."""


class UnsafePickleError(TorchFileError):
    """The pickle names a global outside the allow-list; nothing was called."""


class _StorageType:
    """Stands in for ``torch.FloatStorage`` & co.: only a name and a dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name = name
        self.dtype = np.dtype(_STORAGE_DTYPES[name])

    def __reduce__(self):  # never pickled back
        raise TypeError("not picklable")


class _Storage:
    __slots__ = ("key", "dtype", "numel")

    def __init__(self, key: str, dtype: np.dtype, numel: int):
        self.key, self.dtype, self.numel = key, dtype, numel


class _Tensor:
    """A view of a storage, as ``torch._utils._rebuild_tensor_v2`` would build it."""

    __slots__ = ("storage", "offset", "size", "stride")

    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """Records the view; checks the arguments' types (a crafted file gets an error, not a crash)."""
    if not isinstance(storage, _Storage):
        raise TorchFileError(f"_rebuild_tensor_v2 got {type(storage).__name__} instead of a storage")
    if not (_is_int(storage_offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(_is_int(v) and v >= 0 for v in size + stride)
            and storage_offset >= 0):
        raise TorchFileError(f"_rebuild_tensor_v2 got an invalid view: offset {storage_offset!r}, "
                             f"size {size!r}, stride {stride!r}")
    return _Tensor(storage, storage_offset, size, stride)


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        super().__init__(file)
        self.source = source
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module, name):
        if (module, name) == ("collections", "OrderedDict"):
            return OrderedDict
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return _rebuild_tensor_v2
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UnsafePickleError(
            f"{self.source}: refused to load global {module}.{name}: a PyTorch state_dict names only "
            "collections.OrderedDict, torch._utils._rebuild_tensor_v2 and torch.*Storage, and a pickle "
            "naming anything else could run code. Nothing from this file was called.")

    def persistent_load(self, pid):
        if (not isinstance(pid, tuple) or len(pid) not in (5, 6) or pid[0] != "storage"
                or not isinstance(pid[1], _StorageType) or not isinstance(pid[2], str) or not _is_int(pid[4])
                or pid[4] < 0):
            raise TorchFileError(f"{self.source}: unexpected persistent id {pid!r:.200}")
        if len(pid) == 6 and pid[5] is not None:
            raise TorchFileError(f"{self.source}: storage views (legacy view metadata) are not supported")
        _, storage_type, key, _location, numel = pid[:5]
        known = self.storages.get(key)
        if known is None:
            known = self.storages[key] = _Storage(key, storage_type.dtype, numel)
        elif known.dtype != storage_type.dtype or known.numel != numel:
            raise TorchFileError(f"{self.source}: storage {key!r} is described twice, differently")
        return known


def _load_plain(buffer: io.BytesIO, source: str):
    """One of the preamble pickles (plain values only: any global is refused)."""
    return _RestrictedUnpickler(buffer, source).load()


def load_legacy_state_dict(path, max_bytes: int = MAX_BYTES) -> OrderedDict:
    """The tensors of a legacy PyTorch state_dict file, as ``OrderedDict[str, np.ndarray]``
    (C-contiguous copies, in the file's key order; dtypes as stored: float32, int64, ...).

    Raises ``UnsafePickleError`` when the pickle names a global outside the allow-list (see
    the module docstring), ``TorchFileError`` for any other reason it cannot be read (zip
    format, wrong magic number, truncated data, a view outside its storage), and
    ``TorchFileError`` as well when the file is larger than ``max_bytes``.
    """
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise TorchFileError(f"{path}: {size:,} bytes, more than the {max_bytes:,} this reader accepts")
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TorchFileError(f"{path}: grew past {max_bytes:,} bytes while being read")
    if data[:2] == b"PK":
        raise TorchFileError(f"{path}: a zip-format PyTorch file (torch >= 1.6); only the legacy "
                             "pickle format is supported")
    source = str(path)
    buffer = io.BytesIO(data)
    try:
        if _load_plain(buffer, source) != MAGIC_NUMBER:
            raise TorchFileError(f"{path}: not a legacy PyTorch file (wrong magic number)")
        if _load_plain(buffer, source) != PROTOCOL_VERSION:
            raise TorchFileError(f"{path}: unsupported PyTorch protocol version")
        sys_info = _load_plain(buffer, source)
        if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
            raise TorchFileError(f"{path}: only little-endian files are supported")
        unpickler = _RestrictedUnpickler(buffer, source)
        state = unpickler.load()
        keys = _load_plain(buffer, source)
    except TorchFileError:
        raise
    except Exception as exc:  # truncated or malformed pickle data
        raise TorchFileError(f"{path}: damaged pickle data ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, OrderedDict) and not isinstance(state, dict):
        raise TorchFileError(f"{path}: holds a {type(state).__name__}, not a state_dict")
    if not isinstance(keys, list) or sorted(keys) != sorted(unpickler.storages):
        raise TorchFileError(f"{path}: the storage list does not match the storages the pickle uses")

    arrays: dict[str, np.ndarray] = {}
    offset = buffer.tell()
    for key in keys:
        storage = unpickler.storages[key]
        if offset + 8 > len(data):
            raise TorchFileError(f"{path}: truncated before storage {key!r}")
        (numel,) = struct.unpack_from("<q", data, offset)
        offset += 8
        nbytes = numel * storage.dtype.itemsize
        if numel != storage.numel or offset + nbytes > len(data):
            raise TorchFileError(f"{path}: storage {key!r} has {numel} elements, the pickle says "
                                 f"{storage.numel}, or the file is truncated")
        arrays[key] = np.frombuffer(data, dtype=storage.dtype, count=numel, offset=offset)
        offset += nbytes
    if offset != len(data):
        raise TorchFileError(f"{path}: {len(data) - offset} unexpected bytes after the last storage")

    out: OrderedDict[str, np.ndarray] = OrderedDict()
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, _Tensor):
            raise TorchFileError(f"{path}: entry {name!r} is not a tensor")
        storage = arrays[tensor.storage.key]
        last = tensor.offset + sum((n - 1) * s for n, s in zip(tensor.size, tensor.stride, strict=True))
        if any(n == 0 for n in tensor.size):
            out[name] = np.zeros(tensor.size, dtype=storage.dtype)
            continue
        if last >= storage.size:
            raise TorchFileError(f"{path}: tensor {name!r} reaches past the end of its storage")
        itemsize = storage.dtype.itemsize
        view = np.lib.stride_tricks.as_strided(
            storage[tensor.offset:], shape=tensor.size, strides=tuple(s * itemsize for s in tensor.stride),
            writeable=False)
        out[name] = np.array(view, copy=True, order="C")
    return out
