"""iced-x86 -> Insn records.  The only module in the project that imports iced_x86."""

import iced_x86 as _iced
from iced_x86 import OpKind as _K, Register as _R

from .records import (Far, Imm, Insn, Mem, Reg, Rel, SReg, SysReg,
                      CF, PF, AF, ZF, SF, OF, DF, ES)

_MNEMONIC = {getattr(_iced.Mnemonic, n): n for n in dir(_iced.Mnemonic)
             if n.isupper()}
_CODE = {getattr(_iced.Code, n): n for n in dir(_iced.Code) if n.isupper()}

# iced's RflagsBits -> EFLAGS bits
_RF = _iced.RflagsBits
_FLAG_MAP = ((_RF.CF, CF), (_RF.PF, PF), (_RF.AF, AF), (_RF.ZF, ZF),
             (_RF.SF, SF), (_RF.OF, OF), (_RF.DF, DF), (_RF.IF, 0x200),
             (_RF.AC, 0x40000))


def _flags(bits):
    out = 0
    for ice, ours in _FLAG_MAP:
        if bits & ice:
            out |= ours
    return out


def _build_register_table():
    """iced Register value -> operand record (or None for registers we do not model)."""
    table = {}
    names = {getattr(_R, n): n for n in dir(_R) if n.isupper()}
    for value, name in names.items():
        if value == _R.NONE:
            continue
        info = _iced.RegisterInfo(value)
        lname = name.lower()
        if _R.AL <= value <= _R.R15:
            size = info.size
            if _R.AH <= value <= _R.BH:          # AH CH DH BH: bits 15:8 of RAX..RBX
                table[value] = Reg(value - _R.AH, 1, True, lname)
            elif size == 1:
                # iced numbers byte registers AL..BL, AH..BH, SPL..DIL, R8L..R15L
                num = info.number if info.number < 4 else info.number - 4
                table[value] = Reg(num, 1, False, lname)
            else:
                table[value] = Reg(info.number, size, False, lname)
        elif _R.ES <= value <= _R.GS:
            table[value] = SReg(value - _R.ES)
        elif _R.CR0 <= value <= _R.CR15:
            table[value] = SysReg("cr", value - _R.CR0, 8, lname)
        elif _R.DR0 <= value <= _R.DR15:
            table[value] = SysReg("dr", value - _R.DR0, 8, lname)
    return table


_REGS = _build_register_table()
_GPR_NUM = {v: r.num for v, r in _REGS.items() if r.kind == "reg" and not r.high}

_IMM_KINDS = {
    _K.IMMEDIATE8: 1, _K.IMMEDIATE8_2ND: 1, _K.IMMEDIATE16: 2,
    _K.IMMEDIATE32: 4, _K.IMMEDIATE64: 8, _K.IMMEDIATE8TO16: 2,
    _K.IMMEDIATE8TO32: 4, _K.IMMEDIATE8TO64: 8, _K.IMMEDIATE32TO64: 8,
}
_NEAR = (_K.NEAR_BRANCH16, _K.NEAR_BRANCH32, _K.NEAR_BRANCH64)
# string-instruction memory operands: (segment is overridable, address size, base register)
_STRING_MEM = {
    _K.MEMORY_SEG_SI: (True, 2, 6), _K.MEMORY_SEG_ESI: (True, 4, 6),
    _K.MEMORY_SEG_RSI: (True, 8, 6), _K.MEMORY_SEG_DI: (True, 2, 7),
    _K.MEMORY_SEG_EDI: (True, 4, 7), _K.MEMORY_SEG_RDI: (True, 8, 7),
    _K.MEMORY_ESDI: (False, 2, 7), _K.MEMORY_ESEDI: (False, 4, 7),
    _K.MEMORY_ESRDI: (False, 8, 7),
}
_LEGACY_PREFIXES = frozenset((0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65, 0x66, 0x67,
                              0xF0, 0xF2, 0xF3))
_FLOW = {getattr(_iced.FlowControl, n): n.lower()
         for n in dir(_iced.FlowControl) if n.isupper()}

_formatter = _iced.Formatter(_iced.FormatterSyntax.NASM)
_formatter.space_after_operand_separator = True
_info_factory = _iced.InstructionInfoFactory()


def _address_size(raw, bits):
    """The address size from the mode and a 0x67 prefix among the legacy prefixes."""
    has67 = False
    for byte in raw:
        if byte not in _LEGACY_PREFIXES:
            break
        if byte == 0x67:
            has67 = True
    if bits == 64:
        return 4 if has67 else 8
    if bits == 32:
        return 2 if has67 else 4
    return 4 if has67 else 2


def _seg_num(reg):
    return reg - _R.ES


def _operand_size(ins, ops, mnem):
    """Size in bytes of the operation, for the emitters."""
    spi = ins.stack_pointer_increment
    if mnem in ("PUSH", "POP", "PUSHF", "PUSHFD", "PUSHFQ", "POPF", "POPFD",
                "POPFQ") and spi:
        return abs(spi)
    for op in ops:
        if op.kind in ("reg", "mem") and op.size:
            return op.size
    for op in ops:
        if op.kind == "imm":
            return op.size
    return 0


