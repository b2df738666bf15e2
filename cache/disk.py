"""diskcache's ``Disk`` for this store: keys are str, values are bytes (``cache.codec``), and any row
that is not what this store writes is refused, never unpickled.

diskcache pickles non-str keys and non-bytes values, and its ``Disk.fetch`` follows the mode a row
says it has, so a crafted row (a pickled key with ``raw = 0``, a value whose mode says pickle, a
value file holding a pickle) would run code on read. Here ``get`` accepts only raw keys and ``fetch``
only the two byte modes; everything else raises ``RowRefused``, which the store reports as corrupt.
"""
from __future__ import annotations

import os
import sqlite3

import diskcache
from diskcache.core import MODE_BINARY, MODE_RAW

MIN_FILE_SIZE = 32768  # diskcache's default: smaller values live in the index, larger in value files


class RowRefused(ValueError):
    """A row of the index that this store did not write (a pickled key or value, text, bad bytes)."""


class StoreDisk(diskcache.Disk):
    def __init__(self, directory, min_file_size=MIN_FILE_SIZE, pickle_protocol=0):
        super().__init__(directory, min_file_size=min_file_size, pickle_protocol=pickle_protocol)

    def put(self, key):
        if type(key) is not str:
            raise TypeError(f"store keys are str, got {type(key).__name__}")
        return key, True

    def get(self, key, raw):
        if not raw or type(key) is not str:
            raise RowRefused(f"a key this store did not write (raw={raw}, {type(key).__name__})")
        return key

    def store(self, value, read, key=diskcache.core.UNKNOWN):
        if type(value) is not bytes or read:
            raise TypeError(f"store values are bytes (cache.codec), got {type(value).__name__}")
        if len(value) < self.min_file_size:
            return 0, MODE_RAW, None, sqlite3.Binary(value)
        filename, full_path = self.filename(key, value)
        try:
            self._write(full_path, iter([value]), "xb")
        except BaseException:  # a full disk or a kill: leave no partial value file behind
            try:
                os.remove(full_path)
            except OSError:
                pass
            raise
        return len(value), MODE_BINARY, filename, None

    def fetch(self, mode, filename, value, read):
        if read:
            raise RowRefused("file handles are not read from this store")
        if mode == MODE_RAW and isinstance(value, bytes):
            return bytes(value)
        if mode == MODE_BINARY and isinstance(filename, str) and value is None:
            path = os.path.join(self._directory, filename)
            if os.path.isabs(filename) or ".." in filename.replace("\\", "/").split("/"):
                raise RowRefused(f"a value file outside the store ({filename!r})")
            with open(path, "rb") as reader:
                return reader.read()
        raise RowRefused(f"a value this store did not write (mode {mode})")
