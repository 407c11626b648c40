"""Local pytest configuration for the differential tests (tests/diff).

Only makes the helper modules in this directory importable; everything else lives in
diffharness.py (engines, state generation, comparison) and forms.py (instruction table).
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)
