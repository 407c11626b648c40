"""The translation cache is bounded: the oldest entries are evicted, and the
CPU's IP -> block dict, which refers to cached blocks, goes with them."""

from conftest import assemble, CODE
from decoder.cache import CodeCache
from pysev.api import Emulator


def test_evicts_the_oldest_quarter_at_the_limit():
    cache = CodeCache(limit=8)
    cleared = []
    cache.on_clear = lambda: cleared.append(True)
    for i in range(8):
        cache.put(("k", i), f"block{i}", {100 + i})
    assert len(cache) == 8 and not cleared
    cache.put(("k", 8), "block8", {108})
    assert len(cache) == 7 and cleared == [True]
    assert [cache.get(("k", i)) for i in range(3)] == [None, None, "block2"]
    # the evicted entries' pages hold no code any more; the others still do
    assert [cache.is_code_page(100 + i) for i in range(9)] == [False] * 2 + [True] * 7


def test_a_page_shared_by_entries_stays_code_until_the_last_goes():
    cache = CodeCache(limit=4)
    cache.put("a", 1, {5, 6})
    cache.put("b", 2, {6})
    assert cache.invalidate_page(5)
    assert cache.get("a") is None and cache.get("b") == 2
    assert not cache.is_code_page(5) and cache.is_code_page(6)
    assert cache.invalidate_page(6)
    assert not cache.is_code_page(6) and len(cache) == 0
    assert not cache.invalidate_page(6)


def test_put_of_a_key_again_replaces_it():
    cache = CodeCache(limit=4)
    cache.put("a", 1, {5})
    cache.put("a", 2, {7})
    assert cache.get("a") == 2 and len(cache) == 1
    assert not cache.is_code_page(5) and cache.is_code_page(7)


# 40 little blocks, each ending in a taken branch to the next (a trace exits
# at a taken conditional branch), run 5 times round
MANY_BLOCKS = "\n".join(
    ["    mov ecx, 5", "top:"]
    + [f"    add eax, {i}\n    cmp eax, eax\n    je b{i}\n    nop\nb{i}:" for i in range(40)]
    + ["    dec ecx", "    jnz top"])


def test_a_small_cache_still_runs_the_program_exactly():
    code, _ = assemble(MANY_BLOCKS, 64)
    results = []
    for limit in (65536, 8):
        emu = Emulator(mode=64)
        emu.mem_map(0, 0x20000)
        emu.mem_write(CODE, code)
        emu.cpu.cache.limit = limit
        sizes = []
        emu.cpu.cache.on_clear = (lambda c=emu.cpu, s=sizes:
                                  (s.append(len(c.fast_blocks)), c._on_cache_clear()))
        assert emu.emu_start(CODE, CODE + len(code)) == "until"
        assert len(emu.cpu.cache) <= limit and len(emu.cpu.fast_blocks) <= limit
        results.append((emu.reg_read("rax"), emu.reg_read("rflags") & 0x8D5, emu.insn_count))
        if limit == 8:
            assert sizes and max(sizes) <= limit        # evicted many times, never above
    assert results[0] == results[1] == (5 * sum(range(40)), results[0][1], 1 + 5 * (120 + 2))
