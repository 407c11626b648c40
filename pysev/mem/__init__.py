"""Physical memory and its address map.  Imports only the standard library and numpy."""
from .physmem import (PhysMem, Region, MemoryMapError, PAGE_SIZE, PAGE_SHIFT,  # noqa: F401
                      PAGE_MASK, RAM, ROM, MMIO, UNPACK, PACK)
