"""A shard file's length and CRC-32C, as the manifest records them.

CRC-32C (Castagnoli, the checksum Google Cloud Storage keeps per object) of the file's bytes as
stored: after gzip for compressed shards. ``google_crc32c`` (a runtime dependency) computes it in C.
The Beam job takes both figures while it writes a shard (:class:`CountingWriter`), so recording
them costs no second read; :func:`file_crc32c` reads a file again to check it.
Plain Python (no TensorFlow, no Beam): the manifest and the Beam job both import it.
"""

from __future__ import annotations

import google_crc32c

import storage


def crc32c(data: bytes) -> str:
    """The CRC-32C of ``data`` as 8 lowercase hex digits."""
    return f"{google_crc32c.value(data):08x}"


def file_crc32c(path: str) -> str:
    """The CRC-32C of a file's bytes (local or a URL), read in pieces: memory stays bounded."""
    checksum = google_crc32c.Checksum()
    for chunk in storage.read_chunks(path):
        checksum.update(chunk)
    return checksum.hexdigest().decode("ascii")


class CountingWriter:
    """Passes bytes on to a binary file, counting them and their CRC-32C.

    Args:
        handle: the file written (anything with ``write``; ``flush`` is passed on when it has one).
    """

    def __init__(self, handle) -> None:
        self._handle = handle
        self._checksum = google_crc32c.Checksum()
        self.bytes = 0

    def write(self, data) -> int:
        data = bytes(data)
        self._checksum.update(data)
        self.bytes += len(data)
        self._handle.write(data)
        return len(data)

    def flush(self) -> None:
        if hasattr(self._handle, "flush"):
            self._handle.flush()

    @property
    def crc32c(self) -> str:
        """The CRC-32C of everything written so far, as :func:`crc32c` spells it."""
        return self._checksum.hexdigest().decode("ascii")
