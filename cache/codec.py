"""The bytes of every value in the store: JSON for structure, raw little-endian bytes for arrays and
tensors, and a sha256 over it all. Nothing here can run code: there is no pickle on either side.

A value is encoded as
    MAGIC (8 bytes) | sha256 of the body (32 bytes) | body
    body = length of the header (8 bytes, little-endian) | header (UTF-8 JSON) | array bytes
The header is the value itself with every numpy array and torch tensor replaced by
``{"$array": [offset, dtype, shape]}`` (``"$tensor"`` for a tensor), its bytes at that offset of the
array section. Allowed leaves: None, bool, int, float (NaN and ±inf included), str, numpy/torch
numbers (stored as Python numbers) and numeric arrays; containers: dict with str keys, list and tuple
(read back as a list). Anything else is refused when written, so nothing is silently stringified.
"""
from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import numpy as np

MAGIC = b"SWBv2\x00\x00\x00"
DIGEST_BYTES = 32
HEADER = len(MAGIC) + DIGEST_BYTES
ARRAY_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                          "float16", "float32", "float64"})
_MARKERS = ("$array", "$tensor")


class CodecError(ValueError):
    """Bytes that are not a value this codec wrote (wrong magic, checksum, header or array)."""


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode(value: Any) -> bytes:
    """The stored bytes of ``value`` (see the module docstring). Raises TypeError naming the path of
    any part that is not an allowed type."""
    arrays: list[bytes] = []
    offset = 0

    def array_entry(array: np.ndarray, marker: str, path: str) -> dict:
        nonlocal offset
        if array.dtype.name not in ARRAY_DTYPES:
            raise TypeError(f"{path}: arrays of dtype {array.dtype} cannot be stored "
                            f"(allowed: {', '.join(sorted(ARRAY_DTYPES))})")
        data = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        entry = {marker: [offset, array.dtype.name, list(array.shape)]}
        arrays.append(data)
        offset += len(data)
        return entry

    def plain(v: Any, path: str) -> Any:
        if v is None or isinstance(v, (bool, int, float)) and type(v) in (bool, int, float):
            return v
        if isinstance(v, str):
            return str(v)  # str subclasses (torch's TorchVersion) as the plain string
        if isinstance(v, (np.bool_, np.integer, np.floating)):
            return v.item()
        if isinstance(v, dict):
            bad = [k for k in v if not isinstance(k, str)]
            if bad:
                raise TypeError(f"{path}: dict keys must be str, got {type(bad[0]).__name__} {bad[0]!r}")
            if any(m in v for m in _MARKERS):
                raise TypeError(f"{path}: the keys {', '.join(_MARKERS)} are reserved by the store")
            return {str(k): plain(x, f"{path}.{k}") for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x, f"{path}[{i}]") for i, x in enumerate(v)]
        if isinstance(v, np.ndarray):
            return array_entry(v, "$array", path)
        torch = _torch_if_loaded()
        if torch is not None and isinstance(v, torch.Tensor):
            if v.dtype == torch.bfloat16:
                raise TypeError(f"{path}: bfloat16 tensors cannot be stored")
            return array_entry(v.detach().cpu().numpy(), "$tensor", path)
        raise TypeError(f"{path}: values of type {type(v).__module__}.{type(v).__name__} cannot be stored")

    header = json.dumps(plain(value, "value"), ensure_ascii=False, separators=(",", ":")).encode()
    body = struct.pack("<Q", len(header)) + header + b"".join(arrays)
    return MAGIC + hashlib.sha256(body).digest() + body


def body_digest(data: bytes) -> str:
    """The checksum a stored value carries (hex), without verifying it."""
    if len(data) < HEADER or not data.startswith(MAGIC):
        raise CodecError("not a value of this store (no header)")
    return data[len(MAGIC):HEADER].hex()


def decode(data: bytes) -> Any:
    """The value ``encode`` wrote. Raises CodecError when the bytes are not intact."""
    if len(data) < HEADER + 8 or not data.startswith(MAGIC):
        raise CodecError("not a value of this store (no header, or truncated)")
    body = data[HEADER:]
    if hashlib.sha256(body).digest() != data[len(MAGIC):HEADER]:
        raise CodecError("checksum mismatch (the bytes were changed or truncated)")
    (length,) = struct.unpack("<Q", body[:8])
    if length > len(body) - 8:
        raise CodecError("header longer than the value")
    section = memoryview(body)[8 + length:]

    def load_array(entry: Any, marker: str) -> Any:
        try:
            offset, dtype, shape = entry
            dtype = np.dtype(dtype) if dtype in ARRAY_DTYPES else None
            count = int(np.prod(shape, dtype=np.int64))
            valid = dtype is not None and offset >= 0 and count >= 0 and \
                offset + count * dtype.itemsize <= len(section)
        except (TypeError, ValueError):
            valid = False
        if not valid:
            raise CodecError(f"array entry {entry!r} does not fit the value")
        array = np.frombuffer(section, dtype=dtype.newbyteorder("<"), count=count, offset=offset)
        array = array.astype(dtype, copy=True).reshape(shape)
        if marker == "$tensor":
            import torch

            return torch.from_numpy(array)
        return array

    def restore(obj: dict) -> Any:  # called by the JSON parser for every object, innermost first
        if len(obj) == 1:
            for marker in _MARKERS:
                if marker in obj:
                    return load_array(obj[marker], marker)
        return obj

    header = body[8:8 + length]
    try:  # the parser's own C path when there is no array to restore
        return json.loads(header, object_hook=restore) if b'"$' in header else json.loads(header)
    except ValueError as exc:
        if isinstance(exc, CodecError):
            raise
        raise CodecError(f"unreadable header: {exc}") from None


def _torch_if_loaded():
    """torch, if something already imported it (a value can only hold a tensor then)."""
    import sys

    return sys.modules.get("torch")
