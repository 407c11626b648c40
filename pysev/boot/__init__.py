"""Booting guests without a boot loader: the Linux x86 boot protocol for -kernel,
-initrd and -append (see :mod:`pysev.boot.linux`).  What it prepares reaches the
firmware through the fw_cfg device (:mod:`pysev.devices.fw_cfg`)."""

from pysev.boot.linux import (LinuxBoot, LinuxBootError, SetupHeader, load_linux,
                              parse_setup_header)

__all__ = ["LinuxBoot", "LinuxBootError", "SetupHeader", "load_linux", "parse_setup_header"]
