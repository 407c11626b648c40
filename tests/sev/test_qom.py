"""The confidential-guest object types: hierarchy, properties, key files, and
the checks a machine makes when an object is named by memory-encryption=."""

import subprocess
import sys
import warnings

import pytest

from pysev.machine import Machine, MachineError
from pysev.sev import QomError, TYPES, object_new, type_help
from pysev.sev.objects import SevEmulated, SevGuest, SevCommon, ConfidentialGuestSupport

from sevimage import OVMF, TIK, TEK, write_key

SEV_EMULATED_PROPS = {
    "cbitpos": "uint32", "dh-cert-file": "str", "handle": "uint32", "kernel-hashes": "bool",
    "legacy-vm-type": "OnOffAuto", "policy": "uint32", "reduced-phys-bits": "uint32",
    "session-file": "str", "sev-device": "str", "tek": "str", "tik": "str",
}


def new(type_name="sev-emulated", props=None, obj_id="sev0"):
    """object_new without the all-zero key warnings (tests of those are below)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return object_new(type_name, obj_id, props or {})


def machine(*objects, enc="sev0", bios=OVMF):
    args = ["-bios", bios, "-m", "16M", "-serial", "null"]
    for obj in objects:
        args += ["-object", obj]
    if enc is not None:
        args += ["-machine", f"q35,memory-encryption={enc}"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Machine.from_args(args)


def machine_error(*objects, enc="sev0"):
    with pytest.raises(MachineError) as info:
        machine(*objects, enc=enc)
    return str(info.value)


@pytest.fixture
def keys(tmp_path):
    return write_key(tmp_path / "tik.bin", TIK), write_key(tmp_path / "tek.bin", TEK)


# ---- the type hierarchy -------------------------------------------------------------------

def test_sev_emulated_ancestry():
    assert TYPES["sev-emulated"].ancestry() == [
        "sev-emulated", "sev-guest", "sev-common", "x86-confidential-guest",
        "confidential-guest-support"]
    assert TYPES["sev-snp-guest"].ancestry() == [
        "sev-snp-guest", "sev-common", "x86-confidential-guest", "confidential-guest-support"]


def test_objects_are_instances_of_their_ancestors():
    obj = new()
    assert isinstance(obj, SevEmulated)
    assert isinstance(obj, SevGuest)
    assert isinstance(obj, SevCommon)
    assert isinstance(obj, ConfidentialGuestSupport)
    assert obj.type_name == "sev-emulated"
    assert obj.id == "sev0"


@pytest.mark.parametrize("type_name,abstract", [
    ("confidential-guest-support", True), ("x86-confidential-guest", True),
    ("sev-common", True), ("sev-guest", False), ("sev-emulated", False),
    ("sev-snp-guest", False)])
def test_abstract_flags(type_name, abstract):
    assert TYPES[type_name].abstract is abstract


@pytest.mark.parametrize("type_name", ["confidential-guest-support", "x86-confidential-guest",
                                       "sev-common"])
def test_abstract_types_are_refused(type_name):
    with pytest.raises(QomError) as info:
        object_new(type_name, "x")
    assert str(info.value) == f"object type '{type_name}' is abstract"
    assert machine_error(f"{type_name},id=x", enc=None) == (
        f"pysev run: -object {type_name}: object type '{type_name}' is abstract")


def test_unknown_type_is_refused():
    with pytest.raises(QomError) as info:
        object_new("sev-bogus", "x")
    assert str(info.value) == "invalid object type: sev-bogus"


def test_unknown_property_is_refused():
    with pytest.raises(QomError) as info:
        new(props={"bogus": "1"})
    assert str(info.value) == "Property 'sev-emulated.bogus' not found"


def test_object_needs_an_id_and_a_unique_one():
    assert machine_error("sev-emulated", enc=None) == (
        "pysev run: -object sev-emulated: Parameter 'id' is missing")
    assert machine_error("sev-emulated,id=a", "sev-emulated,id=a", enc=None) == (
        "pysev run: -object sev-emulated: attempt to add duplicate property 'a' to object "
        "(type 'container')")


# ---- properties and help ------------------------------------------------------------------

def test_instance_and_class_properties():
    cls = TYPES["sev-emulated"]
    assert [p.name for p in cls.instance_properties()] == ["tik", "tek"]
    assert set(cls.class_properties()) == set(SEV_EMULATED_PROPS) - {"tik", "tek"}
    assert {name: p.type for name, p in cls.all_properties(cls).items()} == SEV_EMULATED_PROPS


def _help_properties(text):
    props = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.strip().partition("=<")
        props[name] = rest.split(">", 1)[0]
    return props


def test_object_help_lists_every_property_including_instance_ones():
    proc = subprocess.run([sys.executable, "-m", "pysev", "run", "-object", "sev-emulated,help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "sev-emulated options:"
    assert _help_properties(proc.stdout) == SEV_EMULATED_PROPS
    assert proc.stdout.rstrip("\n") == type_help("sev-emulated")
    by_name = {line.split("=", 1)[0].strip(): line for line in lines[1:]}
    assert "16-byte Transport Integrity Key" in by_name["tik"]
    assert "16-byte Transport Encryption Key" in by_name["tek"]
    assert "(default: 0x1)" in by_name["policy"]
    assert "(default: off)" in by_name["kernel-hashes"]


def test_sev_guest_help_has_no_transport_keys():
    props = _help_properties(type_help("sev-guest"))
    assert set(props) == set(SEV_EMULATED_PROPS) - {"tik", "tek"}
    assert "(default: /dev/sev)" in type_help("sev-guest")


def test_help_of_an_unknown_type():
    proc = subprocess.run([sys.executable, "-m", "pysev", "run", "-object", "sev-bogus,help"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "invalid object type: sev-bogus" in proc.stderr


def test_defaults():
    obj = new()
    assert obj.get("policy") == 0x1
    assert obj.get("handle") == 0
    assert obj.get("kernel-hashes") is False
    assert obj.get("cbitpos") is None
    assert obj.get("reduced-phys-bits") is None
    assert obj.get("tik") is None and obj.get("tek") is None
    assert new("sev-guest").get("sev-device") == "/dev/sev"
    assert new("sev-guest").get("legacy-vm-type") == "auto"


@pytest.mark.parametrize("value,text", [
    (31, "Parameter 'cbitpos' must be in the range 32 to 63 (got 31)"),
    (64, "Parameter 'cbitpos' must be in the range 32 to 63 (got 64)"),
    (0, "Parameter 'cbitpos' must be in the range 32 to 63 (got 0)"),
])
def test_cbitpos_out_of_range(value, text):
    with pytest.raises(QomError) as info:
        new(props={"cbitpos": value})
    assert str(info.value) == text
    assert machine_error(f"sev-emulated,id=sev0,cbitpos={value}") == (
        f"pysev run: -object sev-emulated: {text}")


@pytest.mark.parametrize("value,text", [
    (0, "Parameter 'reduced-phys-bits' must be in the range 1 to 63 (got 0)"),
    (64, "Parameter 'reduced-phys-bits' must be in the range 1 to 63 (got 64)"),
])
def test_reduced_phys_bits_out_of_range(value, text):
    with pytest.raises(QomError) as info:
        new(props={"reduced-phys-bits": value})
    assert str(info.value) == text


def test_range_limits_are_accepted():
    assert new(props={"cbitpos": 32}).get("cbitpos") == 32
    assert new(props={"cbitpos": "63"}).get("cbitpos") == 63
    assert new(props={"reduced-phys-bits": 1}).get("reduced-phys-bits") == 1
    assert new(props={"reduced-phys-bits": "0x3f"}).get("reduced-phys-bits") == 63


def test_bad_number_and_bool_values():
    with pytest.raises(QomError) as info:
        new(props={"policy": "x"})
    assert str(info.value).startswith("Parameter 'policy' ")
    with pytest.raises(QomError) as info:
        new(props={"kernel-hashes": "maybe"})
    assert str(info.value) == "Parameter 'kernel-hashes' expects on or off"


def test_cbitpos_inside_the_usable_address_bits_is_refused_by_the_machine():
    # EPYC-Milan has 48 physical address bits; with reduced-phys-bits=1, bits 0..46 are usable
    assert machine_error("sev-emulated,id=sev0,cbitpos=40,reduced-phys-bits=1") == (
        "pysev run: sev-emulated: cbitpos=40 falls inside the usable physical address bits "
        "0 to 46 (the CPU has 48 address bits, reduced-phys-bits=1)")
    assert machine_error("sev-emulated,id=sev0,cbitpos=46") == (
        "pysev run: sev-emulated: cbitpos=46 falls inside the usable physical address bits "
        "0 to 46 (the CPU has 48 address bits, reduced-phys-bits=1)")


def test_cbitpos_just_above_the_usable_bits_is_accepted():
    m = machine("sev-emulated,id=sev0,cbitpos=47,reduced-phys-bits=1")
    assert m.sev.cbitpos == 47 and m.sev.reduced_phys_bits == 1
    # reducing more address bits makes room for a lower C-bit
    m = machine("sev-emulated,id=sev0,cbitpos=40,reduced-phys-bits=10")
    assert m.sev.cbitpos == 40 and m.sev.reduced_phys_bits == 10


def test_cbitpos_defaults_to_the_cpu_model():
    m = machine("sev-emulated,id=sev0")
    assert (m.sev.cbitpos, m.sev.reduced_phys_bits) == (51, 1)


def test_reduced_phys_bits_that_leave_no_address_bits():
    assert machine_error("sev-emulated,id=sev0,reduced-phys-bits=48") == (
        "pysev run: sev-emulated: reduced-phys-bits=48 leaves no usable physical address bits "
        "(the CPU has 48)")


# ---- transport key files ------------------------------------------------------------------

@pytest.mark.parametrize("label", ["tik", "tek"])
def test_missing_key_file(tmp_path, label):
    path = tmp_path / "nope.bin"
    obj = new()
    with pytest.raises(QomError) as info:
        obj.set(label, str(path))
    assert str(info.value) == (f"Parameter '{label}': cannot read key file '{path}': "
                               "No such file or directory")
    assert obj.get(label) is None


@pytest.mark.parametrize("label", ["tik", "tek"])
def test_key_file_is_a_directory(tmp_path, label):
    with pytest.raises(QomError) as info:
        new(props={label: str(tmp_path)})
    assert str(info.value) == (f"Parameter '{label}': cannot read key file '{tmp_path}': "
                               "Is a directory")


@pytest.mark.parametrize("label", ["tik", "tek"])
@pytest.mark.parametrize("size", [15, 17, 0, 4096])
def test_key_file_of_the_wrong_size(tmp_path, label, size):
    path = tmp_path / f"key{size}.bin"
    path.write_bytes(bytes((7 * i + 1) & 0xFF for i in range(size)))
    assert path.stat().st_size == size
    obj = new()
    with pytest.raises(QomError) as info:
        obj.set(label, str(path))
    assert str(info.value) == (f"Parameter '{label}': key file '{path}' must hold exactly "
                               f"16 bytes, it has {size}")
    assert obj.get(label) is None
    assert obj.transport_keys() == (bytes(16), bytes(16))


def test_key_file_error_from_the_command_line(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(bytes(15))
    assert machine_error(f"sev-emulated,id=sev0,tik={path}") == (
        f"pysev run: -object sev-emulated: Parameter 'tik': key file '{path}' must hold "
        "exactly 16 bytes, it has 15")


def test_reading_a_key_property_gives_the_path(keys):
    tik, tek = keys
    obj = new(props={"tik": tik, "tek": tek})
    assert obj.get("tik") == tik
    assert obj.get("tek") == tek
    assert obj.transport_keys() == (TIK, TEK)


def test_a_failed_key_set_keeps_the_previous_key(tmp_path, keys):
    tik, _ = keys
    obj = new(props={"tik": tik})
    bad = tmp_path / "bad.bin"
    bad.write_bytes(bytes(17))
    with pytest.raises(QomError):
        obj.set("tik", str(bad))
    assert obj.get("tik") == tik
    assert obj.transport_keys()[0] == TIK


def _key_forms(key):
    return [key.hex(), key.hex().upper(), repr(key), key.decode("latin-1"),
            repr(key)[2:-1]]


def test_repr_and_errors_never_show_key_bytes(tmp_path, keys):
    tik, tek = keys
    m = machine(f"sev-emulated,id=sev0,tik={tik},tek={tek}")
    obj = m.objects["sev0"]
    texts = [repr(obj), str(obj), repr(m.sev.ctx), str(m.sev.ctx), repr(m.sev),
             type_help("sev-emulated")]
    # an error about a key file whose first 16 bytes are the key
    long_key = tmp_path / "long.bin"
    long_key.write_bytes(TIK + b"!")
    with pytest.raises(QomError) as info:
        new(props={"tik": str(long_key)})
    texts.append(str(info.value))
    assert repr(obj) == "<sev-emulated id='sev0' policy=0x1 tik=file tek=file>"
    for text in texts:
        for key in (TIK, TEK):
            for form in _key_forms(key):
                assert form not in text, (form, text)


def test_all_zero_key_warnings():
    with pytest.warns(UserWarning) as record:
        obj = object_new("sev-emulated", "sev0")
    assert [str(w.message) for w in record] == [
        "sev-emulated: no tik given, using an all-zero TIK (anyone can forge measurements)",
        "sev-emulated: no tek given, using an all-zero TEK (anyone can forge measurements)"]
    assert obj.transport_keys() == (bytes(16), bytes(16))
    assert repr(obj) == "<sev-emulated id='sev0' policy=0x1 tik=zero tek=zero>"


def test_one_key_given_warns_for_the_other(keys):
    tik, _ = keys
    with pytest.warns(UserWarning) as record:
        obj = object_new("sev-emulated", "sev0", {"tik": tik})
    assert [str(w.message) for w in record] == [
        "sev-emulated: no tek given, using an all-zero TEK (anyone can forge measurements)"]
    assert obj.transport_keys() == (TIK, bytes(16))


def test_no_warning_with_both_keys(keys):
    tik, tek = keys
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        object_new("sev-emulated", "sev0", {"tik": tik, "tek": tek})
    assert record == []


def test_machine_prints_the_zero_key_warnings(capsys):
    Machine.from_args(["-bios", OVMF, "-m", "16M", "-serial", "null",
                       "-object", "sev-emulated,id=sev0",
                       "-machine", "q35,memory-encryption=sev0"])
    err = capsys.readouterr().err
    assert ("pysev: warning: sev-emulated: no tik given, using an all-zero TIK (anyone can "
            "forge measurements)\n") in err
    assert "pysev: warning: sev-emulated: no tek given" in err


# ---- KVM-only properties ------------------------------------------------------------------

@pytest.mark.parametrize("name,value,why", [
    ("sev-device", "/dev/sev",
     "it emulates the SEV firmware and opens no host SEV device"),
    ("legacy-vm-type", "on", "it selects the KVM VM type and pysev uses no KVM"),
])
def test_kvm_only_properties_are_refused_on_sev_emulated(name, value, why):
    with pytest.raises(QomError) as info:
        new(props={name: value})
    text = f"Parameter '{name}' does not apply to sev-emulated: {why}"
    assert str(info.value) == text
    assert machine_error(f"sev-emulated,id=sev0,{name}={value}") == (
        f"pysev run: -object sev-emulated: {text}")


def test_kvm_only_properties_are_accepted_on_sev_guest():
    obj = new("sev-guest", {"sev-device": "/dev/sev1", "legacy-vm-type": "on"})
    assert obj.get("sev-device") == "/dev/sev1"
    assert obj.get("legacy-vm-type") == "on"
    with pytest.raises(QomError) as info:
        new("sev-guest", {"legacy-vm-type": "maybe"})
    assert str(info.value) == "Parameter 'legacy-vm-type' expects on, off or auto"


# ---- what the machine accepts ---------------------------------------------------------------

@pytest.mark.parametrize("name", ["dh-cert-file", "session-file"])
def test_session_files_are_accepted_by_the_object_but_not_by_the_machine(name):
    assert new(props={name: "owner.b64"}).get(name) == "owner.b64"
    assert machine_error(f"sev-emulated,id=sev0,{name}=owner.b64") == (
        f"pysev run: sev-emulated: {name} is not supported yet: give the transport keys "
        "with tik= and tek=")


@pytest.mark.parametrize("policy", ["0x4", "0x5", "0x7"])
def test_policy_with_the_es_bit_is_refused(policy):
    assert machine_error(f"sev-emulated,id=sev0,policy={policy}") == (
        f"pysev run: sev-emulated: policy {int(policy, 0):#x} asks for SEV-ES, which is not "
        "emulated yet")


def test_policy_without_the_es_bit_is_accepted():
    m = machine("sev-emulated,id=sev0,policy=0x3")
    assert m.qmp("query-sev")["policy"] == 3


def test_policy_needing_a_newer_firmware_api_is_a_machine_error():
    # minimum API 2.0 > the emulated firmware's 1.55: LAUNCH_START fails with
    # POLICY_FAILURE; the user should get a MachineError, not a traceback
    with pytest.raises(MachineError) as info:
        machine("sev-emulated,id=sev0,policy=0x20000")
    assert "policy" in str(info.value)


@pytest.mark.parametrize("type_name", ["sev-guest", "sev-snp-guest"])
def test_kvm_types_cannot_be_the_memory_encryption_object(type_name):
    assert machine_error(f"{type_name},id=sev0") == (
        f"pysev run: -machine: memory-encryption: '{type_name}' needs KVM on an AMD EPYC "
        "host; pysev emulates SEV with sev-emulated")


def test_memory_encryption_with_an_unknown_id():
    assert machine_error("sev-emulated,id=sev0", enc="sev1") == (
        "pysev run: -machine: memory-encryption: no object with id 'sev1'")
    assert machine_error(enc="sev0") == (
        "pysev run: -machine: memory-encryption: no object with id 'sev0'")


def test_memory_encryption_needs_an_id():
    with pytest.raises(MachineError) as info:
        Machine.from_args(["-bios", OVMF, "-machine", "q35,memory-encryption="])
    assert str(info.value) == "pysev run: -machine: memory-encryption needs an object id"


def test_an_object_without_memory_encryption_leaves_sev_off():
    m = machine("sev-emulated,id=sev0", enc=None)
    assert m.sev is None
    assert isinstance(m.objects["sev0"], SevEmulated)
    assert m.qmp("query-sev")["enabled"] is False
