"""What every guest-owner step shares: the error type, file and base64 input."""

import base64
import binascii


class OwnerError(ValueError):
    """An input the guest owner can fix; the message is one complete line."""


def read_file(path, what):
    """The bytes of *path*; *what* names the input in the error ("firmware", "TIK file")."""
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise OwnerError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None


def decode_base64(text, what):
    """Strict base64 (surrounding whitespace allowed) or an OwnerError naming *what*."""
    if isinstance(text, bytes):
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            raise OwnerError(f"{what} is not base64 text") from None
    try:
        return base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise OwnerError(f"{what} is not valid base64") from None


def encode_base64(data):
    return base64.b64encode(bytes(data)).decode("ascii")
