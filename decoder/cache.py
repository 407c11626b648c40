"""A cache of translated code keyed by (physical address, mode), with code-page tracking.

Whatever is cached (a compiled block here) records the physical pages its
bytes came from.  A write to one of those pages drops every entry that used
it, which is how self-modifying code and firmware that copies itself keep
working.

The cache is bounded: when it holds `limit` entries, the oldest quarter
(first translated) is evicted before the next one goes in, and the
`on_clear` callback tells the owner to drop whatever else refers to cached
entries (the CPU's IP -> block dict).
"""

PAGE_SHIFT = 12


class CodeCache:
    def __init__(self, limit=65536):
        self.entries = {}          # key -> block, oldest first
        self.pages_of = {}         # key -> the physical pages its bytes came from
        self.by_page = {}          # physical page number -> set of keys
        self.limit = limit
        self.on_new_code_page = None    # callback(page) when a page first holds code
        self.on_clear = None            # callback() when everything is dropped at once

    def get(self, key):
        return self.entries.get(key)

    def put(self, key, block, pages):
        if key in self.entries:
            self._drop(key)
        if len(self.entries) >= self.limit:
            self.evict(max(1, self.limit // 4))
        self.entries[key] = block
        self.pages_of[key] = tuple(pages)
        for page in pages:
            keys = self.by_page.get(page)
            if keys is None:
                keys = self.by_page[page] = set()
                if self.on_new_code_page is not None:
                    self.on_new_code_page(page)
            keys.add(key)

    def is_code_page(self, page):
        return page in self.by_page

    def _drop(self, key):
        """Forget one entry and its page records (a page left with none is no code page)."""
        self.entries.pop(key, None)
        for page in self.pages_of.pop(key, ()):
            keys = self.by_page.get(page)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self.by_page[page]

    def evict(self, count):
        """Drop the `count` oldest entries."""
        for key in list(self.entries)[:count]:
            self._drop(key)
        if self.on_clear is not None:
            self.on_clear()

    def invalidate_page(self, page):
        """Drop every entry translated from `page`; True if there were any."""
        keys = self.by_page.pop(page, None)
        if not keys:
            return False
        for key in keys:
            self.entries.pop(key, None)
            for other in self.pages_of.pop(key, ()):
                if other != page:
                    rest = self.by_page.get(other)
                    if rest is not None:
                        rest.discard(key)
                        if not rest:
                            del self.by_page[other]
        return True

    def clear(self):
        self.entries.clear()
        self.pages_of.clear()
        self.by_page.clear()
        if self.on_clear is not None:
            self.on_clear()

    def __len__(self):
        return len(self.entries)
