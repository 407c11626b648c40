"""Guest exceptions raised by emitted code and helpers."""

VECTOR_NAMES = {
    0: "#DE", 1: "#DB", 2: "NMI", 3: "#BP", 4: "#OF", 5: "#BR", 6: "#UD",
    7: "#NM", 8: "#DF", 10: "#TS", 11: "#NP", 12: "#SS", 13: "#GP",
    14: "#PF", 16: "#MF", 17: "#AC", 18: "#MC", 19: "#XM", 20: "#VE",
    21: "#CP", 29: "#VC", 30: "#SX",
}

DE, DB, BP, OF, BR, UD, NM, DF, TS, NP, SS, GP, PF, AC = (
    0, 1, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 17)

# Vectors whose saved RIP is that of the next instruction (traps).
TRAPS = frozenset((BP, OF))


class GuestFault(Exception):
    """An exception the guest CPU takes.

    Raised inside a translated block; the block's handler makes the CPU
    state precise (RIP at the faulting instruction, flags stored) before it
    propagates.  For traps (int3, into, int n) `next_ip` is where execution
    resumes after delivery.
    """

    def __init__(self, vector, error_code=None, next_ip=None, cr2=None, detail=""):
        super().__init__(vector, error_code)
        self.vector = vector
        self.error_code = error_code
        self.next_ip = next_ip
        self.cr2 = cr2
        self.detail = detail

    @property
    def name(self):
        return VECTOR_NAMES.get(self.vector, f"vector {self.vector}")

    def __str__(self):
        s = f"{self.name} (vector {self.vector})"
        if self.error_code is not None:
            s += f" error code {self.error_code:#x}"
        if self.detail:
            s += f": {self.detail}"
        return s


class RepStep(Exception):
    """One iteration of a REP instruction ran while single-stepping; RIP stays on it."""
