"""add/adc/sub/sbb/cmp/inc/dec/neg at every operand size, flags exact.

Expected values derived from the SDM pseudo-code (all six status flags are
defined for these instructions; INC/DEC leave CF unchanged).
"""

import pytest

from conftest import (DATA, GUEST_FLAGS, STATUS, assert_flags, assert_guest_flags, expect_flags, flags_value, mask,
                      run_code)

REG = {8: ("al", "bl"), 16: ("ax", "bx"), 32: ("eax", "ebx"), 64: ("rax", "rbx")}
HI_A = 0x8877665544332211
HI_B = 0x1122334455667788
SIZE_KW = {8: "byte", 16: "word", 32: "dword", 64: "qword"}


def merge(old, new, size):
    """register value after writing `new` to the low `size` bits (64-bit mode rules)."""
    if size == 32:
        return new & 0xFFFFFFFF
    return (old & ~mask(size)) | (new & mask(size)) if size < 64 else new


def inverted(expected, cf=None):
    """initial flags: every status flag the opposite of its expected value (CF forced to cf)."""
    names = [n for n in STATUS if not expected.get(n)]
    if cf is not None:
        names = [n for n in names if n != "CF"] + (["CF"] if cf else [])
    return flags_value(names)


# (op, size, a, b, carry_in, result, flags set after)
BINOPS = [
    ("add", 8, 0x85, 0xf6, 0, 0x7b, "CF PF OF"),
    ("add", 8, 0x57, 0x14, 0, 0x6b, ""),
    ("add", 8, 0xec, 0xa9, 0, 0x95, "CF PF AF SF"),
    ("add", 8, 0xb6, 0xac, 0, 0x62, "CF AF OF"),
    ("add", 8, 0x97, 0x58, 0, 0xef, "SF"),
    ("add", 8, 0xab, 0x2, 0, 0xad, "SF"),
    ("add", 8, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("add", 8, 0x1, 0x1, 0, 0x2, ""),
    ("add", 8, 0xff, 0x1, 0, 0x0, "CF PF AF ZF"),
    ("add", 8, 0x1, 0xff, 0, 0x0, "CF PF AF ZF"),
    ("add", 8, 0xff, 0xff, 0, 0xfe, "CF AF SF"),
    ("add", 8, 0x7f, 0x1, 0, 0x80, "AF SF OF"),
    ("add", 8, 0x80, 0x80, 0, 0x0, "CF PF ZF OF"),
    ("add", 8, 0x80, 0x1, 0, 0x81, "PF SF"),
    ("add", 8, 0x7f, 0x7f, 0, 0xfe, "AF SF OF"),
    ("add", 8, 0x80, 0x7f, 0, 0xff, "PF SF"),
    ("add", 8, 0x7f, 0x80, 0, 0xff, "PF SF"),
    ("add", 8, 0xf, 0x1, 0, 0x10, "AF"),
    ("add", 8, 0x10, 0x1, 0, 0x11, "PF"),
    ("add", 8, 0x0, 0x1, 0, 0x1, ""),
    ("add", 8, 0x5a, 0xa7, 0, 0x1, "CF AF"),
    ("add", 8, 0xa7, 0x5a, 0, 0x1, "CF AF"),
    ("add", 16, 0x5d65, 0xbac3, 0, 0x1828, "CF PF"),
    ("add", 16, 0x5944, 0xbbf3, 0, 0x1537, "CF"),
    ("add", 16, 0xa4aa, 0xa8d0, 0, 0x4d7a, "CF OF"),
    ("add", 16, 0x593a, 0xe25a, 0, 0x3b94, "CF AF"),
    ("add", 16, 0x77f3, 0x86a5, 0, 0xfe98, "SF"),
    ("add", 16, 0x7a32, 0x96c3, 0, 0x10f5, "CF PF"),
    ("add", 16, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("add", 16, 0x1, 0x1, 0, 0x2, ""),
    ("add", 16, 0xffff, 0x1, 0, 0x0, "CF PF AF ZF"),
    ("add", 16, 0x1, 0xffff, 0, 0x0, "CF PF AF ZF"),
    ("add", 16, 0xffff, 0xffff, 0, 0xfffe, "CF AF SF"),
    ("add", 16, 0x7fff, 0x1, 0, 0x8000, "PF AF SF OF"),
    ("add", 16, 0x8000, 0x8000, 0, 0x0, "CF PF ZF OF"),
    ("add", 16, 0x8000, 0x1, 0, 0x8001, "SF"),
    ("add", 16, 0x7fff, 0x7fff, 0, 0xfffe, "AF SF OF"),
    ("add", 16, 0x8000, 0x7fff, 0, 0xffff, "PF SF"),
    ("add", 16, 0x7fff, 0x8000, 0, 0xffff, "PF SF"),
    ("add", 16, 0xf, 0x1, 0, 0x10, "AF"),
    ("add", 16, 0x10, 0x1, 0, 0x11, "PF"),
    ("add", 16, 0x0, 0x1, 0, 0x1, ""),
    ("add", 16, 0x1234, 0xfedc, 0, 0x1110, "CF AF"),
    ("add", 16, 0xfedc, 0x1234, 0, 0x1110, "CF AF"),
    ("add", 32, 0x6300f7a1, 0xa637695b, 0, 0x93860fc, "CF PF"),
    ("add", 32, 0xc8111a9b, 0x28cf3b2d, 0, 0xf0e055c8, "AF SF"),
    ("add", 32, 0x7577e5ca, 0x488f7ebc, 0, 0xbe076486, "AF SF OF"),
    ("add", 32, 0xe00f704, 0xe341caab, 0, 0xf142c1af, "PF SF"),
    ("add", 32, 0x30df2fd9, 0x4eb42ef1, 0, 0x7f935eca, "PF"),
    ("add", 32, 0x213fc927, 0x8c33d20d, 0, 0xad739b34, "AF SF"),
    ("add", 32, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("add", 32, 0x1, 0x1, 0, 0x2, ""),
    ("add", 32, 0xffffffff, 0x1, 0, 0x0, "CF PF AF ZF"),
    ("add", 32, 0x1, 0xffffffff, 0, 0x0, "CF PF AF ZF"),
    ("add", 32, 0xffffffff, 0xffffffff, 0, 0xfffffffe, "CF AF SF"),
    ("add", 32, 0x7fffffff, 0x1, 0, 0x80000000, "PF AF SF OF"),
    ("add", 32, 0x80000000, 0x80000000, 0, 0x0, "CF PF ZF OF"),
    ("add", 32, 0x80000000, 0x1, 0, 0x80000001, "SF"),
    ("add", 32, 0x7fffffff, 0x7fffffff, 0, 0xfffffffe, "AF SF OF"),
    ("add", 32, 0x80000000, 0x7fffffff, 0, 0xffffffff, "PF SF"),
    ("add", 32, 0x7fffffff, 0x80000000, 0, 0xffffffff, "PF SF"),
    ("add", 32, 0xf, 0x1, 0, 0x10, "AF"),
    ("add", 32, 0x10, 0x1, 0, 0x11, "PF"),
    ("add", 32, 0x0, 0x1, 0, 0x1, ""),
    ("add", 32, 0x12345678, 0x9abcdef0, 0, 0xacf13568, "SF"),
    ("add", 32, 0x9abcdef0, 0x12345678, 0, 0xacf13568, "SF"),
    ("add", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 0, 0xfde19c694e081588, "PF AF SF"),
    ("add", 64, 0x17e0c63d7b7febd5, 0xfe, 0, 0x17e0c63d7b7fecd3, "AF"),
    ("add", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 0, 0x39c92bdfa859a549, "CF"),
    ("add", 64, 0x6384eeb3e56632e7, 0x8a, 0, 0x6384eeb3e5663371, "PF AF"),
    ("add", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 0, 0xed482ebb06b91d50, "PF SF"),
    ("add", 64, 0xa49cd983b987302e, 0xaef558d9572c35af, 0, 0x5392325d10b365dd, "CF PF AF OF"),
    ("add", 64, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("add", 64, 0x1, 0x1, 0, 0x2, ""),
    ("add", 64, 0xffffffffffffffff, 0x1, 0, 0x0, "CF PF AF ZF"),
    ("add", 64, 0x1, 0xffffffffffffffff, 0, 0x0, "CF PF AF ZF"),
    ("add", 64, 0xffffffffffffffff, 0xffffffffffffffff, 0, 0xfffffffffffffffe, "CF AF SF"),
    ("add", 64, 0x7fffffffffffffff, 0x1, 0, 0x8000000000000000, "PF AF SF OF"),
    ("add", 64, 0x8000000000000000, 0x8000000000000000, 0, 0x0, "CF PF ZF OF"),
    ("add", 64, 0x8000000000000000, 0x1, 0, 0x8000000000000001, "SF"),
    ("add", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 0, 0xfffffffffffffffe, "AF SF OF"),
    ("add", 64, 0x8000000000000000, 0x7fffffffffffffff, 0, 0xffffffffffffffff, "PF SF"),
    ("add", 64, 0x7fffffffffffffff, 0x8000000000000000, 0, 0xffffffffffffffff, "PF SF"),
    ("add", 64, 0xf, 0x1, 0, 0x10, "AF"),
    ("add", 64, 0x10, 0x1, 0, 0x11, "PF"),
    ("add", 64, 0x0, 0x1, 0, 0x1, ""),
    ("add", 64, 0x123456789abcdef, 0xfedcba9876543210, 0, 0xffffffffffffffff, "PF SF"),
    ("add", 64, 0xfedcba9876543210, 0x123456789abcdef, 0, 0xffffffffffffffff, "PF SF"),
    ("adc", 8, 0x85, 0xf6, 0, 0x7b, "CF PF OF"),
    ("adc", 8, 0x85, 0xf6, 1, 0x7c, "CF OF"),
    ("adc", 8, 0x57, 0x14, 0, 0x6b, ""),
    ("adc", 8, 0x57, 0x14, 1, 0x6c, "PF"),
    ("adc", 8, 0xec, 0xa9, 0, 0x95, "CF PF AF SF"),
    ("adc", 8, 0xec, 0xa9, 1, 0x96, "CF PF AF SF"),
    ("adc", 8, 0xb6, 0xac, 0, 0x62, "CF AF OF"),
    ("adc", 8, 0xb6, 0xac, 1, 0x63, "CF PF AF OF"),
    ("adc", 8, 0x97, 0x58, 0, 0xef, "SF"),
    ("adc", 8, 0x97, 0x58, 1, 0xf0, "PF AF SF"),
    ("adc", 8, 0xab, 0x2, 0, 0xad, "SF"),
    ("adc", 8, 0xab, 0x2, 1, 0xae, "SF"),
    ("adc", 8, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("adc", 8, 0x0, 0x0, 1, 0x1, ""),
    ("adc", 8, 0x1, 0x1, 0, 0x2, ""),
    ("adc", 8, 0x1, 0x1, 1, 0x3, "PF"),
    ("adc", 8, 0xff, 0x1, 0, 0x0, "CF PF AF ZF"),
    ("adc", 8, 0xff, 0x1, 1, 0x1, "CF AF"),
    ("adc", 8, 0x1, 0xff, 0, 0x0, "CF PF AF ZF"),
    ("adc", 8, 0x1, 0xff, 1, 0x1, "CF AF"),
    ("adc", 8, 0xff, 0xff, 0, 0xfe, "CF AF SF"),
    ("adc", 8, 0xff, 0xff, 1, 0xff, "CF PF AF SF"),
    ("adc", 8, 0x7f, 0x1, 0, 0x80, "AF SF OF"),
    ("adc", 8, 0x7f, 0x1, 1, 0x81, "PF AF SF OF"),
    ("adc", 8, 0x80, 0x80, 0, 0x0, "CF PF ZF OF"),
    ("adc", 8, 0x80, 0x80, 1, 0x1, "CF OF"),
    ("adc", 8, 0x80, 0x1, 0, 0x81, "PF SF"),
    ("adc", 8, 0x80, 0x1, 1, 0x82, "PF SF"),
    ("adc", 8, 0x7f, 0x7f, 0, 0xfe, "AF SF OF"),
    ("adc", 8, 0x7f, 0x7f, 1, 0xff, "PF AF SF OF"),
    ("adc", 8, 0x80, 0x7f, 0, 0xff, "PF SF"),
    ("adc", 8, 0x80, 0x7f, 1, 0x0, "CF PF AF ZF"),
    ("adc", 8, 0x7f, 0x80, 0, 0xff, "PF SF"),
    ("adc", 8, 0x7f, 0x80, 1, 0x0, "CF PF AF ZF"),
    ("adc", 8, 0xf, 0x1, 0, 0x10, "AF"),
    ("adc", 8, 0xf, 0x1, 1, 0x11, "PF AF"),
    ("adc", 8, 0x10, 0x1, 0, 0x11, "PF"),
    ("adc", 8, 0x10, 0x1, 1, 0x12, "PF"),
    ("adc", 8, 0x0, 0x1, 0, 0x1, ""),
    ("adc", 8, 0x0, 0x1, 1, 0x2, ""),
    ("adc", 8, 0x5a, 0xa7, 0, 0x1, "CF AF"),
    ("adc", 8, 0x5a, 0xa7, 1, 0x2, "CF AF"),
    ("adc", 8, 0xa7, 0x5a, 0, 0x1, "CF AF"),
    ("adc", 8, 0xa7, 0x5a, 1, 0x2, "CF AF"),
    ("adc", 16, 0x5d65, 0xbac3, 0, 0x1828, "CF PF"),
    ("adc", 16, 0x5d65, 0xbac3, 1, 0x1829, "CF"),
    ("adc", 16, 0x5944, 0xbbf3, 0, 0x1537, "CF"),
    ("adc", 16, 0x5944, 0xbbf3, 1, 0x1538, "CF"),
    ("adc", 16, 0xa4aa, 0xa8d0, 0, 0x4d7a, "CF OF"),
    ("adc", 16, 0xa4aa, 0xa8d0, 1, 0x4d7b, "CF PF OF"),
    ("adc", 16, 0x593a, 0xe25a, 0, 0x3b94, "CF AF"),
    ("adc", 16, 0x593a, 0xe25a, 1, 0x3b95, "CF PF AF"),
    ("adc", 16, 0x77f3, 0x86a5, 0, 0xfe98, "SF"),
    ("adc", 16, 0x77f3, 0x86a5, 1, 0xfe99, "PF SF"),
    ("adc", 16, 0x7a32, 0x96c3, 0, 0x10f5, "CF PF"),
    ("adc", 16, 0x7a32, 0x96c3, 1, 0x10f6, "CF PF"),
    ("adc", 16, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("adc", 16, 0x0, 0x0, 1, 0x1, ""),
    ("adc", 16, 0x1, 0x1, 0, 0x2, ""),
    ("adc", 16, 0x1, 0x1, 1, 0x3, "PF"),
    ("adc", 16, 0xffff, 0x1, 0, 0x0, "CF PF AF ZF"),
    ("adc", 16, 0xffff, 0x1, 1, 0x1, "CF AF"),
    ("adc", 16, 0x1, 0xffff, 0, 0x0, "CF PF AF ZF"),
    ("adc", 16, 0x1, 0xffff, 1, 0x1, "CF AF"),
    ("adc", 16, 0xffff, 0xffff, 0, 0xfffe, "CF AF SF"),
    ("adc", 16, 0xffff, 0xffff, 1, 0xffff, "CF PF AF SF"),
    ("adc", 16, 0x7fff, 0x1, 0, 0x8000, "PF AF SF OF"),
    ("adc", 16, 0x7fff, 0x1, 1, 0x8001, "AF SF OF"),
    ("adc", 16, 0x8000, 0x8000, 0, 0x0, "CF PF ZF OF"),
    ("adc", 16, 0x8000, 0x8000, 1, 0x1, "CF OF"),
    ("adc", 16, 0x8000, 0x1, 0, 0x8001, "SF"),
    ("adc", 16, 0x8000, 0x1, 1, 0x8002, "SF"),
    ("adc", 16, 0x7fff, 0x7fff, 0, 0xfffe, "AF SF OF"),
    ("adc", 16, 0x7fff, 0x7fff, 1, 0xffff, "PF AF SF OF"),
    ("adc", 16, 0x8000, 0x7fff, 0, 0xffff, "PF SF"),
    ("adc", 16, 0x8000, 0x7fff, 1, 0x0, "CF PF AF ZF"),
    ("adc", 16, 0x7fff, 0x8000, 0, 0xffff, "PF SF"),
    ("adc", 16, 0x7fff, 0x8000, 1, 0x0, "CF PF AF ZF"),
    ("adc", 16, 0xf, 0x1, 0, 0x10, "AF"),
    ("adc", 16, 0xf, 0x1, 1, 0x11, "PF AF"),
    ("adc", 16, 0x10, 0x1, 0, 0x11, "PF"),
    ("adc", 16, 0x10, 0x1, 1, 0x12, "PF"),
    ("adc", 16, 0x0, 0x1, 0, 0x1, ""),
    ("adc", 16, 0x0, 0x1, 1, 0x2, ""),
    ("adc", 16, 0x1234, 0xfedc, 0, 0x1110, "CF AF"),
    ("adc", 16, 0x1234, 0xfedc, 1, 0x1111, "CF PF AF"),
    ("adc", 16, 0xfedc, 0x1234, 0, 0x1110, "CF AF"),
    ("adc", 16, 0xfedc, 0x1234, 1, 0x1111, "CF PF AF"),
    ("adc", 32, 0x6300f7a1, 0xa637695b, 0, 0x93860fc, "CF PF"),
    ("adc", 32, 0x6300f7a1, 0xa637695b, 1, 0x93860fd, "CF"),
    ("adc", 32, 0xc8111a9b, 0x28cf3b2d, 0, 0xf0e055c8, "AF SF"),
    ("adc", 32, 0xc8111a9b, 0x28cf3b2d, 1, 0xf0e055c9, "PF AF SF"),
    ("adc", 32, 0x7577e5ca, 0x488f7ebc, 0, 0xbe076486, "AF SF OF"),
    ("adc", 32, 0x7577e5ca, 0x488f7ebc, 1, 0xbe076487, "PF AF SF OF"),
    ("adc", 32, 0xe00f704, 0xe341caab, 0, 0xf142c1af, "PF SF"),
    ("adc", 32, 0xe00f704, 0xe341caab, 1, 0xf142c1b0, "AF SF"),
    ("adc", 32, 0x30df2fd9, 0x4eb42ef1, 0, 0x7f935eca, "PF"),
    ("adc", 32, 0x30df2fd9, 0x4eb42ef1, 1, 0x7f935ecb, ""),
    ("adc", 32, 0x213fc927, 0x8c33d20d, 0, 0xad739b34, "AF SF"),
    ("adc", 32, 0x213fc927, 0x8c33d20d, 1, 0xad739b35, "PF AF SF"),
    ("adc", 32, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("adc", 32, 0x0, 0x0, 1, 0x1, ""),
    ("adc", 32, 0x1, 0x1, 0, 0x2, ""),
    ("adc", 32, 0x1, 0x1, 1, 0x3, "PF"),
    ("adc", 32, 0xffffffff, 0x1, 0, 0x0, "CF PF AF ZF"),
    ("adc", 32, 0xffffffff, 0x1, 1, 0x1, "CF AF"),
    ("adc", 32, 0x1, 0xffffffff, 0, 0x0, "CF PF AF ZF"),
    ("adc", 32, 0x1, 0xffffffff, 1, 0x1, "CF AF"),
    ("adc", 32, 0xffffffff, 0xffffffff, 0, 0xfffffffe, "CF AF SF"),
    ("adc", 32, 0xffffffff, 0xffffffff, 1, 0xffffffff, "CF PF AF SF"),
    ("adc", 32, 0x7fffffff, 0x1, 0, 0x80000000, "PF AF SF OF"),
    ("adc", 32, 0x7fffffff, 0x1, 1, 0x80000001, "AF SF OF"),
    ("adc", 32, 0x80000000, 0x80000000, 0, 0x0, "CF PF ZF OF"),
    ("adc", 32, 0x80000000, 0x80000000, 1, 0x1, "CF OF"),
    ("adc", 32, 0x80000000, 0x1, 0, 0x80000001, "SF"),
    ("adc", 32, 0x80000000, 0x1, 1, 0x80000002, "SF"),
    ("adc", 32, 0x7fffffff, 0x7fffffff, 0, 0xfffffffe, "AF SF OF"),
    ("adc", 32, 0x7fffffff, 0x7fffffff, 1, 0xffffffff, "PF AF SF OF"),
    ("adc", 32, 0x80000000, 0x7fffffff, 0, 0xffffffff, "PF SF"),
    ("adc", 32, 0x80000000, 0x7fffffff, 1, 0x0, "CF PF AF ZF"),
    ("adc", 32, 0x7fffffff, 0x80000000, 0, 0xffffffff, "PF SF"),
    ("adc", 32, 0x7fffffff, 0x80000000, 1, 0x0, "CF PF AF ZF"),
    ("adc", 32, 0xf, 0x1, 0, 0x10, "AF"),
    ("adc", 32, 0xf, 0x1, 1, 0x11, "PF AF"),
    ("adc", 32, 0x10, 0x1, 0, 0x11, "PF"),
    ("adc", 32, 0x10, 0x1, 1, 0x12, "PF"),
    ("adc", 32, 0x0, 0x1, 0, 0x1, ""),
    ("adc", 32, 0x0, 0x1, 1, 0x2, ""),
    ("adc", 32, 0x12345678, 0x9abcdef0, 0, 0xacf13568, "SF"),
    ("adc", 32, 0x12345678, 0x9abcdef0, 1, 0xacf13569, "PF SF"),
    ("adc", 32, 0x9abcdef0, 0x12345678, 0, 0xacf13568, "SF"),
    ("adc", 32, 0x9abcdef0, 0x12345678, 1, 0xacf13569, "PF SF"),
    ("adc", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 0, 0xfde19c694e081588, "PF AF SF"),
    ("adc", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 1, 0xfde19c694e081589, "AF SF"),
    ("adc", 64, 0x17e0c63d7b7febd5, 0xfe, 0, 0x17e0c63d7b7fecd3, "AF"),
    ("adc", 64, 0x17e0c63d7b7febd5, 0xfe, 1, 0x17e0c63d7b7fecd4, "PF AF"),
    ("adc", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 0, 0x39c92bdfa859a549, "CF"),
    ("adc", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 1, 0x39c92bdfa859a54a, "CF"),
    ("adc", 64, 0x6384eeb3e56632e7, 0x8a, 0, 0x6384eeb3e5663371, "PF AF"),
    ("adc", 64, 0x6384eeb3e56632e7, 0x8a, 1, 0x6384eeb3e5663372, "PF AF"),
    ("adc", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 0, 0xed482ebb06b91d50, "PF SF"),
    ("adc", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 1, 0xed482ebb06b91d51, "SF"),
    ("adc", 64, 0xa49cd983b987302e, 0xaef558d9572c35af, 0, 0x5392325d10b365dd, "CF PF AF OF"),
    ("adc", 64, 0xa49cd983b987302e, 0xaef558d9572c35af, 1, 0x5392325d10b365de, "CF PF AF OF"),
    ("adc", 64, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("adc", 64, 0x0, 0x0, 1, 0x1, ""),
    ("adc", 64, 0x1, 0x1, 0, 0x2, ""),
    ("adc", 64, 0x1, 0x1, 1, 0x3, "PF"),
    ("adc", 64, 0xffffffffffffffff, 0x1, 0, 0x0, "CF PF AF ZF"),
    ("adc", 64, 0xffffffffffffffff, 0x1, 1, 0x1, "CF AF"),
    ("adc", 64, 0x1, 0xffffffffffffffff, 0, 0x0, "CF PF AF ZF"),
    ("adc", 64, 0x1, 0xffffffffffffffff, 1, 0x1, "CF AF"),
    ("adc", 64, 0xffffffffffffffff, 0xffffffffffffffff, 0, 0xfffffffffffffffe, "CF AF SF"),
    ("adc", 64, 0xffffffffffffffff, 0xffffffffffffffff, 1, 0xffffffffffffffff, "CF PF AF SF"),
    ("adc", 64, 0x7fffffffffffffff, 0x1, 0, 0x8000000000000000, "PF AF SF OF"),
    ("adc", 64, 0x7fffffffffffffff, 0x1, 1, 0x8000000000000001, "AF SF OF"),
    ("adc", 64, 0x8000000000000000, 0x8000000000000000, 0, 0x0, "CF PF ZF OF"),
    ("adc", 64, 0x8000000000000000, 0x8000000000000000, 1, 0x1, "CF OF"),
    ("adc", 64, 0x8000000000000000, 0x1, 0, 0x8000000000000001, "SF"),
    ("adc", 64, 0x8000000000000000, 0x1, 1, 0x8000000000000002, "SF"),
    ("adc", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 0, 0xfffffffffffffffe, "AF SF OF"),
    ("adc", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 1, 0xffffffffffffffff, "PF AF SF OF"),
    ("adc", 64, 0x8000000000000000, 0x7fffffffffffffff, 0, 0xffffffffffffffff, "PF SF"),
    ("adc", 64, 0x8000000000000000, 0x7fffffffffffffff, 1, 0x0, "CF PF AF ZF"),
    ("adc", 64, 0x7fffffffffffffff, 0x8000000000000000, 0, 0xffffffffffffffff, "PF SF"),
    ("adc", 64, 0x7fffffffffffffff, 0x8000000000000000, 1, 0x0, "CF PF AF ZF"),
    ("adc", 64, 0xf, 0x1, 0, 0x10, "AF"),
    ("adc", 64, 0xf, 0x1, 1, 0x11, "PF AF"),
    ("adc", 64, 0x10, 0x1, 0, 0x11, "PF"),
    ("adc", 64, 0x10, 0x1, 1, 0x12, "PF"),
    ("adc", 64, 0x0, 0x1, 0, 0x1, ""),
    ("adc", 64, 0x0, 0x1, 1, 0x2, ""),
    ("adc", 64, 0x123456789abcdef, 0xfedcba9876543210, 0, 0xffffffffffffffff, "PF SF"),
    ("adc", 64, 0x123456789abcdef, 0xfedcba9876543210, 1, 0x0, "CF PF AF ZF"),
    ("adc", 64, 0xfedcba9876543210, 0x123456789abcdef, 0, 0xffffffffffffffff, "PF SF"),
    ("adc", 64, 0xfedcba9876543210, 0x123456789abcdef, 1, 0x0, "CF PF AF ZF"),
    ("sub", 8, 0x85, 0xf6, 0, 0x8f, "CF AF SF"),
    ("sub", 8, 0x57, 0x14, 0, 0x43, ""),
    ("sub", 8, 0xec, 0xa9, 0, 0x43, ""),
    ("sub", 8, 0xb6, 0xac, 0, 0xa, "PF AF"),
    ("sub", 8, 0x97, 0x58, 0, 0x3f, "PF AF OF"),
    ("sub", 8, 0xab, 0x2, 0, 0xa9, "PF SF"),
    ("sub", 8, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("sub", 8, 0x1, 0x1, 0, 0x0, "PF ZF"),
    ("sub", 8, 0xff, 0x1, 0, 0xfe, "SF"),
    ("sub", 8, 0x1, 0xff, 0, 0x2, "CF AF"),
    ("sub", 8, 0xff, 0xff, 0, 0x0, "PF ZF"),
    ("sub", 8, 0x7f, 0x1, 0, 0x7e, "PF"),
    ("sub", 8, 0x80, 0x80, 0, 0x0, "PF ZF"),
    ("sub", 8, 0x80, 0x1, 0, 0x7f, "AF OF"),
    ("sub", 8, 0x7f, 0x7f, 0, 0x0, "PF ZF"),
    ("sub", 8, 0x80, 0x7f, 0, 0x1, "AF OF"),
    ("sub", 8, 0x7f, 0x80, 0, 0xff, "CF PF SF OF"),
    ("sub", 8, 0xf, 0x1, 0, 0xe, ""),
    ("sub", 8, 0x10, 0x1, 0, 0xf, "PF AF"),
    ("sub", 8, 0x0, 0x1, 0, 0xff, "CF PF AF SF"),
    ("sub", 8, 0x5a, 0xa7, 0, 0xb3, "CF SF OF"),
    ("sub", 8, 0xa7, 0x5a, 0, 0x4d, "PF AF OF"),
    ("sub", 16, 0x5d65, 0xbac3, 0, 0xa2a2, "CF SF OF"),
    ("sub", 16, 0x5944, 0xbbf3, 0, 0x9d51, "CF SF OF"),
    ("sub", 16, 0xa4aa, 0xa8d0, 0, 0xfbda, "CF SF"),
    ("sub", 16, 0x593a, 0xe25a, 0, 0x76e0, "CF"),
    ("sub", 16, 0x77f3, 0x86a5, 0, 0xf14e, "CF PF AF SF OF"),
    ("sub", 16, 0x7a32, 0x96c3, 0, 0xe36f, "CF PF AF SF OF"),
    ("sub", 16, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("sub", 16, 0x1, 0x1, 0, 0x0, "PF ZF"),
    ("sub", 16, 0xffff, 0x1, 0, 0xfffe, "SF"),
    ("sub", 16, 0x1, 0xffff, 0, 0x2, "CF AF"),
    ("sub", 16, 0xffff, 0xffff, 0, 0x0, "PF ZF"),
    ("sub", 16, 0x7fff, 0x1, 0, 0x7ffe, ""),
    ("sub", 16, 0x8000, 0x8000, 0, 0x0, "PF ZF"),
    ("sub", 16, 0x8000, 0x1, 0, 0x7fff, "PF AF OF"),
    ("sub", 16, 0x7fff, 0x7fff, 0, 0x0, "PF ZF"),
    ("sub", 16, 0x8000, 0x7fff, 0, 0x1, "AF OF"),
    ("sub", 16, 0x7fff, 0x8000, 0, 0xffff, "CF PF SF OF"),
    ("sub", 16, 0xf, 0x1, 0, 0xe, ""),
    ("sub", 16, 0x10, 0x1, 0, 0xf, "PF AF"),
    ("sub", 16, 0x0, 0x1, 0, 0xffff, "CF PF AF SF"),
    ("sub", 16, 0x1234, 0xfedc, 0, 0x1358, "CF AF"),
    ("sub", 16, 0xfedc, 0x1234, 0, 0xeca8, "SF"),
    ("sub", 32, 0x6300f7a1, 0xa637695b, 0, 0xbcc98e46, "CF AF SF OF"),
    ("sub", 32, 0xc8111a9b, 0x28cf3b2d, 0, 0x9f41df6e, "AF SF"),
    ("sub", 32, 0x7577e5ca, 0x488f7ebc, 0, 0x2ce8670e, "AF"),
    ("sub", 32, 0xe00f704, 0xe341caab, 0, 0x2abf2c59, "CF PF AF"),
    ("sub", 32, 0x30df2fd9, 0x4eb42ef1, 0, 0xe22b00e8, "CF PF SF"),
    ("sub", 32, 0x213fc927, 0x8c33d20d, 0, 0x950bf71a, "CF AF SF OF"),
    ("sub", 32, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("sub", 32, 0x1, 0x1, 0, 0x0, "PF ZF"),
    ("sub", 32, 0xffffffff, 0x1, 0, 0xfffffffe, "SF"),
    ("sub", 32, 0x1, 0xffffffff, 0, 0x2, "CF AF"),
    ("sub", 32, 0xffffffff, 0xffffffff, 0, 0x0, "PF ZF"),
    ("sub", 32, 0x7fffffff, 0x1, 0, 0x7ffffffe, ""),
    ("sub", 32, 0x80000000, 0x80000000, 0, 0x0, "PF ZF"),
    ("sub", 32, 0x80000000, 0x1, 0, 0x7fffffff, "PF AF OF"),
    ("sub", 32, 0x7fffffff, 0x7fffffff, 0, 0x0, "PF ZF"),
    ("sub", 32, 0x80000000, 0x7fffffff, 0, 0x1, "AF OF"),
    ("sub", 32, 0x7fffffff, 0x80000000, 0, 0xffffffff, "CF PF SF OF"),
    ("sub", 32, 0xf, 0x1, 0, 0xe, ""),
    ("sub", 32, 0x10, 0x1, 0, 0xf, "PF AF"),
    ("sub", 32, 0x0, 0x1, 0, 0xffffffff, "CF PF AF SF"),
    ("sub", 32, 0x12345678, 0x9abcdef0, 0, 0x77777788, "CF PF"),
    ("sub", 32, 0x9abcdef0, 0x12345678, 0, 0x88888878, "PF AF SF"),
    ("sub", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 0, 0x41e91b073125b04e, "PF AF OF"),
    ("sub", 64, 0x17e0c63d7b7febd5, 0xfe, 0, 0x17e0c63d7b7fead7, "PF AF"),
    ("sub", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 0, 0x4dda92e6e98e4efd, "AF OF"),
    ("sub", 64, 0x6384eeb3e56632e7, 0x8a, 0, 0x6384eeb3e566325d, "AF"),
    ("sub", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 0, 0x5c64dc7c7472d0f0, "CF PF"),
    ("sub", 64, 0xa49cd983b987302e, 0xaef558d9572c35af, 0, 0xf5a780aa625afa7f, "CF AF SF"),
    ("sub", 64, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("sub", 64, 0x1, 0x1, 0, 0x0, "PF ZF"),
    ("sub", 64, 0xffffffffffffffff, 0x1, 0, 0xfffffffffffffffe, "SF"),
    ("sub", 64, 0x1, 0xffffffffffffffff, 0, 0x2, "CF AF"),
    ("sub", 64, 0xffffffffffffffff, 0xffffffffffffffff, 0, 0x0, "PF ZF"),
    ("sub", 64, 0x7fffffffffffffff, 0x1, 0, 0x7ffffffffffffffe, ""),
    ("sub", 64, 0x8000000000000000, 0x8000000000000000, 0, 0x0, "PF ZF"),
    ("sub", 64, 0x8000000000000000, 0x1, 0, 0x7fffffffffffffff, "PF AF OF"),
    ("sub", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 0, 0x0, "PF ZF"),
    ("sub", 64, 0x8000000000000000, 0x7fffffffffffffff, 0, 0x1, "AF OF"),
    ("sub", 64, 0x7fffffffffffffff, 0x8000000000000000, 0, 0xffffffffffffffff, "CF PF SF OF"),
    ("sub", 64, 0xf, 0x1, 0, 0xe, ""),
    ("sub", 64, 0x10, 0x1, 0, 0xf, "PF AF"),
    ("sub", 64, 0x0, 0x1, 0, 0xffffffffffffffff, "CF PF AF SF"),
    ("sub", 64, 0x123456789abcdef, 0xfedcba9876543210, 0, 0x2468acf13579bdf, "CF"),
    ("sub", 64, 0xfedcba9876543210, 0x123456789abcdef, 0, 0xfdb97530eca86421, "PF AF SF"),
    ("sbb", 8, 0x85, 0xf6, 0, 0x8f, "CF AF SF"),
    ("sbb", 8, 0x85, 0xf6, 1, 0x8e, "CF PF AF SF"),
    ("sbb", 8, 0x57, 0x14, 0, 0x43, ""),
    ("sbb", 8, 0x57, 0x14, 1, 0x42, "PF"),
    ("sbb", 8, 0xec, 0xa9, 0, 0x43, ""),
    ("sbb", 8, 0xec, 0xa9, 1, 0x42, "PF"),
    ("sbb", 8, 0xb6, 0xac, 0, 0xa, "PF AF"),
    ("sbb", 8, 0xb6, 0xac, 1, 0x9, "PF AF"),
    ("sbb", 8, 0x97, 0x58, 0, 0x3f, "PF AF OF"),
    ("sbb", 8, 0x97, 0x58, 1, 0x3e, "AF OF"),
    ("sbb", 8, 0xab, 0x2, 0, 0xa9, "PF SF"),
    ("sbb", 8, 0xab, 0x2, 1, 0xa8, "SF"),
    ("sbb", 8, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("sbb", 8, 0x0, 0x0, 1, 0xff, "CF PF AF SF"),
    ("sbb", 8, 0x1, 0x1, 0, 0x0, "PF ZF"),
    ("sbb", 8, 0x1, 0x1, 1, 0xff, "CF PF AF SF"),
    ("sbb", 8, 0xff, 0x1, 0, 0xfe, "SF"),
    ("sbb", 8, 0xff, 0x1, 1, 0xfd, "SF"),
    ("sbb", 8, 0x1, 0xff, 0, 0x2, "CF AF"),
    ("sbb", 8, 0x1, 0xff, 1, 0x1, "CF AF"),
    ("sbb", 8, 0xff, 0xff, 0, 0x0, "PF ZF"),
    ("sbb", 8, 0xff, 0xff, 1, 0xff, "CF PF AF SF"),
    ("sbb", 8, 0x7f, 0x1, 0, 0x7e, "PF"),
    ("sbb", 8, 0x7f, 0x1, 1, 0x7d, "PF"),
    ("sbb", 8, 0x80, 0x80, 0, 0x0, "PF ZF"),
    ("sbb", 8, 0x80, 0x80, 1, 0xff, "CF PF AF SF"),
    ("sbb", 8, 0x80, 0x1, 0, 0x7f, "AF OF"),
    ("sbb", 8, 0x80, 0x1, 1, 0x7e, "PF AF OF"),
    ("sbb", 8, 0x7f, 0x7f, 0, 0x0, "PF ZF"),
    ("sbb", 8, 0x7f, 0x7f, 1, 0xff, "CF PF AF SF"),
    ("sbb", 8, 0x80, 0x7f, 0, 0x1, "AF OF"),
    ("sbb", 8, 0x80, 0x7f, 1, 0x0, "PF AF ZF OF"),
    ("sbb", 8, 0x7f, 0x80, 0, 0xff, "CF PF SF OF"),
    ("sbb", 8, 0x7f, 0x80, 1, 0xfe, "CF SF OF"),
    ("sbb", 8, 0xf, 0x1, 0, 0xe, ""),
    ("sbb", 8, 0xf, 0x1, 1, 0xd, ""),
    ("sbb", 8, 0x10, 0x1, 0, 0xf, "PF AF"),
    ("sbb", 8, 0x10, 0x1, 1, 0xe, "AF"),
    ("sbb", 8, 0x0, 0x1, 0, 0xff, "CF PF AF SF"),
    ("sbb", 8, 0x0, 0x1, 1, 0xfe, "CF AF SF"),
    ("sbb", 8, 0x5a, 0xa7, 0, 0xb3, "CF SF OF"),
    ("sbb", 8, 0x5a, 0xa7, 1, 0xb2, "CF PF SF OF"),
    ("sbb", 8, 0xa7, 0x5a, 0, 0x4d, "PF AF OF"),
    ("sbb", 8, 0xa7, 0x5a, 1, 0x4c, "AF OF"),
    ("sbb", 16, 0x5d65, 0xbac3, 0, 0xa2a2, "CF SF OF"),
    ("sbb", 16, 0x5d65, 0xbac3, 1, 0xa2a1, "CF SF OF"),
    ("sbb", 16, 0x5944, 0xbbf3, 0, 0x9d51, "CF SF OF"),
    ("sbb", 16, 0x5944, 0xbbf3, 1, 0x9d50, "CF PF SF OF"),
    ("sbb", 16, 0xa4aa, 0xa8d0, 0, 0xfbda, "CF SF"),
    ("sbb", 16, 0xa4aa, 0xa8d0, 1, 0xfbd9, "CF SF"),
    ("sbb", 16, 0x593a, 0xe25a, 0, 0x76e0, "CF"),
    ("sbb", 16, 0x593a, 0xe25a, 1, 0x76df, "CF AF"),
    ("sbb", 16, 0x77f3, 0x86a5, 0, 0xf14e, "CF PF AF SF OF"),
    ("sbb", 16, 0x77f3, 0x86a5, 1, 0xf14d, "CF PF AF SF OF"),
    ("sbb", 16, 0x7a32, 0x96c3, 0, 0xe36f, "CF PF AF SF OF"),
    ("sbb", 16, 0x7a32, 0x96c3, 1, 0xe36e, "CF AF SF OF"),
    ("sbb", 16, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("sbb", 16, 0x0, 0x0, 1, 0xffff, "CF PF AF SF"),
    ("sbb", 16, 0x1, 0x1, 0, 0x0, "PF ZF"),
    ("sbb", 16, 0x1, 0x1, 1, 0xffff, "CF PF AF SF"),
    ("sbb", 16, 0xffff, 0x1, 0, 0xfffe, "SF"),
    ("sbb", 16, 0xffff, 0x1, 1, 0xfffd, "SF"),
    ("sbb", 16, 0x1, 0xffff, 0, 0x2, "CF AF"),
    ("sbb", 16, 0x1, 0xffff, 1, 0x1, "CF AF"),
    ("sbb", 16, 0xffff, 0xffff, 0, 0x0, "PF ZF"),
    ("sbb", 16, 0xffff, 0xffff, 1, 0xffff, "CF PF AF SF"),
    ("sbb", 16, 0x7fff, 0x1, 0, 0x7ffe, ""),
    ("sbb", 16, 0x7fff, 0x1, 1, 0x7ffd, ""),
    ("sbb", 16, 0x8000, 0x8000, 0, 0x0, "PF ZF"),
    ("sbb", 16, 0x8000, 0x8000, 1, 0xffff, "CF PF AF SF"),
    ("sbb", 16, 0x8000, 0x1, 0, 0x7fff, "PF AF OF"),
    ("sbb", 16, 0x8000, 0x1, 1, 0x7ffe, "AF OF"),
    ("sbb", 16, 0x7fff, 0x7fff, 0, 0x0, "PF ZF"),
    ("sbb", 16, 0x7fff, 0x7fff, 1, 0xffff, "CF PF AF SF"),
    ("sbb", 16, 0x8000, 0x7fff, 0, 0x1, "AF OF"),
    ("sbb", 16, 0x8000, 0x7fff, 1, 0x0, "PF AF ZF OF"),
    ("sbb", 16, 0x7fff, 0x8000, 0, 0xffff, "CF PF SF OF"),
    ("sbb", 16, 0x7fff, 0x8000, 1, 0xfffe, "CF SF OF"),
    ("sbb", 16, 0xf, 0x1, 0, 0xe, ""),
    ("sbb", 16, 0xf, 0x1, 1, 0xd, ""),
    ("sbb", 16, 0x10, 0x1, 0, 0xf, "PF AF"),
    ("sbb", 16, 0x10, 0x1, 1, 0xe, "AF"),
    ("sbb", 16, 0x0, 0x1, 0, 0xffff, "CF PF AF SF"),
    ("sbb", 16, 0x0, 0x1, 1, 0xfffe, "CF AF SF"),
    ("sbb", 16, 0x1234, 0xfedc, 0, 0x1358, "CF AF"),
    ("sbb", 16, 0x1234, 0xfedc, 1, 0x1357, "CF AF"),
    ("sbb", 16, 0xfedc, 0x1234, 0, 0xeca8, "SF"),
    ("sbb", 16, 0xfedc, 0x1234, 1, 0xeca7, "SF"),
    ("sbb", 32, 0x6300f7a1, 0xa637695b, 0, 0xbcc98e46, "CF AF SF OF"),
    ("sbb", 32, 0x6300f7a1, 0xa637695b, 1, 0xbcc98e45, "CF AF SF OF"),
    ("sbb", 32, 0xc8111a9b, 0x28cf3b2d, 0, 0x9f41df6e, "AF SF"),
    ("sbb", 32, 0xc8111a9b, 0x28cf3b2d, 1, 0x9f41df6d, "AF SF"),
    ("sbb", 32, 0x7577e5ca, 0x488f7ebc, 0, 0x2ce8670e, "AF"),
    ("sbb", 32, 0x7577e5ca, 0x488f7ebc, 1, 0x2ce8670d, "AF"),
    ("sbb", 32, 0xe00f704, 0xe341caab, 0, 0x2abf2c59, "CF PF AF"),
    ("sbb", 32, 0xe00f704, 0xe341caab, 1, 0x2abf2c58, "CF AF"),
    ("sbb", 32, 0x30df2fd9, 0x4eb42ef1, 0, 0xe22b00e8, "CF PF SF"),
    ("sbb", 32, 0x30df2fd9, 0x4eb42ef1, 1, 0xe22b00e7, "CF PF SF"),
    ("sbb", 32, 0x213fc927, 0x8c33d20d, 0, 0x950bf71a, "CF AF SF OF"),
    ("sbb", 32, 0x213fc927, 0x8c33d20d, 1, 0x950bf719, "CF AF SF OF"),
    ("sbb", 32, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("sbb", 32, 0x0, 0x0, 1, 0xffffffff, "CF PF AF SF"),
    ("sbb", 32, 0x1, 0x1, 0, 0x0, "PF ZF"),
    ("sbb", 32, 0x1, 0x1, 1, 0xffffffff, "CF PF AF SF"),
    ("sbb", 32, 0xffffffff, 0x1, 0, 0xfffffffe, "SF"),
    ("sbb", 32, 0xffffffff, 0x1, 1, 0xfffffffd, "SF"),
    ("sbb", 32, 0x1, 0xffffffff, 0, 0x2, "CF AF"),
    ("sbb", 32, 0x1, 0xffffffff, 1, 0x1, "CF AF"),
    ("sbb", 32, 0xffffffff, 0xffffffff, 0, 0x0, "PF ZF"),
    ("sbb", 32, 0xffffffff, 0xffffffff, 1, 0xffffffff, "CF PF AF SF"),
    ("sbb", 32, 0x7fffffff, 0x1, 0, 0x7ffffffe, ""),
    ("sbb", 32, 0x7fffffff, 0x1, 1, 0x7ffffffd, ""),
    ("sbb", 32, 0x80000000, 0x80000000, 0, 0x0, "PF ZF"),
    ("sbb", 32, 0x80000000, 0x80000000, 1, 0xffffffff, "CF PF AF SF"),
    ("sbb", 32, 0x80000000, 0x1, 0, 0x7fffffff, "PF AF OF"),
    ("sbb", 32, 0x80000000, 0x1, 1, 0x7ffffffe, "AF OF"),
    ("sbb", 32, 0x7fffffff, 0x7fffffff, 0, 0x0, "PF ZF"),
    ("sbb", 32, 0x7fffffff, 0x7fffffff, 1, 0xffffffff, "CF PF AF SF"),
    ("sbb", 32, 0x80000000, 0x7fffffff, 0, 0x1, "AF OF"),
    ("sbb", 32, 0x80000000, 0x7fffffff, 1, 0x0, "PF AF ZF OF"),
    ("sbb", 32, 0x7fffffff, 0x80000000, 0, 0xffffffff, "CF PF SF OF"),
    ("sbb", 32, 0x7fffffff, 0x80000000, 1, 0xfffffffe, "CF SF OF"),
    ("sbb", 32, 0xf, 0x1, 0, 0xe, ""),
    ("sbb", 32, 0xf, 0x1, 1, 0xd, ""),
    ("sbb", 32, 0x10, 0x1, 0, 0xf, "PF AF"),
    ("sbb", 32, 0x10, 0x1, 1, 0xe, "AF"),
    ("sbb", 32, 0x0, 0x1, 0, 0xffffffff, "CF PF AF SF"),
    ("sbb", 32, 0x0, 0x1, 1, 0xfffffffe, "CF AF SF"),
    ("sbb", 32, 0x12345678, 0x9abcdef0, 0, 0x77777788, "CF PF"),
    ("sbb", 32, 0x12345678, 0x9abcdef0, 1, 0x77777787, "CF PF"),
    ("sbb", 32, 0x9abcdef0, 0x12345678, 0, 0x88888878, "PF AF SF"),
    ("sbb", 32, 0x9abcdef0, 0x12345678, 1, 0x88888877, "PF AF SF"),
    ("sbb", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 0, 0x41e91b073125b04e, "PF AF OF"),
    ("sbb", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 1, 0x41e91b073125b04d, "PF AF OF"),
    ("sbb", 64, 0x17e0c63d7b7febd5, 0xfe, 0, 0x17e0c63d7b7fead7, "PF AF"),
    ("sbb", 64, 0x17e0c63d7b7febd5, 0xfe, 1, 0x17e0c63d7b7fead6, "AF"),
    ("sbb", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 0, 0x4dda92e6e98e4efd, "AF OF"),
    ("sbb", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 1, 0x4dda92e6e98e4efc, "PF AF OF"),
    ("sbb", 64, 0x6384eeb3e56632e7, 0x8a, 0, 0x6384eeb3e566325d, "AF"),
    ("sbb", 64, 0x6384eeb3e56632e7, 0x8a, 1, 0x6384eeb3e566325c, "PF AF"),
    ("sbb", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 0, 0x5c64dc7c7472d0f0, "CF PF"),
    ("sbb", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 1, 0x5c64dc7c7472d0ef, "CF AF"),
    ("sbb", 64, 0xa49cd983b987302e, 0xaef558d9572c35af, 0, 0xf5a780aa625afa7f, "CF AF SF"),
    ("sbb", 64, 0xa49cd983b987302e, 0xaef558d9572c35af, 1, 0xf5a780aa625afa7e, "CF PF AF SF"),
    ("sbb", 64, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("sbb", 64, 0x0, 0x0, 1, 0xffffffffffffffff, "CF PF AF SF"),
    ("sbb", 64, 0x1, 0x1, 0, 0x0, "PF ZF"),
    ("sbb", 64, 0x1, 0x1, 1, 0xffffffffffffffff, "CF PF AF SF"),
    ("sbb", 64, 0xffffffffffffffff, 0x1, 0, 0xfffffffffffffffe, "SF"),
    ("sbb", 64, 0xffffffffffffffff, 0x1, 1, 0xfffffffffffffffd, "SF"),
    ("sbb", 64, 0x1, 0xffffffffffffffff, 0, 0x2, "CF AF"),
    ("sbb", 64, 0x1, 0xffffffffffffffff, 1, 0x1, "CF AF"),
    ("sbb", 64, 0xffffffffffffffff, 0xffffffffffffffff, 0, 0x0, "PF ZF"),
    ("sbb", 64, 0xffffffffffffffff, 0xffffffffffffffff, 1, 0xffffffffffffffff, "CF PF AF SF"),
    ("sbb", 64, 0x7fffffffffffffff, 0x1, 0, 0x7ffffffffffffffe, ""),
    ("sbb", 64, 0x7fffffffffffffff, 0x1, 1, 0x7ffffffffffffffd, ""),
    ("sbb", 64, 0x8000000000000000, 0x8000000000000000, 0, 0x0, "PF ZF"),
    ("sbb", 64, 0x8000000000000000, 0x8000000000000000, 1, 0xffffffffffffffff, "CF PF AF SF"),
    ("sbb", 64, 0x8000000000000000, 0x1, 0, 0x7fffffffffffffff, "PF AF OF"),
    ("sbb", 64, 0x8000000000000000, 0x1, 1, 0x7ffffffffffffffe, "AF OF"),
    ("sbb", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 0, 0x0, "PF ZF"),
    ("sbb", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 1, 0xffffffffffffffff, "CF PF AF SF"),
    ("sbb", 64, 0x8000000000000000, 0x7fffffffffffffff, 0, 0x1, "AF OF"),
    ("sbb", 64, 0x8000000000000000, 0x7fffffffffffffff, 1, 0x0, "PF AF ZF OF"),
    ("sbb", 64, 0x7fffffffffffffff, 0x8000000000000000, 0, 0xffffffffffffffff, "CF PF SF OF"),
    ("sbb", 64, 0x7fffffffffffffff, 0x8000000000000000, 1, 0xfffffffffffffffe, "CF SF OF"),
    ("sbb", 64, 0xf, 0x1, 0, 0xe, ""),
    ("sbb", 64, 0xf, 0x1, 1, 0xd, ""),
    ("sbb", 64, 0x10, 0x1, 0, 0xf, "PF AF"),
    ("sbb", 64, 0x10, 0x1, 1, 0xe, "AF"),
    ("sbb", 64, 0x0, 0x1, 0, 0xffffffffffffffff, "CF PF AF SF"),
    ("sbb", 64, 0x0, 0x1, 1, 0xfffffffffffffffe, "CF AF SF"),
    ("sbb", 64, 0x123456789abcdef, 0xfedcba9876543210, 0, 0x2468acf13579bdf, "CF"),
    ("sbb", 64, 0x123456789abcdef, 0xfedcba9876543210, 1, 0x2468acf13579bde, "CF PF"),
    ("sbb", 64, 0xfedcba9876543210, 0x123456789abcdef, 0, 0xfdb97530eca86421, "PF AF SF"),
    ("sbb", 64, 0xfedcba9876543210, 0x123456789abcdef, 1, 0xfdb97530eca86420, "AF SF"),
    ("cmp", 8, 0x85, 0xf6, 0, 0x85, "CF AF SF"),
    ("cmp", 8, 0x57, 0x14, 0, 0x57, ""),
    ("cmp", 8, 0xec, 0xa9, 0, 0xec, ""),
    ("cmp", 8, 0xb6, 0xac, 0, 0xb6, "PF AF"),
    ("cmp", 8, 0x97, 0x58, 0, 0x97, "PF AF OF"),
    ("cmp", 8, 0xab, 0x2, 0, 0xab, "PF SF"),
    ("cmp", 8, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("cmp", 8, 0x1, 0x1, 0, 0x1, "PF ZF"),
    ("cmp", 8, 0xff, 0x1, 0, 0xff, "SF"),
    ("cmp", 8, 0x1, 0xff, 0, 0x1, "CF AF"),
    ("cmp", 8, 0xff, 0xff, 0, 0xff, "PF ZF"),
    ("cmp", 8, 0x7f, 0x1, 0, 0x7f, "PF"),
    ("cmp", 8, 0x80, 0x80, 0, 0x80, "PF ZF"),
    ("cmp", 8, 0x80, 0x1, 0, 0x80, "AF OF"),
    ("cmp", 8, 0x7f, 0x7f, 0, 0x7f, "PF ZF"),
    ("cmp", 8, 0x80, 0x7f, 0, 0x80, "AF OF"),
    ("cmp", 8, 0x7f, 0x80, 0, 0x7f, "CF PF SF OF"),
    ("cmp", 8, 0xf, 0x1, 0, 0xf, ""),
    ("cmp", 8, 0x10, 0x1, 0, 0x10, "PF AF"),
    ("cmp", 8, 0x0, 0x1, 0, 0x0, "CF PF AF SF"),
    ("cmp", 8, 0x5a, 0xa7, 0, 0x5a, "CF SF OF"),
    ("cmp", 8, 0xa7, 0x5a, 0, 0xa7, "PF AF OF"),
    ("cmp", 16, 0x5d65, 0xbac3, 0, 0x5d65, "CF SF OF"),
    ("cmp", 16, 0x5944, 0xbbf3, 0, 0x5944, "CF SF OF"),
    ("cmp", 16, 0xa4aa, 0xa8d0, 0, 0xa4aa, "CF SF"),
    ("cmp", 16, 0x593a, 0xe25a, 0, 0x593a, "CF"),
    ("cmp", 16, 0x77f3, 0x86a5, 0, 0x77f3, "CF PF AF SF OF"),
    ("cmp", 16, 0x7a32, 0x96c3, 0, 0x7a32, "CF PF AF SF OF"),
    ("cmp", 16, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("cmp", 16, 0x1, 0x1, 0, 0x1, "PF ZF"),
    ("cmp", 16, 0xffff, 0x1, 0, 0xffff, "SF"),
    ("cmp", 16, 0x1, 0xffff, 0, 0x1, "CF AF"),
    ("cmp", 16, 0xffff, 0xffff, 0, 0xffff, "PF ZF"),
    ("cmp", 16, 0x7fff, 0x1, 0, 0x7fff, ""),
    ("cmp", 16, 0x8000, 0x8000, 0, 0x8000, "PF ZF"),
    ("cmp", 16, 0x8000, 0x1, 0, 0x8000, "PF AF OF"),
    ("cmp", 16, 0x7fff, 0x7fff, 0, 0x7fff, "PF ZF"),
    ("cmp", 16, 0x8000, 0x7fff, 0, 0x8000, "AF OF"),
    ("cmp", 16, 0x7fff, 0x8000, 0, 0x7fff, "CF PF SF OF"),
    ("cmp", 16, 0xf, 0x1, 0, 0xf, ""),
    ("cmp", 16, 0x10, 0x1, 0, 0x10, "PF AF"),
    ("cmp", 16, 0x0, 0x1, 0, 0x0, "CF PF AF SF"),
    ("cmp", 16, 0x1234, 0xfedc, 0, 0x1234, "CF AF"),
    ("cmp", 16, 0xfedc, 0x1234, 0, 0xfedc, "SF"),
    ("cmp", 32, 0x6300f7a1, 0xa637695b, 0, 0x6300f7a1, "CF AF SF OF"),
    ("cmp", 32, 0xc8111a9b, 0x28cf3b2d, 0, 0xc8111a9b, "AF SF"),
    ("cmp", 32, 0x7577e5ca, 0x488f7ebc, 0, 0x7577e5ca, "AF"),
    ("cmp", 32, 0xe00f704, 0xe341caab, 0, 0xe00f704, "CF PF AF"),
    ("cmp", 32, 0x30df2fd9, 0x4eb42ef1, 0, 0x30df2fd9, "CF PF SF"),
    ("cmp", 32, 0x213fc927, 0x8c33d20d, 0, 0x213fc927, "CF AF SF OF"),
    ("cmp", 32, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("cmp", 32, 0x1, 0x1, 0, 0x1, "PF ZF"),
    ("cmp", 32, 0xffffffff, 0x1, 0, 0xffffffff, "SF"),
    ("cmp", 32, 0x1, 0xffffffff, 0, 0x1, "CF AF"),
    ("cmp", 32, 0xffffffff, 0xffffffff, 0, 0xffffffff, "PF ZF"),
    ("cmp", 32, 0x7fffffff, 0x1, 0, 0x7fffffff, ""),
    ("cmp", 32, 0x80000000, 0x80000000, 0, 0x80000000, "PF ZF"),
    ("cmp", 32, 0x80000000, 0x1, 0, 0x80000000, "PF AF OF"),
    ("cmp", 32, 0x7fffffff, 0x7fffffff, 0, 0x7fffffff, "PF ZF"),
    ("cmp", 32, 0x80000000, 0x7fffffff, 0, 0x80000000, "AF OF"),
    ("cmp", 32, 0x7fffffff, 0x80000000, 0, 0x7fffffff, "CF PF SF OF"),
    ("cmp", 32, 0xf, 0x1, 0, 0xf, ""),
    ("cmp", 32, 0x10, 0x1, 0, 0x10, "PF AF"),
    ("cmp", 32, 0x0, 0x1, 0, 0x0, "CF PF AF SF"),
    ("cmp", 32, 0x12345678, 0x9abcdef0, 0, 0x12345678, "CF PF"),
    ("cmp", 32, 0x9abcdef0, 0x12345678, 0, 0x9abcdef0, "PF AF SF"),
    ("cmp", 64, 0x9fe55bb83f96e2eb, 0x5dfc40b10e71329d, 0, 0x9fe55bb83f96e2eb, "PF AF OF"),
    ("cmp", 64, 0x17e0c63d7b7febd5, 0xfe, 0, 0x17e0c63d7b7febd5, "PF AF"),
    ("cmp", 64, 0xc3d1df6348f3fa23, 0x75f74c7c5f65ab26, 0, 0xc3d1df6348f3fa23, "AF OF"),
    ("cmp", 64, 0x6384eeb3e56632e7, 0x8a, 0, 0x6384eeb3e56632e7, "AF"),
    ("cmp", 64, 0x24d6859bbd95f720, 0xc871a91f49232630, 0, 0x24d6859bbd95f720, "CF PF"),
    ("cmp", 64, 0xa49cd983b987302e, 0xaef558d9572c35af, 0, 0xa49cd983b987302e, "CF AF SF"),
    ("cmp", 64, 0x0, 0x0, 0, 0x0, "PF ZF"),
    ("cmp", 64, 0x1, 0x1, 0, 0x1, "PF ZF"),
    ("cmp", 64, 0xffffffffffffffff, 0x1, 0, 0xffffffffffffffff, "SF"),
    ("cmp", 64, 0x1, 0xffffffffffffffff, 0, 0x1, "CF AF"),
    ("cmp", 64, 0xffffffffffffffff, 0xffffffffffffffff, 0, 0xffffffffffffffff, "PF ZF"),
    ("cmp", 64, 0x7fffffffffffffff, 0x1, 0, 0x7fffffffffffffff, ""),
    ("cmp", 64, 0x8000000000000000, 0x8000000000000000, 0, 0x8000000000000000, "PF ZF"),
    ("cmp", 64, 0x8000000000000000, 0x1, 0, 0x8000000000000000, "PF AF OF"),
    ("cmp", 64, 0x7fffffffffffffff, 0x7fffffffffffffff, 0, 0x7fffffffffffffff, "PF ZF"),
    ("cmp", 64, 0x8000000000000000, 0x7fffffffffffffff, 0, 0x8000000000000000, "AF OF"),
    ("cmp", 64, 0x7fffffffffffffff, 0x8000000000000000, 0, 0x7fffffffffffffff, "CF PF SF OF"),
    ("cmp", 64, 0xf, 0x1, 0, 0xf, ""),
    ("cmp", 64, 0x10, 0x1, 0, 0x10, "PF AF"),
    ("cmp", 64, 0x0, 0x1, 0, 0x0, "CF PF AF SF"),
    ("cmp", 64, 0x123456789abcdef, 0xfedcba9876543210, 0, 0x123456789abcdef, "CF"),
    ("cmp", 64, 0xfedcba9876543210, 0x123456789abcdef, 0, 0xfedcba9876543210, "PF AF SF"),
]


def _id(row):
    return f"{row[0]}{row[1]}-{row[2]:#x}-{row[3]:#x}-c{row[4]}"


@pytest.mark.parametrize("row", BINOPS, ids=[_id(r) for r in BINOPS])
def test_binop_reg_reg(row):
    op, size, a, b, cf, res, fl = row
    exp = expect_flags(fl)
    d, s = REG[size]
    ra = (HI_A & ~mask(size)) | a
    rb = (HI_B & ~mask(size)) | b
    emu = run_code(f"{op} {d}, {s}", regs={"rax": ra, "rbx": rb},
                   flags=inverted(exp, cf if op in ("adc", "sbb") else None))
    expect_rax = ra if op == "cmp" else merge(ra, res, size)
    assert emu.reg_read("rax") == expect_rax
    assert emu.reg_read("rbx") == rb
    assert_flags(emu, exp)


SUBSET = BINOPS[::3]


@pytest.mark.parametrize("row", SUBSET, ids=[_id(r) for r in SUBSET])
def test_binop_mem_dest(row):
    op, size, a, b, cf, res, fl = row
    exp = expect_flags(fl)
    s = REG[size][1]
    nb = size // 8
    emu = run_code(f"{op} {SIZE_KW[size]} [rdi+8], {s}",
                   regs={"rdi": DATA - 8, "rbx": b}, mem={DATA: a.to_bytes(nb, "little") + b"\x5a"},
                   flags=inverted(exp, cf if op in ("adc", "sbb") else None))
    stored = int.from_bytes(emu.mem_read(DATA, nb), "little")
    assert stored == (a if op == "cmp" else res)
    assert emu.mem_read(DATA + nb, 1) == b"\x5a"
    assert_flags(emu, exp)


@pytest.mark.parametrize("row", BINOPS[1::3], ids=[_id(r) for r in BINOPS[1::3]])
def test_binop_reg_mem(row):
    op, size, a, b, cf, res, fl = row
    exp = expect_flags(fl)
    d = REG[size][0]
    emu = run_code(f"{op} {d}, [rel val]\nhlt\nval: d{'bwdq'[[8, 16, 32, 64].index(size)]} {b:#x}",
                   regs={"rax": a}, flags=inverted(exp, cf if op in ("adc", "sbb") else None))
    assert emu.reg_read(d) == (a if op == "cmp" else res)
    assert_flags(emu, exp)


def _imm_ok(size, b):
    if size < 64:
        return True
    return b < 0x80000000 or b >= 0xFFFFFFFF80000000


IMM = [r for r in BINOPS[2::2] if _imm_ok(r[1], r[3])]


@pytest.mark.parametrize("i", range(len(IMM)), ids=[_id(r) for r in IMM])
def test_binop_imm(i):
    """odd rows use the accumulator short forms (04/05/...), even rows a ModRM register."""
    op, size, a, b, cf, res, fl = IMM[i]
    dest = "acc" if i % 2 else "other"
    exp = expect_flags(fl)
    imm = b - (1 << 64) if (size == 64 and b >> 63) else b
    reg = REG[size][0] if dest == "acc" else {8: "dl", 16: "dx", 32: "edx", 64: "rdx"}[size]
    emu = run_code(f"{op} {reg}, {imm}", regs={"rax": a, "rdx": a},
                   flags=inverted(exp, cf if op in ("adc", "sbb") else None))
    assert emu.reg_read(reg) == (a if op == "cmp" else res)
    assert_flags(emu, exp)


def _fits_imm8(size, b):
    sb = b - (1 << size) if b >> (size - 1) else b
    return size > 8 and -128 <= sb <= 127


IMM8 = [r for r in BINOPS if _fits_imm8(r[1], r[3])]


@pytest.mark.parametrize("row", IMM8, ids=[_id(r) for r in IMM8])
def test_binop_imm8_sign_extended(row):
    """83 /x ib form: imm8 sign-extended to the operand size."""
    op, size, a, b, cf, res, fl = row
    sb = b - (1 << size) if b >> (size - 1) else b
    exp = expect_flags(fl)
    reg = {16: "dx", 32: "edx", 64: "rdx"}[size]
    enc = {16: [0x66, 0x83], 32: [0x83], 64: [0x48, 0x83]}[size]
    sub = {"add": 0, "adc": 2, "sbb": 3, "sub": 5, "cmp": 7}[op]
    byts = enc + [0xC0 | (sub << 3) | 2, sb & 0xFF]
    emu = run_code("db " + ",".join(map(str, byts)), regs={"rdx": a},
                   flags=inverted(exp, cf if op in ("adc", "sbb") else None))
    assert emu.reg_read(reg) == (a if op == "cmp" else res)
    assert_flags(emu, exp)


# 32-bit and 16-bit code: operand sizes 8/16/32 (0x66 selects the other size)
LEGACY = [r for r in BINOPS[::4] if r[1] <= 32]


@pytest.mark.parametrize("mode", [16, 32])
@pytest.mark.parametrize("row", LEGACY, ids=[_id(r) for r in LEGACY])
def test_binop_legacy_modes(row, mode):
    op, size, a, b, cf, res, fl = row
    exp = expect_flags(fl)
    d, s = REG[size]
    emu = run_code(f"{op} {d}, {s}", mode=mode, regs={"eax": 0x99999999 & ~mask(size) | a, "ebx": b},
                   flags=inverted(exp, cf if op in ("adc", "sbb") else None))
    expect = 0x99999999 & ~mask(size) | (a if op == "cmp" else res)
    assert emu.reg_read("eax") == expect
    assert_flags(emu, exp, mode=mode)


# (op, size, a, carry_in, result, flags set after) -- INC/DEC keep CF
UNOPS = [
    ("inc", 8, 0x0, 0, 0x1, ""),
    ("inc", 8, 0x0, 1, 0x1, ""),
    ("inc", 8, 0x1, 0, 0x2, ""),
    ("inc", 8, 0x1, 1, 0x2, ""),
    ("inc", 8, 0xff, 0, 0x0, "PF AF ZF"),
    ("inc", 8, 0xff, 1, 0x0, "PF AF ZF"),
    ("inc", 8, 0x7f, 0, 0x80, "AF SF OF"),
    ("inc", 8, 0x7f, 1, 0x80, "AF SF OF"),
    ("inc", 8, 0x80, 0, 0x81, "PF SF"),
    ("inc", 8, 0x80, 1, 0x81, "PF SF"),
    ("inc", 8, 0xf, 0, 0x10, "AF"),
    ("inc", 8, 0xf, 1, 0x10, "AF"),
    ("inc", 8, 0x10, 0, 0x11, "PF"),
    ("inc", 8, 0x10, 1, 0x11, "PF"),
    ("inc", 8, 0x5a, 0, 0x5b, ""),
    ("inc", 8, 0x5a, 1, 0x5b, ""),
    ("inc", 8, 0xa7, 0, 0xa8, "SF"),
    ("inc", 8, 0xa7, 1, 0xa8, "SF"),
    ("inc", 16, 0x0, 0, 0x1, ""),
    ("inc", 16, 0x0, 1, 0x1, ""),
    ("inc", 16, 0x1, 0, 0x2, ""),
    ("inc", 16, 0x1, 1, 0x2, ""),
    ("inc", 16, 0xffff, 0, 0x0, "PF AF ZF"),
    ("inc", 16, 0xffff, 1, 0x0, "PF AF ZF"),
    ("inc", 16, 0x7fff, 0, 0x8000, "PF AF SF OF"),
    ("inc", 16, 0x7fff, 1, 0x8000, "PF AF SF OF"),
    ("inc", 16, 0x8000, 0, 0x8001, "SF"),
    ("inc", 16, 0x8000, 1, 0x8001, "SF"),
    ("inc", 16, 0xf, 0, 0x10, "AF"),
    ("inc", 16, 0xf, 1, 0x10, "AF"),
    ("inc", 16, 0x10, 0, 0x11, "PF"),
    ("inc", 16, 0x10, 1, 0x11, "PF"),
    ("inc", 16, 0x1234, 0, 0x1235, "PF"),
    ("inc", 16, 0x1234, 1, 0x1235, "PF"),
    ("inc", 16, 0xfedc, 0, 0xfedd, "PF SF"),
    ("inc", 16, 0xfedc, 1, 0xfedd, "PF SF"),
    ("inc", 32, 0x0, 0, 0x1, ""),
    ("inc", 32, 0x0, 1, 0x1, ""),
    ("inc", 32, 0x1, 0, 0x2, ""),
    ("inc", 32, 0x1, 1, 0x2, ""),
    ("inc", 32, 0xffffffff, 0, 0x0, "PF AF ZF"),
    ("inc", 32, 0xffffffff, 1, 0x0, "PF AF ZF"),
    ("inc", 32, 0x7fffffff, 0, 0x80000000, "PF AF SF OF"),
    ("inc", 32, 0x7fffffff, 1, 0x80000000, "PF AF SF OF"),
    ("inc", 32, 0x80000000, 0, 0x80000001, "SF"),
    ("inc", 32, 0x80000000, 1, 0x80000001, "SF"),
    ("inc", 32, 0xf, 0, 0x10, "AF"),
    ("inc", 32, 0xf, 1, 0x10, "AF"),
    ("inc", 32, 0x10, 0, 0x11, "PF"),
    ("inc", 32, 0x10, 1, 0x11, "PF"),
    ("inc", 32, 0x12345678, 0, 0x12345679, ""),
    ("inc", 32, 0x12345678, 1, 0x12345679, ""),
    ("inc", 32, 0x9abcdef0, 0, 0x9abcdef1, "SF"),
    ("inc", 32, 0x9abcdef0, 1, 0x9abcdef1, "SF"),
    ("inc", 64, 0x0, 0, 0x1, ""),
    ("inc", 64, 0x0, 1, 0x1, ""),
    ("inc", 64, 0x1, 0, 0x2, ""),
    ("inc", 64, 0x1, 1, 0x2, ""),
    ("inc", 64, 0xffffffffffffffff, 0, 0x0, "PF AF ZF"),
    ("inc", 64, 0xffffffffffffffff, 1, 0x0, "PF AF ZF"),
    ("inc", 64, 0x7fffffffffffffff, 0, 0x8000000000000000, "PF AF SF OF"),
    ("inc", 64, 0x7fffffffffffffff, 1, 0x8000000000000000, "PF AF SF OF"),
    ("inc", 64, 0x8000000000000000, 0, 0x8000000000000001, "SF"),
    ("inc", 64, 0x8000000000000000, 1, 0x8000000000000001, "SF"),
    ("inc", 64, 0xf, 0, 0x10, "AF"),
    ("inc", 64, 0xf, 1, 0x10, "AF"),
    ("inc", 64, 0x10, 0, 0x11, "PF"),
    ("inc", 64, 0x10, 1, 0x11, "PF"),
    ("inc", 64, 0x123456789abcdef, 0, 0x123456789abcdf0, "PF AF"),
    ("inc", 64, 0x123456789abcdef, 1, 0x123456789abcdf0, "PF AF"),
    ("inc", 64, 0xfedcba9876543210, 0, 0xfedcba9876543211, "PF SF"),
    ("inc", 64, 0xfedcba9876543210, 1, 0xfedcba9876543211, "PF SF"),
    ("dec", 8, 0x0, 0, 0xff, "PF AF SF"),
    ("dec", 8, 0x0, 1, 0xff, "PF AF SF"),
    ("dec", 8, 0x1, 0, 0x0, "PF ZF"),
    ("dec", 8, 0x1, 1, 0x0, "PF ZF"),
    ("dec", 8, 0xff, 0, 0xfe, "SF"),
    ("dec", 8, 0xff, 1, 0xfe, "SF"),
    ("dec", 8, 0x7f, 0, 0x7e, "PF"),
    ("dec", 8, 0x7f, 1, 0x7e, "PF"),
    ("dec", 8, 0x80, 0, 0x7f, "AF OF"),
    ("dec", 8, 0x80, 1, 0x7f, "AF OF"),
    ("dec", 8, 0xf, 0, 0xe, ""),
    ("dec", 8, 0xf, 1, 0xe, ""),
    ("dec", 8, 0x10, 0, 0xf, "PF AF"),
    ("dec", 8, 0x10, 1, 0xf, "PF AF"),
    ("dec", 8, 0x5a, 0, 0x59, "PF"),
    ("dec", 8, 0x5a, 1, 0x59, "PF"),
    ("dec", 8, 0xa7, 0, 0xa6, "PF SF"),
    ("dec", 8, 0xa7, 1, 0xa6, "PF SF"),
    ("dec", 16, 0x0, 0, 0xffff, "PF AF SF"),
    ("dec", 16, 0x0, 1, 0xffff, "PF AF SF"),
    ("dec", 16, 0x1, 0, 0x0, "PF ZF"),
    ("dec", 16, 0x1, 1, 0x0, "PF ZF"),
    ("dec", 16, 0xffff, 0, 0xfffe, "SF"),
    ("dec", 16, 0xffff, 1, 0xfffe, "SF"),
    ("dec", 16, 0x7fff, 0, 0x7ffe, ""),
    ("dec", 16, 0x7fff, 1, 0x7ffe, ""),
    ("dec", 16, 0x8000, 0, 0x7fff, "PF AF OF"),
    ("dec", 16, 0x8000, 1, 0x7fff, "PF AF OF"),
    ("dec", 16, 0xf, 0, 0xe, ""),
    ("dec", 16, 0xf, 1, 0xe, ""),
    ("dec", 16, 0x10, 0, 0xf, "PF AF"),
    ("dec", 16, 0x10, 1, 0xf, "PF AF"),
    ("dec", 16, 0x1234, 0, 0x1233, "PF"),
    ("dec", 16, 0x1234, 1, 0x1233, "PF"),
    ("dec", 16, 0xfedc, 0, 0xfedb, "PF SF"),
    ("dec", 16, 0xfedc, 1, 0xfedb, "PF SF"),
    ("dec", 32, 0x0, 0, 0xffffffff, "PF AF SF"),
    ("dec", 32, 0x0, 1, 0xffffffff, "PF AF SF"),
    ("dec", 32, 0x1, 0, 0x0, "PF ZF"),
    ("dec", 32, 0x1, 1, 0x0, "PF ZF"),
    ("dec", 32, 0xffffffff, 0, 0xfffffffe, "SF"),
    ("dec", 32, 0xffffffff, 1, 0xfffffffe, "SF"),
    ("dec", 32, 0x7fffffff, 0, 0x7ffffffe, ""),
    ("dec", 32, 0x7fffffff, 1, 0x7ffffffe, ""),
    ("dec", 32, 0x80000000, 0, 0x7fffffff, "PF AF OF"),
    ("dec", 32, 0x80000000, 1, 0x7fffffff, "PF AF OF"),
    ("dec", 32, 0xf, 0, 0xe, ""),
    ("dec", 32, 0xf, 1, 0xe, ""),
    ("dec", 32, 0x10, 0, 0xf, "PF AF"),
    ("dec", 32, 0x10, 1, 0xf, "PF AF"),
    ("dec", 32, 0x12345678, 0, 0x12345677, "PF"),
    ("dec", 32, 0x12345678, 1, 0x12345677, "PF"),
    ("dec", 32, 0x9abcdef0, 0, 0x9abcdeef, "AF SF"),
    ("dec", 32, 0x9abcdef0, 1, 0x9abcdeef, "AF SF"),
    ("dec", 64, 0x0, 0, 0xffffffffffffffff, "PF AF SF"),
    ("dec", 64, 0x0, 1, 0xffffffffffffffff, "PF AF SF"),
    ("dec", 64, 0x1, 0, 0x0, "PF ZF"),
    ("dec", 64, 0x1, 1, 0x0, "PF ZF"),
    ("dec", 64, 0xffffffffffffffff, 0, 0xfffffffffffffffe, "SF"),
    ("dec", 64, 0xffffffffffffffff, 1, 0xfffffffffffffffe, "SF"),
    ("dec", 64, 0x7fffffffffffffff, 0, 0x7ffffffffffffffe, ""),
    ("dec", 64, 0x7fffffffffffffff, 1, 0x7ffffffffffffffe, ""),
    ("dec", 64, 0x8000000000000000, 0, 0x7fffffffffffffff, "PF AF OF"),
    ("dec", 64, 0x8000000000000000, 1, 0x7fffffffffffffff, "PF AF OF"),
    ("dec", 64, 0xf, 0, 0xe, ""),
    ("dec", 64, 0xf, 1, 0xe, ""),
    ("dec", 64, 0x10, 0, 0xf, "PF AF"),
    ("dec", 64, 0x10, 1, 0xf, "PF AF"),
    ("dec", 64, 0x123456789abcdef, 0, 0x123456789abcdee, "PF"),
    ("dec", 64, 0x123456789abcdef, 1, 0x123456789abcdee, "PF"),
    ("dec", 64, 0xfedcba9876543210, 0, 0xfedcba987654320f, "PF AF SF"),
    ("dec", 64, 0xfedcba9876543210, 1, 0xfedcba987654320f, "PF AF SF"),
    ("neg", 8, 0x0, 0, 0x0, "PF ZF"),
    ("neg", 8, 0x1, 0, 0xff, "CF PF AF SF"),
    ("neg", 8, 0xff, 0, 0x1, "CF AF"),
    ("neg", 8, 0x7f, 0, 0x81, "CF PF AF SF"),
    ("neg", 8, 0x80, 0, 0x80, "CF SF OF"),
    ("neg", 8, 0xf, 0, 0xf1, "CF AF SF"),
    ("neg", 8, 0x10, 0, 0xf0, "CF PF SF"),
    ("neg", 8, 0x5a, 0, 0xa6, "CF PF AF SF"),
    ("neg", 8, 0xa7, 0, 0x59, "CF PF AF"),
    ("neg", 16, 0x0, 0, 0x0, "PF ZF"),
    ("neg", 16, 0x1, 0, 0xffff, "CF PF AF SF"),
    ("neg", 16, 0xffff, 0, 0x1, "CF AF"),
    ("neg", 16, 0x7fff, 0, 0x8001, "CF AF SF"),
    ("neg", 16, 0x8000, 0, 0x8000, "CF PF SF OF"),
    ("neg", 16, 0xf, 0, 0xfff1, "CF AF SF"),
    ("neg", 16, 0x10, 0, 0xfff0, "CF PF SF"),
    ("neg", 16, 0x1234, 0, 0xedcc, "CF PF AF SF"),
    ("neg", 16, 0xfedc, 0, 0x124, "CF PF AF"),
    ("neg", 32, 0x0, 0, 0x0, "PF ZF"),
    ("neg", 32, 0x1, 0, 0xffffffff, "CF PF AF SF"),
    ("neg", 32, 0xffffffff, 0, 0x1, "CF AF"),
    ("neg", 32, 0x7fffffff, 0, 0x80000001, "CF AF SF"),
    ("neg", 32, 0x80000000, 0, 0x80000000, "CF PF SF OF"),
    ("neg", 32, 0xf, 0, 0xfffffff1, "CF AF SF"),
    ("neg", 32, 0x10, 0, 0xfffffff0, "CF PF SF"),
    ("neg", 32, 0x12345678, 0, 0xedcba988, "CF PF AF SF"),
    ("neg", 32, 0x9abcdef0, 0, 0x65432110, "CF"),
    ("neg", 64, 0x0, 0, 0x0, "PF ZF"),
    ("neg", 64, 0x1, 0, 0xffffffffffffffff, "CF PF AF SF"),
    ("neg", 64, 0xffffffffffffffff, 0, 0x1, "CF AF"),
    ("neg", 64, 0x7fffffffffffffff, 0, 0x8000000000000001, "CF AF SF"),
    ("neg", 64, 0x8000000000000000, 0, 0x8000000000000000, "CF PF SF OF"),
    ("neg", 64, 0xf, 0, 0xfffffffffffffff1, "CF AF SF"),
    ("neg", 64, 0x10, 0, 0xfffffffffffffff0, "CF PF SF"),
    ("neg", 64, 0x123456789abcdef, 0, 0xfedcba9876543211, "CF PF AF SF"),
    ("neg", 64, 0xfedcba9876543210, 0, 0x123456789abcdf0, "CF PF"),
]


@pytest.mark.parametrize("row", UNOPS, ids=[f"{r[0]}{r[1]}-{r[2]:#x}-c{r[3]}" for r in UNOPS])
def test_unop(row):
    op, size, a, cf, res, fl = row
    exp = expect_flags(fl)
    d = REG[size][0]
    ra = (HI_A & ~mask(size)) | a
    emu = run_code(f"{op} {d}", regs={"rax": ra}, flags=inverted(exp, cf if op != "neg" else None))
    assert emu.reg_read("rax") == merge(ra, res, size)
    if op != "neg":
        exp["CF"] = cf
    assert_flags(emu, exp)


@pytest.mark.parametrize("row", UNOPS[::3], ids=[f"{r[0]}{r[1]}-{r[2]:#x}-c{r[3]}" for r in UNOPS[::3]])
def test_unop_mem(row):
    op, size, a, cf, res, fl = row
    exp = expect_flags(fl)
    nb = size // 8
    emu = run_code(f"{op} {SIZE_KW[size]} [{DATA:#x}]", mem={DATA: a.to_bytes(nb, "little") + b"\xa5"},
                   flags=inverted(exp, cf if op != "neg" else None))
    assert int.from_bytes(emu.mem_read(DATA, nb), "little") == res
    assert emu.mem_read(DATA + nb, 1) == b"\xa5"
    if op != "neg":
        exp["CF"] = cf
    assert_flags(emu, exp)


@pytest.mark.parametrize("mode", [16, 32])
@pytest.mark.parametrize("insn,start,res", [
    ("inc ax", 0xFFFF, 0), ("dec ax", 0, 0xFFFF), ("inc eax", 0x7FFFFFFF, 0x80000000),
    ("dec eax", 0x80000000, 0x7FFFFFFF), ("inc cx", 0x7FFF, 0x8000), ("dec di", 1, 0),
])
def test_inc_dec_short_forms(mode, insn, start, res):
    """0x40-0x4f are INC/DEC outside 64-bit mode."""
    reg = insn.split()[1]
    full = "e" + reg[-2:] if len(reg) == 2 else reg
    emu = run_code(insn, mode=mode, regs={full: start}, flags=flags_value("CF"))
    assert emu.reg_read(reg) == res
    assert_flags(emu, {"CF": 1}, mode=mode)


def test_0x40_is_rex_in_64bit_mode():
    # 48 ff c0 = inc rax; 0x41 0x50 = push r8 (0x41 is a REX prefix, not inc ecx)
    emu = run_code("db 0x41, 0x50", regs={"rcx": 5, "r8": 0x1234})
    assert emu.reg_read("rcx") == 5
    assert emu.reg_read("rsp") == 0xFF00 - 8
    assert emu.mem_read(0xFF00 - 8, 8) == (0x1234).to_bytes(8, "little")


@pytest.mark.parametrize("row", BINOPS[::2], ids=[_id(r) for r in BINOPS[::2]])
def test_binop_flags_seen_by_guest(row):
    op, size, a, b, cf, res, fl = row
    exp = expect_flags(fl)
    d, s = REG[size]
    emu = run_code(f"{op} {d}, {s}" + GUEST_FLAGS, regs={"rax": a, "rbx": b},
                   flags=inverted(exp, cf if op in ("adc", "sbb") else None))
    assert_guest_flags(emu, exp)


@pytest.mark.parametrize("row", UNOPS[::2], ids=[f"{r[0]}{r[1]}-{r[2]:#x}-c{r[3]}" for r in UNOPS[::2]])
def test_unop_flags_seen_by_guest(row):
    op, size, a, cf, res, fl = row
    exp = expect_flags(fl)
    emu = run_code(f"{op} {REG[size][0]}" + GUEST_FLAGS, regs={"rax": a},
                   flags=inverted(exp, cf if op != "neg" else None))
    if op != "neg":
        exp["CF"] = cf
    assert_guest_flags(emu, exp)


def test_carry_chain_multiword_add_sub():
    # 192-bit add and subtract using the carry produced by the previous instruction
    src = """
        add rax, r8
        adc rbx, r9
        adc rcx, r10
        setc dl
        sub r11, r8
        sbb r12, r9
        sbb r13, r10
        setc dh
    """
    regs = {"rax": 0xFFFFFFFFFFFFFFFF, "rbx": 0xFFFFFFFFFFFFFFFF, "rcx": 0x7FFFFFFFFFFFFFFF, "r8": 1, "r9": 0,
            "r10": 0x8000000000000000, "r11": 0, "r12": 0, "r13": 0x8000000000000000, "rdx": 0}
    emu = run_code(src, regs=regs)
    assert (emu.reg_read("rax"), emu.reg_read("rbx"), emu.reg_read("rcx")) == (0, 0, 0)
    assert emu.reg_read("dl") == 1
    assert emu.reg_read("r11") == 0xFFFFFFFFFFFFFFFF
    assert emu.reg_read("r12") == 0xFFFFFFFFFFFFFFFF
    assert emu.reg_read("r13") == 0xFFFFFFFFFFFFFFFF
    assert emu.reg_read("dh") == 1


def test_inc_keeps_carry_across_blocks():
    src = """
        add al, 0xFF        ; al=1 -> 0, CF=1
        jmp short n1
    n1: inc ecx             ; CF preserved
        jmp short n2
    n2: dec edx             ; CF preserved
        pushfq
        pop rdi
        adc esi, 0
    """
    emu = run_code(src, regs={"rax": 1, "rcx": 0x7FFFFFFF, "rdx": 0, "rsi": 10})
    assert emu.reg_read("esi") == 11
    assert_flags(emu, {"CF": 0, "ZF": 0, "SF": 0, "OF": 0})
    assert emu.reg_read("rdi") & 1 == 1      # CF before adc


def test_lahf_sahf_after_arith():
    src = """
        cmp eax, ebx        ; 1 - 2: CF AF SF PF
        lahf
        mov cl, ah
        add ebx, ebx        ; clears CF, SF
        sahf
        setc dl
        sets dh
    """
    emu = run_code(src, regs={"rax": 1, "rbx": 2, "rdx": 0})
    assert emu.reg_read("cl") == 0x97
    assert emu.reg_read("dx") == 0x0101


def test_cmc_after_lazy_flags():
    emu = run_code("sub eax, 1\ncmc\nsetc bl\ncmc\nsetc bh", regs={"rax": 0, "rbx": 0})
    assert emu.reg_read("bx") == 0x0100


@pytest.mark.parametrize("cf", [0, 1])
def test_sbb_same_register_idiom(cf):
    emu = run_code("sbb eax, eax\nsbb rbx, rbx\nadc ecx, ecx", regs={"rax": 5, "rbx": 5, "rcx": 0x80000000},
                   flags=flags_value("CF" if cf else ""))
    assert emu.reg_read("rax") == (0xFFFFFFFF if cf else 0)
    assert emu.reg_read("rbx") == (0xFFFFFFFFFFFFFFFF if cf else 0)
    assert emu.reg_read("rcx") == cf
    assert_flags(emu, {"CF": 1, "ZF": int(not cf), "OF": 1})
