"""Run functions of a bare-metal Cortex-M ELF in-process on unicorn, one call at a time.

``worker.firmware`` builds the image; this module loads it the way the reset handler would
(flash image, ``.data`` copied to RAM, ``.bss`` zeroed), then calls one function at a time with
the AAPCS (argument in r0, result in r0, return address in lr) and measures each call:

- instructions executed: counted per translated basic block (``UC_HOOK_BLOCK``: one Python call
  per block, the block's instruction count decoded once from its Thumb encoding). An
  instruction whose IT condition fails counts: the core issues it and spends a cycle on it.
  ``count_with="code"`` counts with a per-instruction ``UC_HOOK_CODE`` hook instead (slower),
  adding the IT-skipped instructions unicorn does not hook from the IT instructions' masks;
  tests/worker/test_firmware.py checks that both agree, and that on ARMv6-M (no IT) the block
  count equals the plain per-instruction hook count.
- peak stack: the free RAM below the stack pointer is painted with a pattern before the call
  and scanned after it; the deepest overwritten word is the peak. A frame the function
  reserves but never writes does not count (it is not touched on the real core either).

A call that runs past ``max_instructions`` or ``call_timeout_s``, or faults, raises TrialError
naming the function, so a broken program costs a trial instead of hanging a worker.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile
from unicorn import (
    UC_ARCH_ARM,
    UC_HOOK_BLOCK,
    UC_HOOK_CODE,
    UC_HOOK_MEM_FETCH_UNMAPPED,
    UC_HOOK_MEM_READ_UNMAPPED,
    UC_HOOK_MEM_WRITE_PROT,
    UC_HOOK_MEM_WRITE_UNMAPPED,
    UC_MODE_MCLASS,
    UC_MODE_THUMB,
    UC_PROT_EXEC,
    UC_PROT_READ,
    Uc,
    UcError,
)
from unicorn import arm_const as arm

from sparsearch.errors import TrialError

#: Memory of the mps2-an386 board as firmware_files/mps2-an386.ld lays it out.
FLASH_BASE, FLASH_SIZE = 0x0000_0000, 4 << 20
RAM_BASE, RAM_SIZE = 0x2000_0000, 4 << 20
#: Calls return here (lr = STOP | 1): a page of its own in the code region, outside the image,
#: holding a branch-to-self in case anything ever ran past the stop.
STOP, STOP_PAGE = 0x1000_0000, 0x1000
#: Free RAM below the stack pointer that is painted before each call: deeper is an error.
PAINT_BYTES = 256 << 10
PAINT_WORD = 0xA5C3_5A3C  # unlikely as a model's data (not a repeated byte, not small)

#: ``-mcpu`` name -> unicorn CPU model (ARMv6-M has no separate M0+ model: same ISA).
CPU_MODELS = {
    "cortex-m0": arm.UC_CPU_ARM_CORTEX_M0,
    "cortex-m0plus": arm.UC_CPU_ARM_CORTEX_M0,
    "cortex-m3": arm.UC_CPU_ARM_CORTEX_M3,
    "cortex-m4": arm.UC_CPU_ARM_CORTEX_M4,
    "cortex-m7": arm.UC_CPU_ARM_CORTEX_M7,
    "cortex-m33": arm.UC_CPU_ARM_CORTEX_M33,
}


@dataclass(frozen=True)
class Call:
    """One function call: its result (r0, signed), instructions and peak stack bytes."""

    result: int
    instructions: int
    stack_bytes: int


def thumb_instructions(code: bytes) -> int:
    """Instructions in a run of Thumb code: a halfword whose top five bits are 0b11101,
    0b11110 or 0b11111 starts a 32-bit instruction, any other is a 16-bit one."""
    halfwords = np.frombuffer(code[: len(code) & ~1], dtype="<u2")
    count = i = 0
    n = len(halfwords)
    while i < n:
        i += 2 if (int(halfwords[i]) >> 11) >= 0b11101 else 1
        count += 1
    return count


@functools.lru_cache(maxsize=4)
def _paint(words: int) -> bytes:
    """``words`` copies of PAINT_WORD (built once per size: every call paints)."""
    return np.full(words, PAINT_WORD, dtype="<u4").tobytes()


class Emulator:
    """One loaded image. ``call(name, arg)`` runs a function to its return; RAM persists
    between calls (static buffers keep their contents, as on the device)."""

    def __init__(
        self,
        elf_path: Path,
        cpu: str = "cortex-m4",
        *,
        max_instructions: int,
        call_timeout_s: float,
        count_with: str = "block",
        scratch_bytes: int = 0,
    ) -> None:
        self.max_instructions = max_instructions
        self.call_timeout_s = call_timeout_s
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(CPU_MODELS[cpu])
        self.uc.mem_map(FLASH_BASE, FLASH_SIZE)
        self.uc.mem_map(RAM_BASE, RAM_SIZE)
        self.uc.mem_map(STOP, STOP_PAGE)
        self.uc.mem_write(STOP, b"\xfe\xe7")  # b .
        with elf_path.open("rb") as f:
            elf = ELFFile(f)
            self.symbols = {
                s.name: int(s["st_value"])
                for s in elf.get_section_by_name(".symtab").iter_symbols()
                if s.name
            }
            self._load(elf)
        self.uc.mem_protect(FLASH_BASE, FLASH_SIZE, UC_PROT_READ | UC_PROT_EXEC)  # as on chip
        self.stack_top = self.symbols["__stack_top"]
        #: ``scratch_bytes`` of free RAM past the image's static data (16-byte aligned) for the
        #: caller's arguments (a raw sample): never painted, not counted as the model's.
        self.scratch = (self.symbols["__bss_end"] + 15) & ~15
        self._paint_floor = (self.scratch + scratch_bytes + 3) & ~3
        if self._paint_floor >= self.stack_top - 1024:
            raise TrialError(
                "the firmware image leaves no free RAM for the stack",
                hint="the model's static buffers fill the board's 4 MiB of RAM: far too large "
                "for a microcontroller",
            )
        self._count = 0
        self._blocks: dict[int, int] = {}
        self._it_pending: deque[int] = deque()
        self._bad_access: tuple[str, int] | None = None
        if count_with == "block":
            self.uc.hook_add(UC_HOOK_BLOCK, self._on_block)
        elif count_with == "code":
            self.uc.hook_add(UC_HOOK_CODE, self._on_instruction)
        else:
            raise ValueError(f"count_with must be 'block' or 'code', not {count_with!r}")
        self.uc.hook_add(UC_HOOK_MEM_READ_UNMAPPED, self._on_bad_access, "read of unmapped memory")
        self.uc.hook_add(
            UC_HOOK_MEM_WRITE_UNMAPPED, self._on_bad_access, "write to unmapped memory"
        )
        self.uc.hook_add(UC_HOOK_MEM_FETCH_UNMAPPED, self._on_bad_access, "jump to unmapped memory")
        self.uc.hook_add(UC_HOOK_MEM_WRITE_PROT, self._on_bad_access, "write to flash")

    def _load(self, elf: ELFFile) -> None:
        """What the reset handler leaves behind: every loadable segment at its load address
        (flash), initialized data also at its run address (RAM), ``.bss`` zero."""
        for seg in elf.iter_segments():
            if seg["p_type"] != "PT_LOAD" or not seg["p_filesz"]:
                continue
            data = seg.data()
            self.uc.mem_write(seg["p_paddr"], data)
            if seg["p_vaddr"] != seg["p_paddr"]:
                self.uc.mem_write(seg["p_vaddr"], data)
        bss, end = self.symbols["__bss_start"], self.symbols["__bss_end"]
        self.uc.mem_write(bss, bytes(end - bss))

    # hooks: unicorn calls these from inside emu_start
    def _on_block(self, uc: Uc, address: int, size: int, _: object) -> None:
        key = address << 16 | size
        n = self._blocks.get(key)
        if n is None:
            n = self._blocks[key] = thumb_instructions(bytes(uc.mem_read(address, size)))
        self._count += n
        if self._count > self.max_instructions:
            uc.emu_stop()

    def _on_instruction(self, uc: Uc, address: int, size: int, _: object) -> None:
        # unicorn skips the hook of an instruction whose IT condition fails: count those
        # from the IT instruction's mask, when the trace moves past them.
        pending = self._it_pending
        while pending and pending[0] <= address:
            if pending.popleft() < address:
                self._count += 1
        self._count += 1
        if size == 2:
            halfword = int.from_bytes(uc.mem_read(address, 2), "little")
            if halfword & 0xFF00 == 0xBF00 and halfword & 0xF:  # IT (0xBFx0 are hints)
                mask = halfword & 0xF
                n = 4 - ((mask & -mask).bit_length() - 1)  # 4 - trailing zeros
                code = bytes(uc.mem_read(address + 2, 4 * n))
                offset = 0
                for _i in range(n):
                    pending.append(address + 2 + offset)
                    offset += 4 if (code[offset + 1] >> 3) >= 0b11101 else 2
        if self._count > self.max_instructions:
            uc.emu_stop()

    def _on_bad_access(
        self, uc: Uc, access: int, address: int, size: int, value: int, kind: str
    ) -> bool:
        self._bad_access = (kind, address)
        return False  # unicorn stops with UC_ERR_*_UNMAPPED / UC_ERR_WRITE_PROT

    def address(self, name: str) -> int:
        """The address of symbol ``name`` (functions: with the Thumb bit cleared)."""
        try:
            return self.symbols[name] & ~1
        except KeyError:
            raise TrialError(
                f"the firmware image has no symbol {name!r}",
                hint="the generated C does not define the model's API; report it with the model",
            ) from None

    def write(self, address: int, data: bytes) -> None:
        self.uc.mem_write(address, data)

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(address, size))

    def call(self, name: str, arg: int = 0) -> Call:
        """Run function ``name(arg)`` from a fresh stack (sp = __stack_top) to its return."""
        func = self.address(name)
        sp = self.stack_top
        paint_low = max(self._paint_floor, sp - PAINT_BYTES)
        words = (sp - paint_low) // 4
        paint_low = sp - 4 * words
        self.uc.mem_write(paint_low, _paint(words))
        uc = self.uc
        uc.reg_write(arm.UC_ARM_REG_SP, sp)
        uc.reg_write(arm.UC_ARM_REG_LR, STOP | 1)
        uc.reg_write(arm.UC_ARM_REG_R0, arg & 0xFFFF_FFFF)
        self._count = 0
        self._it_pending.clear()
        self._bad_access = None
        try:
            uc.emu_start(func | 1, STOP, timeout=int(self.call_timeout_s * 1e6))
        except UcError as e:
            pc = uc.reg_read(arm.UC_ARM_REG_PC)
            where = ""
            if self._bad_access is not None:
                kind, address = self._bad_access
                where = f" ({kind} at 0x{address:08x})"
            raise TrialError(
                f"{name} faulted at pc 0x{pc:08x}{where}: {e}",
                hint="the generated C accesses memory it does not own; report it with the model",
            ) from None
        pc = uc.reg_read(arm.UC_ARM_REG_PC)
        if pc != STOP:
            if self._count > self.max_instructions:
                raise TrialError(
                    f"{name} ran past {self.max_instructions:,} instructions (at pc 0x{pc:08x})",
                    hint="the generated C does not terminate, or the model is far too large "
                    "for a microcontroller",
                )
            raise TrialError(
                f"{name} did not return within {self.call_timeout_s:g} s of emulation "
                f"({self._count:,} instructions, at pc 0x{pc:08x})",
                hint="the generated C does not terminate, or the model is far too large "
                "for a microcontroller",
            )
        stack = np.frombuffer(uc.mem_read(paint_low, 4 * words), dtype="<u4")
        touched = np.flatnonzero(stack != PAINT_WORD)
        stack_bytes = 0 if touched.size == 0 else sp - (paint_low + 4 * int(touched[0]))
        if touched.size and touched[0] == 0:
            raise TrialError(
                f"{name} used more than {sp - paint_low:,} bytes of stack",
                hint="the generated C keeps large arrays on the stack; report it with the model",
            )
        result = uc.reg_read(arm.UC_ARM_REG_R0)
        return Call(
            result=result - (1 << 32) if result & 0x8000_0000 else result,
            instructions=self._count,
            stack_bytes=stack_bytes,
        )
