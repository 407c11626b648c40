"""pysev owner: the guest owner's tools, checked against sev-snp-measure and against
pysev's own emulated SEV launch (measurement and secret injection)."""

import ast
import base64
import hashlib
import json
import os
import pathlib
import shutil
import stat
import struct
import subprocess
import sys
import uuid

import pytest

from pysev import Machine, owner
from pysev.qmp import QMPError
from pysev.sev import ovmf

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "sev"))
import sevimage  # noqa: E402  (the synthetic AmdSev-style image and key helpers)

OVMF = sevimage.OVMF
APPEND = "console=ttyS0 root=/dev/vda1 quiet"
GUID_A = "736869e5-84f0-4973-92ec-06879ce3da0b"     # e.g. a disk passphrase
GUID_B = "0f2b1a80-3c5e-4e8e-9b5e-6a4c2d7f9e11"
GPA = 0x200000                                      # in RAM for -m 16M
EMULATOR_LAYERS = ("pysev.cpu", "pysev.machine", "pysev.mem", "pysev.qmp", "pysev.devices",
                   "pysev.api", "pysev.trace", "decoder")

# Debian's OVMF is installed by the test command (apt-get install ovmf); no skip
needs_ovmf = pytest.mark.usefixtures()


def pysev(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "pysev", *map(str, args)], cwd=cwd or ROOT,
                          capture_output=True, text=True, timeout=120)


