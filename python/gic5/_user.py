"""The user pointer of a device attribute (``struct kvm_device_attr.addr``), played by a buffer.

Rules this module keeps:
- gic5 never dereferences a raw address: ``None`` or ``0`` is NULL, any other int is a
  TypeError. Anything else must export the buffer protocol, C-contiguous (TypeError otherwise);
  its bytes are raw memory, whatever its dtype or format.
- Faults are reproduced the kernel's way: each ``put_user``/``get_user`` either fits wholly in
  the buffer or faults with EFAULT, and earlier writes stay written. NULL and read-only buffers
  fault on the first write; a read-only buffer is fine to read from.
- The EFAULT itself is raised by the caller through ``gic5core.check`` (the single place that
  builds OSError); this module only answers "did it fit".
"""

from __future__ import annotations

import struct
from typing import Any

__all__ = ["UserPtr"]

_U64 = struct.Struct("=Q")  # native byte order, standard size: a __u64
_U32 = struct.Struct("=I")  # a __u32 / int as the timer and PMU attributes use


class UserPtr:
    """A validated user pointer: NULL, or a byte view of a contiguous buffer."""

    __slots__ = ("_view",)

    def __init__(self, addr: Any) -> None:
        self._view: memoryview | None
        if addr is None:
            self._view = None
            return
        if isinstance(addr, int):
            if addr == 0:
                self._view = None
                return
            raise TypeError("addr must be None, 0 or a buffer: gic5 never dereferences a raw "
                            f"address (got the int {addr:#x})")
        try:
            view = memoryview(addr)
        except TypeError:
            raise TypeError("addr must be None, 0 or an object with the buffer protocol "
                            f"(bytearray, memoryview, numpy array, array.array), not "
                            f"{type(addr).__name__}") from None
        if not view.c_contiguous:
            raise TypeError("addr must be a C-contiguous buffer (a non-contiguous view is not "
                            "one user memory range)")
        self._view = view.cast("B") if view.ndim != 1 or view.format != "B" else view

    @property
    def is_null(self) -> bool:
        return self._view is None

    def readable(self, size: int) -> bool:
        """True when ``size`` bytes at the start can be read."""
        return self._view is not None and self._view.nbytes >= size

    def read_u32(self) -> tuple[bool, int]:
        """(readable, value) of a ``get_user`` of 4 bytes; value 0 when it would fault."""
        if not self.readable(_U32.size):
            return False, 0
        assert self._view is not None
        return True, _U32.unpack_from(self._view, 0)[0]

    def read_u64(self) -> tuple[bool, int]:
        """(readable, value) of a ``get_user`` of 8 bytes; value 0 when it would fault."""
        if not self.readable(_U64.size):
            return False, 0
        assert self._view is not None
        return True, _U64.unpack_from(self._view, 0)[0]

    def write(self, fmt: struct.Struct, values: tuple[int, ...]) -> bool:
        """``put_user`` each value in turn; False at the first one that does not fit."""
        view = self._view
        if view is None or view.readonly:
            return False
        offset = 0
        for value in values:
            if offset + fmt.size > view.nbytes:
                return False
            fmt.pack_into(view, offset, value)
            offset += fmt.size
        return True

    def read_words(self, fmt: struct.Struct, count: int) -> list[int]:
        """The first ``count`` values of ``fmt`` that can be read, one ``get_user`` each: fewer
        when the buffer ends (or is NULL) before them, the next read faulting."""
        view = self._view
        if view is None:
            return []
        n = min(count, view.nbytes // fmt.size)
        return [v for (v,) in fmt.iter_unpack(view[:n * fmt.size])]

    def write_u64s(self, *values: int) -> bool:
        return self.write(_U64, values)

    def write_u64(self, value: int) -> bool:
        return self.write(_U64, (value,))

    def write_u32(self, value: int) -> bool:
        return self.write(_U32, (value,))
