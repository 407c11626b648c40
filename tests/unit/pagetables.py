"""Guest memory and page-table entries built by hand, for the walk explainer's tests."""

from pysev.mem import PhysMem


def memory():
    """1 MiB of RAM at 0: room for the tables and the pages they map."""
    mem = PhysMem()
    mem.add_ram(0, 0x100000)
    return mem


def put(mem, table, index, value, size=8):
    """Entry *index* of the table at *table* (entries of *size* bytes) := value."""
    mem.write(table + index * size, size, value)