def sev_snp_measure(*args):
    exe = shutil.which("sev-snp-measure")
    assert exe is not None, "sev-snp-measure is missing: pip install -e '.[test]'"
    proc = subprocess.run([exe, "--mode", "sev", *map(str, args)], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def assert_one_line_error(proc, *fragments):
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    lines = proc.stderr.splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("pysev owner ")
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def fake_bzimage():
    """Enough of a bzImage for pysev's -kernel loader: boot flag, 'HdrS' setup header
    (protocol 2.15, LOADED_HIGH, 4 setup sectors, command line and initrd limits), then
    a recognisable body."""
    kernel = bytearray(0x2800)
    struct.pack_into("<B", kernel, 0x1F1, 4)                 # setup_sects
    struct.pack_into("<H", kernel, 0x1FE, 0xAA55)            # boot_flag
    kernel[0x202:0x206] = b"HdrS"
    struct.pack_into("<H", kernel, 0x206, 0x020F)            # protocol 2.15
    kernel[0x211] = 0x01                                     # loadflags: LOADED_HIGH
    struct.pack_into("<I", kernel, 0x22C, 0x37FFFFFF)        # initrd_addr_max
    struct.pack_into("<I", kernel, 0x238, 2047)              # cmdline_size
    kernel[0xA00:] = bytes(range(256)) * 28
    return bytes(kernel)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The launch inputs on disk: the synthetic image, a kernel, an initrd, keys."""
    d = tmp_path_factory.mktemp("owner")
    paths = {
        "image": d / "amdsev.fd", "kernel": d / "bzImage", "initrd": d / "initrd.img",
        "tik": d / "tik.bin", "tek": d / "tek.bin", "wrong_tik": d / "wrong-tik.bin",
        "short_key": d / "short.bin", "dir": d,
    }
    paths["image"].write_bytes(sevimage.synthetic_image())
    paths["kernel"].write_bytes(fake_bzimage())
    paths["initrd"].write_bytes(b"070701" + b"\x5a" * 3000)
    paths["tik"].write_bytes(sevimage.TIK)
    paths["tek"].write_bytes(sevimage.TEK)
    paths["wrong_tik"].write_bytes(bytes(a ^ 1 for a in sevimage.TIK))
    paths["short_key"].write_bytes(b"0123456789")
    return paths


def launch(files, *, image=None, policy=0x1, kernel=True):
    """A pysev SEV machine, launched and paused at launch-secret, as the host runs it."""
    extra = f"policy={policy:#x}"
    more = []
    if kernel:
        extra += ",kernel-hashes=on"
        more = ["-kernel", files["kernel"], "-initrd", files["initrd"], "-append", APPEND]
    args = sevimage.sev_args(files["dir"], image or files["image"], extra=extra,
                             more=[str(m) for m in more])
    return Machine.from_args(args)


def measurement_of(m):
    return m.qmp("query-sev-launch-measure")["data"]


def kernel_args(files):
    return ["--kernel", files["kernel"], "--initrd", files["initrd"], "--append", APPEND]


def context_args(policy=0x1, major=1, minor=55, build=0):
    return ["--policy", hex(policy), "--api-major", major, "--api-minor", minor,
            "--build-id", build]


# -- the package's layering ------------------------------------------------------------

def test_owner_code_does_not_import_the_emulator():
    for path in sorted((ROOT / "pysev" / "owner").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                names = [node.module]
            for name in names:
                assert not name.startswith(EMULATOR_LAYERS), (path.name, name)


@needs_ovmf
def test_running_the_owner_commands_loads_no_emulator_module(files, tmp_path):
    code = (
        "import sys, contextlib, io\n"
        "from pysev.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert main(['owner', 'digest', '--ovmf', {str(files['image'])!r}] + "
        f"{[str(a) for a in kernel_args(files)]!r}) == 0\n"
        f"    assert main(['owner', 'keygen', '--tik', {str(tmp_path / 'a')!r}, "
        f"'--tek', {str(tmp_path / 'b')!r}]) == 0\n"
        f"layers = {EMULATOR_LAYERS!r}\n"
        "print(sorted(m for m in sys.modules if m.startswith(layers)))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_pysev_help_does_not_load_the_crypto():
    code = ("import sys\nfrom pysev.cli import build_parser\nbuild_parser()\n"
            "print(sorted(m for m in sys.modules if m.startswith(('Crypto', 'pysev.sev', "
            "'pysev.owner.measure', 'pysev.owner.secret'))))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


# -- keygen ----------------------------------------------------------------------------

def test_keygen_writes_two_fresh_private_keys(tmp_path):
    tik, tek = tmp_path / "tik", tmp_path / "tek"
    proc = pysev("owner", "keygen", "--tik", tik, "--tek", tek)
    assert proc.returncode == 0, proc.stderr
    assert "TIK" in proc.stdout and "TEK" in proc.stdout
    for path in (tik, tek):
        assert len(path.read_bytes()) == 16
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert tik.read_bytes() != tek.read_bytes()
    first = tik.read_bytes()
    # the keys work as pysev's key files
    assert owner.read_key(str(tik), "TIK") == first


def test_keygen_refuses_to_overwrite_and_force_replaces(tmp_path):
    tik, tek = tmp_path / "tik", tmp_path / "tek"
    tik.write_bytes(b"old key, keep me")
    os.chmod(tik, 0o644)
    proc = pysev("owner", "keygen", "--tik", tik, "--tek", tek)
    assert_one_line_error(proc, "keygen", str(tik), "already exists", "--force")
    assert tik.read_bytes() == b"old key, keep me"
    assert not tek.exists()                       # nothing written when one file exists

    proc = pysev("owner", "keygen", "--tik", tik, "--tek", tek, "--force")
    assert proc.returncode == 0, proc.stderr
    assert tik.read_bytes() != b"old key, keep me" and len(tik.read_bytes()) == 16
    for path in (tik, tek):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_keygen_errors(tmp_path):
    proc = pysev("owner", "keygen", "--tik", tmp_path / "k", "--tek", tmp_path / "k")
    assert_one_line_error(proc, "different files")
    proc = pysev("owner", "keygen", "--tik", tmp_path / "no" / "dir" / "tik",
                 "--tek", tmp_path / "tek")
    assert_one_line_error(proc, "cannot create TIK file", "No such file or directory")
    assert not (tmp_path / "tek").exists()
    proc = pysev("owner", "keygen", "--tik", tmp_path / "tik")
    assert proc.returncode == 2 and "--tek" in proc.stderr and "Traceback" not in proc.stderr


# -- digest ----------------------------------------------------------------------------

@needs_ovmf
def test_digest_of_debian_ovmf_matches_sev_snp_measure():
    proc = pysev("owner", "digest", "--ovmf", OVMF)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == sev_snp_measure("--ovmf", OVMF) + "\n"


def test_digest_with_kernel_hashes_matches_sev_snp_measure(files):
    for extra in ([], ["--kernel", files["kernel"]], kernel_args(files),
                  ["--kernel", files["kernel"], "--append", ""]):
        proc = pysev("owner", "digest", "--ovmf", files["image"], *extra)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == sev_snp_measure("--ovmf", files["image"], *extra), extra


def test_digest_is_what_pysev_measures(files):
    image = files["image"].read_bytes()
    kernel, initrd = files["kernel"].read_bytes(), files["initrd"].read_bytes()
    m = launch(files)
    assert m.sev.ctx.launch_digest == owner.launch_digest(image, kernel, initrd, APPEND)
    table = ovmf.kernel_hashes_table(kernel, initrd, APPEND)
    assert owner.launch_digest(image, kernel, initrd, APPEND) == \
        hashlib.sha256(image + table).digest()


@needs_ovmf
def test_digest_with_kernel_needs_a_hashes_area(files):
    proc = pysev("owner", "digest", "--ovmf", OVMF, "--kernel", files["kernel"])
    assert_one_line_error(proc, "digest", OVMF, "no kernel-hashes area", "AmdSev")


def test_digest_errors(files, tmp_path):
    assert_one_line_error(pysev("owner", "digest", "--ovmf", tmp_path / "missing.fd"),
                          "cannot read firmware", "missing.fd", "No such file or directory")
    assert_one_line_error(pysev("owner", "digest", "--ovmf", tmp_path),
                          "cannot read firmware", "Is a directory")
    assert_one_line_error(pysev("owner", "digest", "--ovmf", files["image"],
                                "--kernel", tmp_path / "nokernel"), "cannot read kernel")
    assert_one_line_error(pysev("owner", "digest", "--ovmf", files["image"],
                                "--append", "quiet"), "--append needs --kernel")
    assert_one_line_error(pysev("owner", "digest", "--ovmf", files["image"],
                                "--initrd", files["initrd"]), "--initrd needs --kernel")


# -- verify ----------------------------------------------------------------------------

def test_verify_accepts_a_pysev_measurement(files, tmp_path):
    m = launch(files)
    data = measurement_of(m)
    proc = pysev("owner", "verify", "--measurement", data, "--ovmf", files["image"],
                 *kernel_args(files), "--tik", files["tik"], *context_args())
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "measurement OK\n", "")

    # the same, with the saved QMP replies instead of options
    qs = tmp_path / "query-sev.json"
    qs.write_text(json.dumps({"return": m.qmp("query-sev")}))
    meas = tmp_path / "measure.json"
    meas.write_text(json.dumps({"return": m.qmp("query-sev-launch-measure")}))
    proc = pysev("owner", "verify", "--measurement-file", meas, "--ovmf", files["image"],
                 *kernel_args(files), "--tik", files["tik"], "--query-sev-json", qs)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, "measurement OK\n", "")

    # and in-process through the API
    measure, mnonce = owner.parse_measurement(data)
    ctx = owner.LaunchContext(**owner.context_from_query_sev(m.qmp("query-sev")))
    digest = owner.launch_digest(files["image"].read_bytes(), files["kernel"].read_bytes(),
                                 files["initrd"].read_bytes(), APPEND)
    assert owner.verify_measurement(measure, mnonce, sevimage.TIK, digest, ctx)


@needs_ovmf
def test_verify_debian_ovmf_measurement_from_a_base64_file(files, tmp_path):
    m = launch(files, image=OVMF, kernel=False)
    text = tmp_path / "measurement.b64"
    text.write_text(measurement_of(m) + "\n")
    proc = pysev("owner", "verify", "--measurement-file", text, "--ovmf", OVMF,
                 "--tik", files["tik"], *context_args())
    assert (proc.returncode, proc.stdout) == (0, "measurement OK\n"), proc.stderr


def test_verify_rejects_changed_inputs(files, tmp_path):
    m = launch(files, policy=0x1)
    data = measurement_of(m)
    flipped = bytearray(files["image"].read_bytes())
    flipped[0x1234] ^= 0x01
    changed = tmp_path / "changed.fd"
    changed.write_bytes(bytes(flipped))
    base = ["owner", "verify", "--measurement", data, "--tik", files["tik"]]
    cases = {
        "changed firmware": ["--ovmf", changed, *kernel_args(files), *context_args()],
        "wrong TIK": ["--ovmf", files["image"], *kernel_args(files), *context_args()],
        "wrong policy": ["--ovmf", files["image"], *kernel_args(files),
                         *context_args(policy=0x3)],
        "changed command line": ["--ovmf", files["image"], "--kernel", files["kernel"],
                                 "--initrd", files["initrd"], "--append", APPEND + " single",
                                 *context_args()],
        "wrong API minor": ["--ovmf", files["image"], *kernel_args(files),
                            *context_args(minor=54)],
    }
    for name, args in cases.items():
        argv = list(base)
        if name == "wrong TIK":
            argv[argv.index("--tik") + 1] = files["wrong_tik"]
        proc = pysev(*argv, *args)
        assert proc.returncode == 1, (name, proc.stdout, proc.stderr)
        assert proc.stdout == "" and "Traceback" not in proc.stderr
        err = proc.stderr
        assert "measurement MISMATCH" in err, name
        assert "cannot tell which" in err
        for label in ("firmware", "kernel", "initrd", "append", "launch digest", "TIK",
                      "policy", "API version", "build id", "mnonce"):
            assert f"  {label} " in err, (name, label)
        assert sevimage.TIK.hex() not in err and "5a17c0de" not in err   # no key bytes


def test_verify_option_overrides_query_sev_with_a_note(files, tmp_path):
    m = launch(files, policy=0x1)
    reply = m.qmp("query-sev")
    qs = tmp_path / "qs.json"
    qs.write_text(json.dumps(reply))
    proc = pysev("owner", "verify", "--measurement", measurement_of(m), "--ovmf",
                 files["image"], *kernel_args(files), "--tik", files["tik"],
                 "--query-sev-json", qs, "--policy", "0x3")
    assert proc.returncode == 1
    assert "note: --policy 0x3 differs from the query-sev reply's 0x1" in proc.stderr


def test_verify_errors(files, tmp_path):
    m = launch(files)
    data = measurement_of(m)
    good = ["--ovmf", files["image"], *kernel_args(files)]

    def verify(*args):
        return pysev("owner", "verify", *args)

    assert_one_line_error(verify("--measurement", "not*base64", *good, "--tik", files["tik"],
                                 *context_args()), "--measurement is not valid base64")
    short = base64.b64encode(bytes(32)).decode()
    assert_one_line_error(verify("--measurement", short, *good, "--tik", files["tik"],
                                 *context_args()), "must be 48 bytes", "decodes to 32")
    assert_one_line_error(verify("--measurement", data, *good, "--tik", files["short_key"],
                                 *context_args()), "TIK file", "exactly 16 bytes", "has 10")
    assert_one_line_error(verify("--measurement", data, *good, "--tik", tmp_path / "nokey",
                                 *context_args()), "cannot read TIK file")
    assert_one_line_error(verify("--measurement-file", tmp_path / "none", *good, "--tik",
                                 files["tik"], *context_args()), "cannot read measurement file")
    assert_one_line_error(verify("--measurement", data, *good, "--tik", files["tik"],
                                 "--query-sev-json", tmp_path / "none.json"),
                          "cannot read query-sev reply")
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"enabled": true, "policy": 1}')
    assert_one_line_error(verify("--measurement", data, *good, "--tik", files["tik"],
                                 "--query-sev-json", bad_json), '"api-major"')
    assert_one_line_error(verify("--measurement", data, *good, "--tik", files["tik"],
                                 "--api-major", "1", "--api-minor", "55", "--build-id", "0"),
                          "no policy", "--policy")
    proc = verify("--measurement", data, *good, "--tik", files["tik"],
                  *context_args()[:-2], "--build-id", "256")
    assert proc.returncode == 2 and "--build-id" in proc.stderr and "Traceback" not in proc.stderr


# -- secret ----------------------------------------------------------------------------

def secret_cmd(files, measurement, *extra):
    return pysev("owner", "secret", "--measurement", measurement, "--tik", files["tik"],
                 "--tek", files["tek"], *extra)


def test_secret_packet_is_accepted_by_pysev(files, tmp_path):
    m = launch(files)
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(200)))
    proc = secret_cmd(files, measurement_of(m), "--guid", GUID_A, "--data", "hunter2 passphrase",
                      "--guid", GUID_B, "--data-file", blob, "--iv-random", "--json",
                      "--gpa", hex(GPA))
    assert proc.returncode == 0, proc.stderr
    arguments = json.loads(proc.stdout)
    assert set(arguments) == {"packet-header", "secret", "gpa"} and arguments["gpa"] == GPA
    assert len(base64.b64decode(arguments["packet-header"])) == 52
    assert m.qmp("sev-inject-launch-secret", **arguments) == {}
    table = ovmf.secret_table({GUID_A: b"hunter2 passphrase", GUID_B: bytes(range(200))})
    assert m.read_phys(GPA, len(table)) == table
    # the efi_secret layout, read back field by field
    head = uuid.UUID(bytes_le=table[:16])
    assert str(head) == "1e74f542-71dd-4d66-963e-ef4287ff173b"
    assert struct.unpack_from("<I", table, 16)[0] == 20 + (20 + 18) + (20 + 200)
    assert str(uuid.UUID(bytes_le=table[20:36])) == GUID_A
    assert m.qmp("query-sev")["state"] == "launch-secret"


def test_secret_plain_output_goes_to_ovmf_secret_area(files):
    m = launch(files)
    proc = secret_cmd(files, measurement_of(m), "--guid", GUID_A, "--data", "s3cret")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert [line.split(": ")[0] for line in lines] == ["packet-header", "secret"]
    header, secret = (line.split(": ", 1)[1] for line in lines)
    m.qmp("sev-inject-launch-secret", **{"packet-header": header, "secret": secret})
    table = ovmf.secret_table({GUID_A: b"s3cret"})
    assert m.read_phys(sevimage.SECRET_BASE, len(table)) == table


def test_secret_for_another_launch_is_refused(files):
    first, second = launch(files), launch(files)    # same keys, fresh mnonce each
    proc = secret_cmd(files, measurement_of(first), "--guid", GUID_A, "--data", "x", "--json",
                      "--gpa", GPA)
    arguments = json.loads(proc.stdout)
    before = second.read_phys(GPA, 64)
    with pytest.raises(QMPError, match="MAC"):
        second.qmp("sev-inject-launch-secret", **arguments)
    assert second.read_phys(GPA, 64) == before


def test_secret_iv(files):
    m = launch(files)
    data = measurement_of(m)
    args = ("--guid", GUID_A, "--data", "x", "--json")
    fixed = [secret_cmd(files, data, *args, "--iv", "00" * 15 + "01").stdout for _ in range(2)]
    assert fixed[0] == fixed[1]
    header = base64.b64decode(json.loads(fixed[0])["packet-header"])
    assert header[:4] == bytes(4) and header[4:20] == bytes(15) + b"\x01"
    randoms = {secret_cmd(files, data, *args).stdout for _ in range(2)}
    assert len(randoms) == 2
    # the API gives the same packet for the same IV
    measure, _ = owner.parse_measurement(data)
    table = owner.build_secret_table([(GUID_A, b"x")])
    h, t = owner.package_secret(measure, sevimage.TIK, sevimage.TEK, table, bytes(15) + b"\x01")
    assert owner.inject_arguments(h, t) == json.loads(fixed[0])


def test_secret_errors(files, tmp_path):
    m = launch(files)
    data = measurement_of(m)
    pair = ("--guid", GUID_A, "--data", "x")
    assert_one_line_error(secret_cmd(files, "@@@", *pair), "secret", "not valid base64")
    assert_one_line_error(secret_cmd(files, base64.b64encode(bytes(47)).decode(), *pair),
                          "must be 48 bytes")
    proc = pysev("owner", "secret", "--measurement", data, "--tik", files["tik"],
                 "--tek", files["short_key"], *pair)
    assert_one_line_error(proc, "TEK file", "exactly 16 bytes")
    proc = pysev("owner", "secret", "--measurement", data, "--tik", files["tik"],
                 "--tek", tmp_path / "missing-tek", *pair)
    assert_one_line_error(proc, "cannot read TEK file", "missing-tek")
    assert_one_line_error(secret_cmd(files, data, "--guid", GUID_A, "--data-file",
                                     tmp_path / "nodata"), "cannot read secret data file")
    assert_one_line_error(secret_cmd(files, data), "no secrets")
    assert_one_line_error(secret_cmd(files, data, "--guid", GUID_A), "has no --data")
    assert_one_line_error(secret_cmd(files, data, "--guid", "not-a-guid", "--data", "x"),
                          "'not-a-guid' is not a GUID")
    assert_one_line_error(secret_cmd(files, data, *pair, "--guid", GUID_A.upper(), "--data", "y"),
                          "given twice")
    assert_one_line_error(secret_cmd(files, data, *pair, "--iv", "abcd"), "--iv must be 16")
    proc = secret_cmd(files, data, "--data", "x")
    assert proc.returncode == 2 and "must follow its --guid" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = secret_cmd(files, data, *pair, "--iv-random", "--iv", "00" * 16)
    assert proc.returncode == 2 and "not allowed with" in proc.stderr


# -- the API's input parsing -----------------------------------------------------------

def test_measurement_and_query_sev_inputs(tmp_path):
    blob = bytes(range(48))
    text = base64.b64encode(blob).decode()
    for i, content in enumerate((text, f"  {text}\n", json.dumps({"data": text}),
                                 json.dumps({"return": {"data": text}}))):
        path = tmp_path / f"m{i}"
        path.write_text(content)
        assert owner.read_measurement_file(str(path)) == (blob[:32], blob[32:])
    path = tmp_path / "nodata.json"
    path.write_text('{"return": {}}')
    with pytest.raises(owner.OwnerError, match='without a "data" string'):
        owner.read_measurement_file(str(path))

    info = {"enabled": True, "api-major": 1, "api-minor": 55, "build-id": 3, "policy": 5,
            "state": "launch-secret", "handle": 1, "sev-type": "sev"}
    assert owner.context_from_query_sev({"return": info}) == \
        {"policy": 5, "api_major": 1, "api_minor": 55, "build_id": 3}
    with pytest.raises(owner.OwnerError, match="not enabled"):
        owner.context_from_query_sev(dict(info, enabled=False))
    with pytest.raises(owner.OwnerError, match="sev-snp guest"):
        owner.context_from_query_sev(dict(info, **{"sev-type": "sev-snp"}))
    with pytest.raises(owner.OwnerError, match="policy must be"):
        owner.LaunchContext(policy=-1, api_major=1, api_minor=0, build_id=0)


def test_malformed_guid_table_is_a_clear_error(files, tmp_path):
    image = bytearray(files["image"].read_bytes())
    size = len(image)
    struct.pack_into("<H", image, size - 0x32, 0xFFFF)      # a table longer than the image
    bad = tmp_path / "bad.fd"
    bad.write_bytes(bytes(image))
    proc = pysev("owner", "digest", "--ovmf", bad, "--kernel", files["kernel"])
    assert_one_line_error(proc, "GUID table is malformed", "bad.fd")