def to_insn(ins, raw, bits):
    """Convert one iced Instruction (decoded from `raw`) into an Insn record."""
    rec = Insn()
    rec.ip = ins.ip
    rec.length = ins.len
    rec.next_ip = ins.next_ip
    rec.bits = bits
    rec.raw = bytes(raw[:ins.len])
    rec.invalid = ins.is_invalid
    if rec.invalid:
        rec.mnem, rec.form, rec.ops, rec.text = "INVALID", "INVALID", (), "(bad)"
        rec.osize = rec.asize = 0
        rec.rep = None
        rec.lock = False
        rec.cc = -1
        rec.flags_read = rec.flags_written = rec.flags_undefined = 0
        rec.flow = "exception"
        rec.stack_size = 0
        return rec
    rec.mnem = _MNEMONIC[ins.mnemonic]
    rec.form = _CODE[ins.code]
    rec.text = _formatter.format(ins)
    asize = _address_size(rec.raw, bits)
    rec.asize = asize
    seg_override = ins.segment_prefix != _R.NONE
    ops = []
    msize = _iced.MemorySizeInfo(ins.memory_size).size
    for i in range(ins.op_count):
        kind = ins.op_kind(i)
        if kind == _K.REGISTER:
            reg = ins.op_register(i)
            rec_op = _REGS.get(reg)
            if rec_op is None:
                rec_op = SysReg("other", reg, 0, f"reg{reg}")
            ops.append(rec_op)
        elif kind == _K.MEMORY:
            base = ins.memory_base
            if base in (_R.RIP, _R.EIP):
                b = "rip"
            elif base == _R.NONE:
                b = None
            else:
                b = _GPR_NUM[base]
            index = ins.memory_index
            ix = None if index == _R.NONE else _GPR_NUM[index]
            disp = ins.memory_displacement
            if b == "rip":
                disp &= (1 << (8 * asize)) - 1
            ops.append(Mem(_seg_num(ins.memory_segment), b, ix,
                           ins.memory_index_scale, disp, msize, asize,
                           seg_override))
        elif kind in _IMM_KINDS:
            size = _IMM_KINDS[kind]
            ops.append(Imm(ins.immediate(i) & ((1 << (8 * size)) - 1), size))
        elif kind in _NEAR:
            ops.append(Rel(ins.near_branch_target))
        elif kind in (_K.FAR_BRANCH16, _K.FAR_BRANCH32):
            size = 2 if kind == _K.FAR_BRANCH16 else 4
            off = ins.far_branch16 if size == 2 else ins.far_branch32
            ops.append(Far(ins.far_branch_selector, off, size))
        elif kind in _STRING_MEM:
            overridable, sa, base = _STRING_MEM[kind]
            seg = _seg_num(ins.memory_segment) if overridable else ES
            rec.asize = sa
            ops.append(Mem(seg, base, None, 1, 0, msize, sa, seg_override))
        else:                                    # pragma: no cover - new iced kinds
            ops.append(Imm(0, 0))
    # xlat: iced reports a plain memory operand; keep it (base rbx, index al handled by emitter)
    rec.ops = tuple(ops)
    rec.osize = _operand_size(ins, ops, rec.mnem)
    rec.rep = ("repne" if ins.has_repne_prefix else
               "repe" if ins.has_repe_prefix else None)
    if rec.rep == "repe" and rec.mnem not in ("CMPSB", "CMPSW", "CMPSD", "CMPSQ",
                                               "SCASB", "SCASW", "SCASD", "SCASQ"):
        rec.rep = "rep"
    rec.lock = ins.has_lock_prefix
    cc = ins.condition_code
    rec.cc = cc - 1 if cc else -1
    rec.flags_read = _flags(ins.rflags_read)
    rec.flags_written = _flags(ins.rflags_modified)
    rec.flags_undefined = _flags(ins.rflags_undefined)
    rec.flow = _FLOW[ins.flow_control]
    rec.stack_size = abs(ins.stack_pointer_increment)
    return rec


def decode(code, ip, bits, max_count=None):
    """Decode instructions from `code` (bytes) placed at address `ip`.

    Yields Insn records; an undecodable byte sequence yields an invalid
    record and decoding stops there.  Truncated instructions at the end of
    `code` are reported invalid too, so give at least 15 bytes past the
    last instruction wanted.
    """
    dec = _iced.Decoder(bits, code, ip=ip)
    n = 0
    offset = 0
    for ins in dec:
        rec = to_insn(ins, code[offset:offset + 15], bits)
        offset += ins.len
        yield rec
        n += 1
        if rec.invalid or (max_count is not None and n >= max_count):
            return


def decode_one(code, ip, bits):
    """Decode the single instruction at the start of `code`."""
    for rec in decode(code, ip, bits, 1):
        return rec
    raise ValueError("no bytes to decode")


def disassemble(code, ip, bits):
    """Text lines 'address: bytes  instruction' for a byte string."""
    lines = []
    for rec in decode(code, ip, bits):
        lines.append(f"{rec.ip:#010x}: {rec.raw.hex():<30} {rec.text}")
        if rec.invalid:
            break
    return lines
