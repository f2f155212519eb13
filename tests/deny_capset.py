"""Run a command with capset(2) refused by the kernel (EPERM), through a seccomp filter.

``python deny_capset.py CMD ARGS...``: for the test of a privilege drop whose setuid succeeds and
whose capset then fails, which no ordinary setting of a root process can bring about.  x86_64 only.
"""

from __future__ import annotations

import ctypes
import os
import struct
import sys

NR_CAPSET_X86_64 = 126
AUDIT_ARCH_X86_64 = 0xC000003E
PR_SET_NO_NEW_PRIVS, PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 38, 22, 2
RET_ALLOW, RET_EPERM = 0x7FFF0000, 0x00050000 | 1
LD_ABS, JEQ, RET = 0x20, 0x15, 0x06


def deny_capset() -> None:
    program = [
        (LD_ABS, 0, 0, 4),  # seccomp_data.arch
        (JEQ, 1, 0, AUDIT_ARCH_X86_64),
        (RET, 0, 0, RET_ALLOW),
        (LD_ABS, 0, 0, 0),  # seccomp_data.nr
        (JEQ, 0, 1, NR_CAPSET_X86_64),
        (RET, 0, 0, RET_EPERM),
        (RET, 0, 0, RET_ALLOW),
    ]
    code = b"".join(struct.pack("=HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(code, len(code))

    class Prog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = ctypes.CDLL(None, use_errno=True)
    prog = Prog(len(program), ctypes.addressof(buf))
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 or libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER,
                                                                      ctypes.byref(prog), 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "installing the seccomp filter failed")


if __name__ == "__main__":
    deny_capset()
    os.execvp(sys.argv[1], sys.argv[1:])
