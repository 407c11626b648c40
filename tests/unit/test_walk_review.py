"""pysev walk and pysev.teach: review findings, each a regression test."""

import pytest

from pysev.mem.paging import PagingConfig
from pysev.qmp.client import QMPClientError
from pysev.teach.remote import RemoteError, qmp_target
from pysev.teach.walk import explain

from pagetables import memory, put

OVMF = "/usr/share/ovmf/OVMF.fd"
REGS = "RIP=0 CR0=80000011 CR3=00001000 CR4=00000020 EFER=0000000000000500\n"


class Scripted:
    """A QMPClient that answers from a table: a value, a callable, or an exception."""

    def __init__(self, answers):
        self.answers = answers

    def execute(self, name, **arguments):
        key = name
        if name == "qom-get":
            key = f"qom-get {arguments['property']}"
        answer = self.answers.get(key, self.answers.get(name))
        if isinstance(answer, Exception):
            raise answer
        return answer(arguments) if callable(answer) else answer


def hmp(regs=REGS, xp="0000000000001000: 0x0000000000002003\n"):
    return lambda a: regs if a["command-line"] == "info registers" else xp


def sev_guest(**over):
    answers = {"human-monitor-command": hmp(),
               "query-cpus-fast": [{"qom-path": "/machine/unattached/device[0]"}],
               "qom-get phys-bits": 48, "query-sev": {"enabled": True},
               "qom-get memory-encryption": "sev0", "qom-get cbitpos": 51,
               "qom-get reduced-phys-bits": 1}
    answers.update(over)
    return Scripted(answers)


def test_a_good_scripted_guest():
    target = qmp_target(sev_guest())
    assert target.sev == {"cbitpos": 51, "reduced-phys-bits": 1} and target.phys_bits == 48


# each of these was a Python traceback out of pysev walk --qmp
@pytest.mark.parametrize("over, message", [
    ({"human-monitor-command": lambda a: {"x": 1}}, "info registers did not answer with text"),
    ({"query-cpus-fast": {"a": 1}}, "query-cpus-fast did not answer with a list of CPUs"),
    ({"query-cpus-fast": [5]}, "query-cpus-fast did not answer with a list of CPUs"),
    ({"query-sev": [1]}, "query-sev did not answer with an object"),
    ({"qom-get phys-bits": -3}, "/machine/unattached/device[0] property phys-bits is -3, "
     "not a number in 0..52"),
    ({"qom-get phys-bits": 20}, "the CPU's phys-bits is 20, not in 32..52"),
    ({"qom-get memory-encryption": None},
     "SEV is enabled but /machine names no memory-encryption object"),
    ({"qom-get cbitpos": 99}, "/objects/sev0 property cbitpos is 99, not a number in 32..63"),
    ({"qom-get reduced-phys-bits": "x"},
     "/objects/sev0 property reduced-phys-bits is 'x', not a number in 0..16"),
])
def test_odd_answers_from_the_monitor_are_clear_errors(over, message):
    with pytest.raises(RemoteError) as err:
        qmp_target(sev_guest(**over))
    assert str(err.value) == message


def test_xp_that_answers_with_no_text_is_a_clear_error():
    target = qmp_target(sev_guest(**{"human-monitor-command": lambda a: REGS if
                                     a["command-line"] == "info registers" else 5}))
    with pytest.raises(RemoteError) as err:
        target.mem.read(0x1000, 8)
    assert str(err.value) == "xp at 0x1000 gave no value: '5'"


def test_phys_bits_property_missing_still_defaults():
    target = qmp_target(sev_guest(**{"qom-get phys-bits": QMPClientError("GenericError", "no"),
                                     "query-sev": {"enabled": False}}))
    assert target.phys_bits == 40 and target.sev is None


@pytest.mark.parametrize("levels, name", [(0, "paging off"), (2, "32-bit paging"),
                                          (3, "PAE paging")])
def test_a_va_above_4g_outside_long_mode_is_refused(levels, name):
    mem = memory()
    put(mem, 0x1000, 1, 0x2083, size=4)
    put(mem, 0x2000, 0x12, 0x7003, size=4)
    # it used to be explained as va & 0xffffffff under the name of va
    with pytest.raises(ValueError) as err:
        explain(mem, 0x1000, 0x1_0041_2345, PagingConfig(levels, phys_bits=36))
    assert str(err.value) == (f"VA 0x100412345 does not fit in 32 bits: with {name} (not "
                              "long mode) linear addresses are 32-bit")
    assert explain(mem, 0x1000, 0xFFFF_FFFF, PagingConfig(levels, phys_bits=36)).va == 0xFFFF_FFFF


def test_cli_va_above_4g_of_a_guest_with_paging_off(capsys):
    from pysev.cli import main
    assert main(["walk", "0x100000000", "--bios", OVMF, "--max-insns", "10"]) == 2
    assert capsys.readouterr().err == ("pysev: walk: VA 0x100000000 does not fit in 32 bits: "
                                       "with paging off (not long mode) linear addresses "
                                       "are 32-bit\n")


@pytest.mark.parametrize("option", ["--svg", "--png"])
def test_cli_empty_picture_path_is_an_error_not_ignored(option, capsys):
    from pysev.cli import main
    assert main(["walk", "0xfffff000", "--bios", OVMF, "--max-insns", "10", option, ""]) == 1
    err = capsys.readouterr().err
    assert err == f"pysev: walk: {option}: cannot write : No such file or directory\n"
