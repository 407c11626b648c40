"""A cache of translated code keyed by (physical address, mode), with code-page tracking.

Whatever is cached (a compiled block here) records the physical pages its
bytes came from.  A write to one of those pages drops every entry that used
it, which is how self-modifying code and firmware that copies itself keep
working.
"""

PAGE_SHIFT = 12


class CodeCache:
    def __init__(self, limit=65536):
        self.entries = {}          # key -> block
        self.by_page = {}          # physical page number -> set of keys
        self.limit = limit
        self.on_new_code_page = None    # callback(page) when a page first holds code
        self.on_clear = None            # callback() when everything is dropped at once

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, block, pages):
        if len(self.entries) >= self.limit:
            self.clear()
        self.entries[key] = block
        for page in pages:
            keys = self.by_page.get(page)
            if keys is None:
                keys = self.by_page[page] = set()
                if self.on_new_code_page is not None:
                    self.on_new_code_page(page)
            keys.add(key)

    def is_code_page(self, page):
        return page in self.by_page

    def invalidate_page(self, page):
        """Drop every entry translated from `page`; True if there were any."""
        keys = self.by_page.pop(page, None)
        if not keys:
            return False
        entries = self.entries
        for key in keys:
            entries.pop(key, None)
        return True

    def clear(self):
        self.entries.clear()
        self.by_page.clear()
        if self.on_clear is not None:
            self.on_clear()

    def __len__(self):
        return len(self.entries)
