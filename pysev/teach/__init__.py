"""Teaching aids: explain what the hardware does, step by step.

:mod:`pysev.teach.walk` explains one page walk (every paging mode, with the
SEV C-bit); :mod:`pysev.teach.svg` draws such an explanation as SVG.
"""
