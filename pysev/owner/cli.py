"""``pysev owner ACTION``: the guest owner's command line.

    keygen   --tik FILE --tek FILE [--force]
    digest   --ovmf FILE [--kernel FILE [--initrd FILE] [--append CMDLINE]]
    verify   (--measurement B64 | --measurement-file FILE) --ovmf FILE [kernel inputs]
             --tik FILE (--policy N --api-major N --api-minor N --build-id N
             | --query-sev-json FILE)
    secret   (--measurement B64 | --measurement-file FILE) --tik FILE --tek FILE
             (--guid GUID (--data TEXT | --data-file FILE))... [--iv-random | --iv HEX]
             [--json] [--gpa N]

Only argparse is imported at module level: pysev's top-level parser builds
this one for every command.  :func:`run` raises OwnerError for bad inputs
(pysev.cli prints it as one line and exits 2); verify returns 1 on a mismatch.
"""

import argparse
import json
import sys

DESCRIPTION = ("The guest owner's side of an SEV launch, run away from the host: make the "
               "transport keys, compute the expected launch digest, check the host's launch "
               "measurement, and package secrets for the verified launch.")


def _int(top):
    def parse(text):
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid integer: {text!r}") from None
        if not 0 <= value <= top:
            raise argparse.ArgumentTypeError(f"must be from 0 to {top:#x}: {text}")
        return value
    return parse


class _Guid(argparse.Action):
    """--guid starts a secret; the --data or --data-file after it gives its value."""

    def __call__(self, parser, namespace, values, option_string=None):
        items = list(getattr(namespace, "secrets", None) or [])
        items.append([values, None, None])
        namespace.secrets = items


class _Data(argparse.Action):
    def __call__(self, parser, namespace, values, option_string=None):
        items = getattr(namespace, "secrets", None) or []
        if not items or items[-1][1] is not None:
            parser.error(f"{option_string} must follow its --guid (--guid GUID "
                         f"{option_string} ... for each secret)")
        items[-1][1:] = [option_string, values]


def _add_firmware(parser):
    group = parser.add_argument_group("launch inputs (as given to QEMU or pysev run)")
    group.add_argument("--ovmf", metavar="FILE", required=True,
                       help="the firmware image (-bios or pflash0)")
    group.add_argument("--kernel", metavar="FILE",
                       help="the -kernel of a measured direct boot (kernel-hashes=on)")
    group.add_argument("--initrd", metavar="FILE", help="the -initrd (with --kernel)")
    group.add_argument("--append", metavar="CMDLINE", help="the -append (with --kernel)")


def _add_measurement(parser):
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--measurement", metavar="BASE64",
                       help="query-sev-launch-measure's data: 48 bytes, MEASURE || MNONCE")
    group.add_argument("--measurement-file", metavar="FILE",
                       help="a file with that base64, or the saved query-sev-launch-measure "
                            "reply (JSON)")


