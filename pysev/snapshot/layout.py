"""What a snapshot file holds: its format and the state fields saved by name."""

FORMAT = "pysev-snapshot"
VERSION = 1
PAGE = 4096
SECRET_PROPERTIES = ("tik", "tek")
CPU_SCALARS = ("rip", "eflags", "cr0", "cr2", "cr3", "cr4", "cr8", "efer", "tsc_aux",
               "tsc_offset", "apic_base", "fpu_cw", "fpu_sw", "fpu_tw", "mxcsr", "cpl",
               "phys_bits", "sev_c_bit", "sev_reduced_bits", "icount", "fault_count",
               "halted", "interrupt_shadow")
CPU_LISTS = ("regs", "seg_sel", "seg_base", "seg_limit", "seg_attr", "dr")
CPU_TUPLES = ("gdtr", "idtr", "ldtr", "tr")
SERIAL_FIELDS = ("ier", "lcr", "mcr", "scr", "fcr", "divisor", "msr_delta", "tx_count")
U64 = 1 << 64
RUN_STATES = ("prelaunch", "running", "paused", "postmigrate", "shutdown", "internal-error",
              "guest-panicked")
