"""The paging rows of the benchmark runner: walk counting and the SEV on/off line."""

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import run as bench  # noqa: E402


def test_walks_per_sweep_count_the_fast_path_too():
    # 256 data pages, each one miss (read, filling the write TLB too), plus the
    # code fetches after the CR3 reload; only a few are full walks
    for name in ("pagewalk", "pagewalk-sev"):
        assert bench.check_page_walks(bench.PAGING_WORKLOADS[name]) == 261


def test_interleaved_rounds_give_one_ratio_each():
    best, ratios = bench.run_paging_interleaved(["pagewalk", "pagewalk-sev"], scale=0.004)
    assert sorted(best) == ["pagewalk", "pagewalk-sev"]
    assert len(ratios) == bench.PAGING_MIN_ROUNDS == 7
    assert all(r > 0 for r in ratios)
    for name, result in best.items():
        assert result.instructions == bench.PAGING_WORKLOADS[name].instructions(2)


def test_sev_comparison_line():
    def result(seconds):
        return bench.Result("pysev", seconds, 1_000_000, {}, "")

    rows = [bench.Row("pagewalk", 1_000_000, result(0.5), None),
            bench.Row("pagewalk-sev", 1_000_000, result(0.625), None)]
    assert bench.format_sev_comparison(rows) == (
        "pagewalk SEV on/off: 1,600,000 / 2,000,000 instr/s = 0.80x")
    assert bench.format_sev_comparison(rows, [0.9, 0.7, 0.8, 1.0]) == (
        "pagewalk SEV on/off: 1,600,000 / 2,000,000 instr/s = 0.80x (best of 4 alternating "
        "rounds each; the rounds' ratios 0.70-1.00, median 0.85)")
    assert bench.format_sev_comparison(rows[:1]) is None


def test_forms_are_counted_per_executed_instruction():
    # call at n = 1: the 3 set-up instructions and one pass of the 9 in the loop
    counts = bench.count_forms(["call"], scale=1e-9)
    assert counts == dict.fromkeys(
        ["XOR_RM32_R32", "MOV_R32_IMM32", "JMP_REL8_64", "CALL_REL32_64", "PUSH_R64",
         "MOV_RM64_R64", "IMUL_R64_RM64", "ADD_RM64_R64", "POP_R64", "RETNQ", "DEC_RM64",
         "JNE_REL8_64"], 1)
    counts = bench.count_forms(["alu"], scale=2.4e-6)        # n = 3
    assert counts["DEC_RM64"] == counts["JNE_REL8_64"] == 3
    assert sum(counts.values()) == bench.WORKLOADS["alu"].instructions(3)