def add_parser(subparsers):
    """Add ``owner`` and its actions to *subparsers*; returns the ``owner`` parser."""
    parser = subparsers.add_parser("owner", help="guest-owner tools: keys, expected launch "
                                   "digest, measurement check, launch secrets",
                                   description=DESCRIPTION)
    actions = parser.add_subparsers(title="actions", dest="owner_command", metavar="ACTION")
    actions.required = True

    p = actions.add_parser("keygen", help="generate a TIK and a TEK (16 random bytes each)",
                           description="Write a fresh TIK and TEK, 16 random bytes each, to two "
                                       "new files of mode 0600 (for -object "
                                       "sev-emulated,tik=FILE,tek=FILE).")
    p.add_argument("--tik", metavar="FILE", required=True, help="where to write the TIK")
    p.add_argument("--tek", metavar="FILE", required=True, help="where to write the TEK")
    p.add_argument("--force", action="store_true", help="replace existing files")

    p = actions.add_parser("digest", help="print the expected launch digest (hex)",
                           description="Print the SEV launch digest (hex) the firmware computes "
                                       "for these inputs: SHA-256 over the firmware image, then, "
                                       "with --kernel, the kernel-hashes table.")
    _add_firmware(p)

    p = actions.add_parser("verify", help="check a launch measurement",
                           description="Check the host's query-sev-launch-measure result against "
                                       "the expected launch digest, the TIK and the launch "
                                       "context (policy, API version, build id).  Exit 0 and "
                                       "'measurement OK', or 1 on a mismatch.")
    _add_measurement(p)
    _add_firmware(p)
    p.add_argument("--tik", metavar="FILE", required=True, help="the TIK file")
    ctx = p.add_argument_group("launch context (each option overrides --query-sev-json)")
    ctx.add_argument("--policy", type=_int(0xFFFFFFFF), metavar="N",
                     help="the policy the guest must have been launched with, e.g. 0x1")
    ctx.add_argument("--api-major", type=_int(0xFF), metavar="N", help="SEV firmware API major")
    ctx.add_argument("--api-minor", type=_int(0xFF), metavar="N", help="SEV firmware API minor")
    ctx.add_argument("--build-id", type=_int(0xFF), metavar="N", help="SEV firmware build id")
    ctx.add_argument("--query-sev-json", metavar="FILE",
                     help="take them from a saved query-sev reply (the host's claim: the check "
                          "proves the firmware used them, not that they are acceptable)")

    p = actions.add_parser("secret", help="package secrets for sev-inject-launch-secret",
                           description="Build an efi_secret table from GUID/data pairs and "
                                       "package it as a LAUNCH_SECRET packet (header and "
                                       "encrypted secret, base64) for the launch whose "
                                       "measurement is given.  Verify the measurement first.")
    _add_measurement(p)
    p.add_argument("--tik", metavar="FILE", required=True, help="the TIK file")
    p.add_argument("--tek", metavar="FILE", required=True, help="the TEK file")
    p.add_argument("--guid", metavar="GUID", action=_Guid, dest="secrets",
                   help="the GUID of the next secret (repeatable)")
    p.add_argument("--data", metavar="TEXT", action=_Data, dest="secrets",
                   help="the secret for the preceding --guid, as UTF-8 text")
    p.add_argument("--data-file", metavar="FILE", action=_Data, dest="secrets",
                   help="the secret for the preceding --guid, the bytes of FILE")
    iv = p.add_mutually_exclusive_group()
    iv.add_argument("--iv-random", action="store_true",
                    help="a fresh random IV (the default)")
    iv.add_argument("--iv", metavar="HEX", help="this 16-byte IV instead (for reproducible "
                    "output; never reuse an IV with the same TEK)")
    p.add_argument("--json", action="store_true",
                   help="print the arguments object of QMP sev-inject-launch-secret")
    p.add_argument("--gpa", type=_int(0xFFFFFFFFFFFFFFFF), metavar="N",
                   help="the guest-physical address to write the secret to (default: "
                        "OVMF's secret area)")
    p.set_defaults(secrets=None)
    return parser


# -- the actions -------------------------------------------------------------------

def _launch_inputs(args):
    """(launch digest, [(label, description)]) from --ovmf/--kernel/--initrd/--append."""
    from .common import OwnerError, read_file
    from .measure import launch_digest

    if args.kernel is None:
        for name in ("initrd", "append"):
            if getattr(args, name) is not None:
                raise OwnerError(f"--{name} needs --kernel (it is measured only with a kernel)")
    image = read_file(args.ovmf, "firmware")
    kernel = read_file(args.kernel, "kernel") if args.kernel is not None else None
    initrd = read_file(args.initrd, "initrd") if args.initrd is not None else None
    try:
        digest = launch_digest(image, kernel, initrd, args.append if kernel is not None else None)
    except OwnerError as exc:
        raise OwnerError(f"{exc} (firmware '{args.ovmf}')") from None
    inputs = [("firmware", f"{args.ovmf} ({len(image)} bytes)")]
    if kernel is not None:
        inputs += [("kernel", f"{args.kernel} ({len(kernel)} bytes)"),
                   ("initrd", f"{args.initrd} ({len(initrd)} bytes)" if initrd is not None
                    else "none"),
                   ("append", repr(args.append) if args.append is not None else "none")]
    else:
        inputs.append(("kernel", "none (no kernel hashes measured)"))
    return digest, inputs


def _measurement(args):
    from .measure import parse_measurement, read_measurement_file

    if args.measurement_file is not None:
        return read_measurement_file(args.measurement_file)
    return parse_measurement(args.measurement, "--measurement")


