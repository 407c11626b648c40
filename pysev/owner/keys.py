"""The transport keys: the TIK (integrity) and TEK (encryption), 16 bytes each.

Key files are raw bytes, exactly as ``-object sev-emulated,tik=FILE,tek=FILE``
reads them.  New key files are created with mode 0600; an existing file is
only replaced when asked to, and then by a new 0600 file (never written
through a symlink or left with its old permissions).
"""

import os
import secrets
import tempfile

from pysev.sev.objects import KEY_LEN   # the length pysev's key files must have

from .common import OwnerError, read_file


def generate_keys():
    """A fresh (TIK, TEK) pair from the operating system's CSPRNG."""
    return secrets.token_bytes(KEY_LEN), secrets.token_bytes(KEY_LEN)


def read_key(path, label):
    """The 16-byte key in *path*; *label* ("TIK" or "TEK") names it in errors."""
    data = read_file(path, f"{label} file")
    if len(data) != KEY_LEN:
        raise OwnerError(f"{label} file '{path}' must hold exactly {KEY_LEN} bytes, "
                         f"it has {len(data)}")
    return data


def _create_exclusive(path, label):
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise OwnerError(f"{label} file '{path}' already exists; refusing to overwrite it "
                         "(--force replaces it)") from None
    except OSError as exc:
        raise OwnerError(f"cannot create {label} file '{path}': {exc.strerror or exc}") from None
    os.fchmod(fd, 0o600)                 # whatever the umask
    return fd


def _replace(path, data, label):
    try:
        fd, tmp = tempfile.mkstemp(prefix=".pysev-key-",
                                   dir=os.path.dirname(os.path.abspath(path)))
    except OSError as exc:
        raise OwnerError(f"cannot write {label} file '{path}': {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as f:   # mkstemp files are 0600
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        os.unlink(tmp)
        raise OwnerError(f"cannot write {label} file '{path}': {exc.strerror or exc}") from None


def write_keys(tik_path, tek_path, force=False, keys=None):
    """Write a fresh key pair (or *keys*, a (TIK, TEK) pair) to two new 0600 files.

    Without *force* neither file may exist, and nothing is written when
    either does.
    """
    if os.path.realpath(tik_path) == os.path.realpath(tek_path):
        raise OwnerError(f"the TIK and the TEK must go to different files (both are "
                         f"'{tik_path}')")
    for path, label in ((tik_path, "TIK"), (tek_path, "TEK")):
        if os.path.isdir(path):
            raise OwnerError(f"{label} file '{path}' is a directory")
    tik, tek = generate_keys() if keys is None else keys
    if force:
        _replace(tik_path, tik, "TIK")
        _replace(tek_path, tek, "TEK")
        return
    for path, label in ((tik_path, "TIK"), (tek_path, "TEK")):
        if os.path.lexists(path):
            raise OwnerError(f"{label} file '{path}' already exists; refusing to overwrite "
                             "it (--force replaces it)")
    fd_tik = _create_exclusive(tik_path, "TIK")
    try:
        fd_tek = _create_exclusive(tek_path, "TEK")
    except OwnerError:
        os.close(fd_tik)
        os.unlink(tik_path)
        raise
    done = False
    try:
        for fd, data in ((fd_tik, tik), (fd_tek, tek)):
            os.write(fd, data)
        done = True
    except OSError as exc:
        raise OwnerError(f"cannot write the key files: {exc.strerror or exc}") from None
    finally:
        os.close(fd_tik)
        os.close(fd_tek)
        if not done:                     # all or nothing
            os.unlink(tik_path)
            os.unlink(tek_path)