def cmd_keygen(args, out):
    from .keys import write_keys

    write_keys(args.tik, args.tek, force=args.force)
    print(f"wrote TIK to {args.tik} and TEK to {args.tek} (16 bytes each, mode 0600)", file=out)
    return 0


def cmd_digest(args, out):
    digest, _ = _launch_inputs(args)
    print(digest.hex(), file=out)
    return 0


def _context(args, err):
    from .common import OwnerError
    from .measure import LaunchContext, QUERY_SEV_FIELDS, read_query_sev_file

    reported = read_query_sev_file(args.query_sev_json) if args.query_sev_json else {}
    values = {}
    for field, key in QUERY_SEV_FIELDS:
        given = getattr(args, field)
        if given is None:
            if field not in reported:
                raise OwnerError(f"no {key}: give --{key} (or --query-sev-json)")
            values[field] = reported[field]
            continue
        if field in reported and reported[field] != given:
            print(f"pysev owner verify: note: --{key} {given:#x} differs from the query-sev "
                  f"reply's {reported[field]:#x}; checking with --{key}", file=err)
        values[field] = given
    return LaunchContext(**values)


def cmd_verify(args, out, err):
    from .keys import read_key
    from .measure import verify_measurement

    measure, mnonce = _measurement(args)
    tik = read_key(args.tik, "TIK")
    context = _context(args, err)
    digest, inputs = _launch_inputs(args)
    if verify_measurement(measure, mnonce, tik, digest, context):
        print("measurement OK", file=out)
        return 0
    inputs += [("launch digest", digest.hex()),
               ("TIK", f"from {args.tik}"),
               ("policy", f"{context.policy:#x}"),
               ("API version", f"{context.api_major}.{context.api_minor}"),
               ("build id", str(context.build_id)),
               ("mnonce", f"{mnonce.hex()} (from the measurement)")]
    width = max(len(label) for label, _ in inputs)
    lines = ["pysev owner verify: measurement MISMATCH: the measurement was not made "
             "from these inputs.",
             "A different firmware image, kernel, initrd or command line, a wrong TIK, or a "
             "different policy, API version or build id each give a mismatch; the measurement "
             "cannot tell which one differs.  Inputs used:"]
    lines += [f"  {label:<{width}}  {text}" for label, text in inputs]
    print("\n".join(lines), file=err)
    return 1


def cmd_secret(args, out):
    from .common import OwnerError, read_file
    from .keys import read_key
    from .secret import IV_LEN, build_secret_table, inject_arguments, package_secret

    if not args.secrets:
        raise OwnerError("no secrets: give --guid GUID --data TEXT (or --data-file FILE), "
                         "once for each secret")
    entries = []
    for guid, option, value in args.secrets:
        if option is None:
            raise OwnerError(f"--guid {guid} has no --data or --data-file after it")
        data = value.encode() if option == "--data" else read_file(value, "secret data file")
        entries.append((guid, data))
    iv = None
    if args.iv is not None:
        try:
            iv = bytes.fromhex(args.iv)
        except ValueError:
            raise OwnerError(f"--iv is not hex: {args.iv!r}") from None
        if len(iv) != IV_LEN:
            raise OwnerError(f"--iv must be {IV_LEN} bytes ({2 * IV_LEN} hex digits), "
                             f"it is {len(iv)}")
    measure, _mnonce = _measurement(args)
    tik = read_key(args.tik, "TIK")
    tek = read_key(args.tek, "TEK")
    table = build_secret_table(entries)
    header, trans = package_secret(measure, tik, tek, table, iv)
    arguments = inject_arguments(header, trans, args.gpa)
    if args.json:
        print(json.dumps(arguments), file=out)
    else:
        print(f"packet-header: {arguments['packet-header']}", file=out)
        print(f"secret: {arguments['secret']}", file=out)
        if args.gpa is not None:
            print(f"gpa: {args.gpa:#x}", file=out)
    return 0


def run(args, out=None, err=None):
    """Run the parsed ``pysev owner`` action; returns the exit code."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    action = args.owner_command
    if action == "keygen":
        return cmd_keygen(args, out)
    if action == "digest":
        return cmd_digest(args, out)
    if action == "verify":
        return cmd_verify(args, out, err)
    return cmd_secret(args, out)
