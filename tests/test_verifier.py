"""The deterministic output verifier: each rule fires when it should and only then."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lassi_batch.core.config import OutputCheck
from lassi_batch.screening import verifier
from lassi_batch.screening.verifier import (
    Finding,
    VerifierReport,
    close,
    energy_sanity,
    numbers_in,
    parse_number,
    verify,
)

CHECK = OutputCheck(
    pass_regex="^PASS$",
    fail_regex="^FAIL",
    checksum_regex="^checksum = (\\S+)",
    rtol=1e-6,
    ignore_regex="(?i)(^work:|time|elapsed)",
    work_regex="^work: steps=(\\d+)",
)

NUMBERS_ONLY = OutputCheck(pass_regex="^PASS$", rtol=1e-6)

SOURCE = """\
demo: grid 128 x 128, steps 20
total_heat = 2.6147943050e+05
max_change_last = 6.7626253075e-01
settle_step = 14
checksum = 9.5132126890e+06
loop time: 0.008 s
work: steps=20 launches=20 bytes_copied=5408000
PASS
"""


def kinds(report: VerifierReport, severity: str | None = None) -> set[str]:
    return {f.kind for f in report.findings if severity is None or f.severity == severity}


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    "token, value, quantum",
    [
        ("20", 20.0, 1.0),
        ("-3.25", -3.25, 0.01),
        ("1.2345e-03", 1.2345e-3, 1e-7),
        ("6.0E+2", 600.0, 10.0),
        (".5", 0.5, 0.1),
        ("3.", 3.0, 1.0),
        ("1.5s", 1.5, 0.1),
        ("12%", 12.0, 1.0),
    ],
)
def test_parse_number_keeps_value_and_printed_resolution(token: str, value: float, quantum: float) -> None:
    n = parse_number(token)
    assert n is not None
    assert n.value == pytest.approx(value)
    assert n.quantum == pytest.approx(quantum)


@pytest.mark.parametrize("token", ["heat2d", "0x1f", "max_change", "1_000", "abc", "", "...", "1.2.3", "256x256"])
def test_parse_number_rejects_words_and_identifiers(token: str) -> None:
    assert parse_number(token) is None


@pytest.mark.parametrize("token, expect", [("nan", "nan"), ("-nan", "nan"), ("inf", "+inf"), ("-inf", "-inf"), ("Infinity", "+inf")])
def test_parse_number_special_values(token: str, expect: str) -> None:
    n = parse_number(token)
    assert n is not None
    if expect == "nan":
        assert math.isnan(n.value)
    else:
        assert n.value == (math.inf if expect == "+inf" else -math.inf)


def test_parse_number_survives_absurd_exponents() -> None:
    big = parse_number("1e400")
    assert big is not None and big.value == math.inf
    tiny = parse_number("1e-400")
    assert tiny is not None and tiny.value == 0.0


def test_numbers_in_splits_on_separators() -> None:
    vals = [n.value for n in numbers_in("x=1.5, y: -2 (z=3e2) [4] ratio 5%")]
    assert vals == [1.5, -2.0, 300.0, 4.0, 5.0]


def test_close_tolerance_edges() -> None:
    a = parse_number("1.000000000000e+00")
    assert a is not None
    inside = parse_number("1.000000900000e+00")
    outside = parse_number("1.000001100000e+00")
    assert inside is not None and outside is not None
    assert close(a, inside, rtol=1e-6, atol=0.0)
    assert not close(a, outside, rtol=1e-6, atol=0.0)
    # Near zero only atol and the printed resolution help.
    zero, small = parse_number("0.0000000000e+00"), parse_number("1.0000000000e-09")
    assert zero is not None and small is not None
    assert not close(zero, small, rtol=1e-6, atol=0.0)
    assert close(zero, small, rtol=1e-6, atol=1e-8)


def test_close_allows_half_a_printed_digit() -> None:
    coarse, fine, off = parse_number("0.000123"), parse_number("1.2345678e-04"), parse_number("1.2360000e-04")
    assert coarse and fine and off
    assert close(coarse, fine, rtol=1e-9, atol=0.0)
    assert not close(coarse, off, rtol=1e-9, atol=0.0)
    assert not close(fine, coarse, rtol=1e-9, atol=0.0, coarser=False)  # judged at the source's digits


def test_close_special_values() -> None:
    nan, inf, ninf, one = (parse_number(t) for t in ("nan", "inf", "-inf", "1.0"))
    assert nan and inf and ninf and one
    assert close(nan, nan, 1e-6, 0.0)
    assert not close(nan, one, 1e-6, 1.0)
    assert close(inf, inf, 1e-6, 0.0)
    assert not close(inf, ninf, 1e-6, 0.0)
    assert not close(inf, one, 1e-6, 1e300)


def test_integers_do_not_absorb_an_off_by_one() -> None:
    a, b = parse_number("20"), parse_number("21")
    assert a and b and not close(a, b, rtol=1e-6, atol=0.0)


# ---------------------------------------------------------------- whole outputs


def test_identical_outputs_pass() -> None:
    report = verify(CHECK, SOURCE, SOURCE, 0)
    assert report.verdict == "pass", report.findings
    assert report.stats["numbers_compared"] == 7  # 128, 128, 20, three results and the checksum


def test_nonzero_exit_fails() -> None:
    report = verify(CHECK, SOURCE, SOURCE, 3)
    assert report.verdict == "fail"
    assert "exit" in kinds(report, "fail")
    assert verify(CHECK, SOURCE, SOURCE, None).verdict == "fail"


def test_missing_pass_line_fails() -> None:
    report = verify(CHECK, SOURCE, SOURCE.replace("PASS\n", ""), 0)
    assert report.verdict == "fail"
    assert kinds(report, "fail") == {"pass_line"}


def test_pass_must_be_a_whole_line() -> None:
    report = verify(CHECK, SOURCE, SOURCE.replace("PASS\n", "PASSED? no\n"), 0)
    assert "pass_line" in kinds(report, "fail")


def test_fail_line_fails_even_with_pass() -> None:
    report = verify(CHECK, SOURCE, SOURCE + "FAIL: sample 3 differs\n", 0)
    assert report.verdict == "fail"
    assert "fail_line" in kinds(report, "fail")
    assert "sample 3 differs" in next(f.message for f in report.findings if f.kind == "fail_line")


def test_pass_rule_the_source_breaks_is_only_a_warning() -> None:
    src = SOURCE.replace("PASS\n", "")
    report = verify(CHECK, src, src, 0)
    assert report.verdict == "warn"
    assert kinds(report) == {"pass_line"}


def test_checksum_beyond_tolerance_fails() -> None:
    cand = SOURCE.replace("checksum = 9.5132126890e+06", "checksum = 9.5133126890e+06")
    report = verify(CHECK, SOURCE, cand, 0)
    assert report.verdict == "fail"
    assert kinds(report, "fail") == {"checksum", "numbers"}  # the checksum line is a numeric line too
    assert "9.5132126890e+06" in report.failures[0].message


def test_checksum_within_tolerance_passes() -> None:
    cand = SOURCE.replace("checksum = 9.5132126890e+06", "checksum = 9.5132126990e+06")  # 1e-9 relative
    assert verify(CHECK, SOURCE, cand, 0).verdict == "pass"


def test_missing_checksum_fails() -> None:
    cand = SOURCE.replace("checksum = 9.5132126890e+06\n", "")
    report = verify(CHECK, SOURCE, cand, 0)
    assert report.verdict == "fail"
    assert "checksum" in kinds(report, "fail")


def test_non_numeric_checksum_fails() -> None:
    cand = SOURCE.replace("checksum = 9.5132126890e+06", "checksum = pending")
    assert "checksum" in kinds(verify(CHECK, SOURCE, cand, 0), "fail")


def test_nan_checksum_fails_against_a_number() -> None:
    cand = SOURCE.replace("checksum = 9.5132126890e+06", "checksum = -nan")
    assert "checksum" in kinds(verify(CHECK, SOURCE, cand, 0), "fail")


def test_repeat_loop_deleted_is_caught_by_work_even_when_checksum_matches() -> None:
    # The bsearch case from the paper: results unchanged, the measured repetitions gone.
    cand = SOURCE.replace("work: steps=20 launches=20", "work: steps=1 launches=1")
    report = verify(CHECK, SOURCE, cand, 0)
    assert report.verdict == "fail"
    assert kinds(report, "fail") == {"work"}
    msg = report.failures[0].message
    assert "work was removed" in msg and "20 -> 1" in msg


def test_more_work_and_fewer_launches_are_fine() -> None:
    # Launch and byte counts on the work line may shrink in a good refactor; only steps count.
    cand = SOURCE.replace("work: steps=20 launches=20 bytes_copied=5408000", "work: steps=20 launches=40 bytes_copied=8")
    assert verify(CHECK, SOURCE, cand, 0).verdict == "pass"


def test_missing_work_line_fails() -> None:
    cand = SOURCE.replace("work: steps=20 launches=20 bytes_copied=5408000\n", "")
    report = verify(CHECK, SOURCE, cand, 0)
    assert "work" in kinds(report, "fail")


def test_no_work_line_in_source_means_no_work_rule() -> None:
    src = SOURCE.replace("work: steps=20 launches=20 bytes_copied=5408000\n", "")
    assert verify(CHECK, src, src, 0).verdict == "pass"


def test_formatting_only_differences_pass() -> None:
    cand = """\
demo: grid 128 x 128, steps 20
Total heat: 261479.43050
max_change_last=0.67626253075
settle_step   =   14
checksum = 9513212.6890
elapsed: 0.002 s
work: steps=20 launches=20 bytes_copied=5408000
PASS
"""
    report = verify(CHECK, SOURCE, cand, 0)
    assert report.verdict == "pass", report.findings


def test_rewrapped_lines_pass() -> None:
    cand = SOURCE.replace(
        "total_heat = 2.6147943050e+05\nmax_change_last = 6.7626253075e-01\n",
        "heat and change: 2.6147943050e+05 6.7626253075e-01\n",
    )
    assert verify(CHECK, SOURCE, cand, 0).verdict == "pass"


def test_changed_result_number_fails_with_location() -> None:
    cand = SOURCE.replace("max_change_last = 6.7626253075e-01", "max_change_last = 6.7700000000e-01")
    report = verify(CHECK, SOURCE, cand, 0)
    assert report.verdict == "fail"
    msg = next(f.message for f in report.findings if f.kind == "numbers")
    assert "line 3" in msg and "6.7626253075e-01" in msg


def test_changed_integer_fails() -> None:
    cand = SOURCE.replace("settle_step = 14", "settle_step = 15")
    assert "numbers" in kinds(verify(CHECK, SOURCE, cand, 0), "fail")


def test_timing_lines_are_ignored() -> None:
    cand = SOURCE.replace("loop time: 0.008 s", "loop time: 9.999 s")
    assert verify(CHECK, SOURCE, cand, 0).verdict == "pass"


def test_dropped_result_line_fails() -> None:
    cand = SOURCE.replace("settle_step = 14\n", "")
    report = verify(CHECK, SOURCE, cand, 0)
    assert report.verdict == "fail"
    assert "no counterpart" in next(f.message for f in report.findings if f.kind == "numbers")


def test_extra_diagnostic_line_only_warns() -> None:
    cand = SOURCE.replace("settle_step = 14\n", "settle_step = 14\nfused kernels: 2\n")
    report = verify(CHECK, SOURCE, cand, 0)
    assert report.verdict == "warn"
    assert kinds(report) == {"numbers"}


def test_reworded_line_plus_extra_line_still_pairs_numbers() -> None:
    good = SOURCE.replace("settle_step = 14\n", "steps to settle: 14\nblock size 256\n")
    assert verify(CHECK, SOURCE, good, 0).verdict == "warn"
    bad = SOURCE.replace("settle_step = 14\n", "steps to settle: 99\nblock size 256\n")
    assert verify(CHECK, SOURCE, bad, 0).verdict == "fail"


def test_fewer_digits_fail_even_when_the_value_agrees() -> None:
    cand = SOURCE.replace("max_change_last = 6.7626253075e-01", "max_change_last = 0.68")
    report = verify(CHECK, SOURCE, cand, 0)
    assert report.verdict == "fail"
    assert kinds(report, "fail") == {"digits"}
    assert "fewer significant digits" in report.findings[0].message


def test_checksum_with_fewer_digits_fails() -> None:
    # 19% off would pass at one printed digit; the digit count itself must fail
    cand = SOURCE.replace("checksum = 9.5132126890e+06", "checksum = 1e+07")
    assert "digits" in kinds(verify(CHECK, SOURCE, cand, 0), "fail")
    close_enough = SOURCE.replace("checksum = 9.5132126890e+06", "checksum = 9.513213e+06")
    assert "digits" in kinds(verify(CHECK, SOURCE, close_enough, 0), "fail")


def test_same_format_across_a_decade_is_not_fewer_digits() -> None:
    src = "result = 9.9999999999e-01\nPASS\n"
    cand = "result = 1.0000000000e+00\nPASS\n"
    assert verify(NUMBERS_ONLY, src, cand, 0).verdict == "pass"
    assert not verifier.fewer_digits(parse_number("9.9999999999e-01"), parse_number("1.0000000000e+00"))
    assert verifier.fewer_digits(parse_number("1.2345678901e+00"), parse_number("1.23456789e+00"))
    assert not verifier.fewer_digits(parse_number("0.0"), parse_number("0.000"))
    assert verifier.fewer_digits(parse_number("0.000"), parse_number("0.0"))


def test_number_dropped_from_a_line_fails() -> None:
    src = "stats: 1.25 2.50 3.75\nPASS\n"
    assert verify(NUMBERS_ONLY, src, "stats: 1.25 2.50\nPASS\n", 0).verdict == "fail"
    assert verify(NUMBERS_ONLY, src, "stats: 1.25 2.50 3.75\nPASS\n", 0).verdict == "pass"


def test_numbers_on_the_checksum_line_are_compared_too() -> None:
    src = "checksum = 1.5000000000e+00 items 12\nPASS\n"
    check = OutputCheck(pass_regex="^PASS$", checksum_regex="^checksum = (\\S+)")
    assert verify(check, src, src, 0).verdict == "pass"
    assert "numbers" in kinds(verify(check, src, src.replace("items 12", "items 13"), 0), "fail")


# ---------------------------------------------------------------- the default ignore rule: timings only


@pytest.mark.parametrize("line, changed", [
    ("L2 norms 1.2500000000e+00", "L2 norms 1.2600000000e+00"), ("timestep 60 energy 12.5", "timestep 60 energy 12.7"),
    ("atoms 1000", "atoms 999"), ("items 55", "items 54"), ("Table size = 67108864", "Table size = 33554432"),
    ("Number of updates = 268435456", "Number of updates = 268435"), ("messages 12", "messages 11"),
    ("systems 4", "systems 3"), ("timesteps: 100", "timesteps: 99"),
])
def test_default_ignore_rule_keeps_result_lines(line: str, changed: str) -> None:
    assert verify(OutputCheck(), line + "\n", changed + "\n", 0).verdict == "fail", line


@pytest.mark.parametrize("line", [
    "loop time: 0.123 s (2 threads)", "Average kernel execution time: 0.558922 (s)",
    "Average kernel execution time (AoS): 89899.2 (us)", "Device offloading time = 0.5 (s)",
    "elapsed 12.5", "kernel took 3.2 ms", "Bandwidth: 123.4 GB/s", "runtime = 4.5", "12.5 GFLOP/s",
])
def test_default_ignore_rule_skips_timing_lines(line: str) -> None:
    changed = line.replace("0.", "9.").replace("12.5", "99.1").replace("3.2", "7.7").replace("89899.2", "1.0").replace("4.5", "8.5").replace("123.4", "1.0")
    assert changed != line
    assert verify(OutputCheck(), line + "\n", changed + "\n", 0).verdict == "pass", line


# ---------------------------------------------------------------- every repeat


def test_every_repeat_is_verified() -> None:
    bad = SOURCE.replace("checksum = 9.5132126890e+06", "checksum = 9.5132000000e+06")
    report = verifier.verify_runs(CHECK, SOURCE, [(SOURCE, 0), (SOURCE, 0), (bad, 0)])
    assert report.verdict == "fail"
    assert any(f.message.startswith("repeat 3:") and f.kind == "checksum" for f in report.findings)
    assert report.stats["repeats_verified"] == 3
    assert verifier.verify_runs(CHECK, SOURCE, [(SOURCE, 0)] * 3).verdict == "pass"


def test_a_later_repeat_that_crashes_fails() -> None:
    report = verifier.verify_runs(CHECK, SOURCE, [(SOURCE, 0), ("", 139)])
    assert report.verdict == "fail" and any(f.message.startswith("repeat 2:") for f in report.findings)


def test_findings_of_the_first_repeat_are_not_repeated() -> None:
    cand = SOURCE.replace("settle_step = 14\n", "settle_step = 14\nfused kernels: 2\n")
    report = verifier.verify_runs(CHECK, SOURCE, [(cand, 0), (cand, 0)])
    assert len(report.findings) == 1 and report.verdict == "warn"


# ---------------------------------------------------------------- results typed into the code


def test_printed_results_typed_into_the_code_are_found() -> None:
    src_code = {"main.cpp": "int main() { double alpha = 0.2; /* ... */ }"}
    cheat = {"main.cpp": 'if (n == 128) { printf("checksum = %.10e\\n", 9513212.689); }'}
    f = verifier.hardcoded_results(CHECK, SOURCE, src_code, cheat)
    assert f is not None and f.severity == "fail" and "9513212.689" in f.message
    as_text = {"main.cpp": 'puts("total_heat = 2.6147943050e+05");'}
    assert verifier.hardcoded_results(CHECK, SOURCE, src_code, as_text) is not None


def test_constants_and_small_numbers_are_not_results() -> None:
    src_code = {"main.cpp": "const double k = 6.7626253075e-01;"}  # the source has it itself
    cand = {"main.cpp": "const double k = 6.7626253075e-01; int n = 128, steps = 20, settle = 14; double a = 0.2;"}
    assert verifier.hardcoded_results(CHECK, SOURCE, src_code, cand) is None
    timing = {"main.cpp": "double t = 0.008;"}  # printed on an ignored line
    assert verifier.hardcoded_results(CHECK, SOURCE, src_code, timing) is None


@pytest.mark.parametrize("code", [
    'puts("total_heat = 2.61" "47943050e+05");',  # adjacent string literals, split inside the digits
    'puts("total_heat = 2.61"\n  /* joined */ "4794305" "0e+05");',
    f"double h = {float.hex(2.6147943050e+05)};",  # a hexadecimal floating literal
    "static const char t[] = {%s, 0};" % ", ".join(str(ord(c)) for c in "2.6147943050e+05"),  # byte codes
    "static const unsigned char t[] = {%s};" % ", ".join(hex(ord(c)) for c in "2.6147943050"),
    "char t[] = {'2', '.', '6', '1', '4', '7', '9', '4', '3', '0', '5'};",  # character literals
    "int d[] = {2, 6, 1, 4, 7, 9, 4, 3, 0, 5};",  # one digit per item
    "double v = 2614794.30500e-1;",  # another spelling of the same value
    "double v = 261'479.4305;",  # digit separators
])
def test_results_are_found_in_any_spelling(code: str) -> None:
    src_code = {"main.cpp": "int main() { double alpha = 0.2; }"}
    f = verifier.hardcoded_results(CHECK, SOURCE, src_code, {"main.cpp": code})
    assert f is not None and f.kind == "hardcoded" and f.severity == "fail", code


def test_the_sources_own_digits_and_unrelated_arrays_are_not_results() -> None:
    src_code = {"main.cpp": 'const char* ref = "2.6147943050e+05";'}  # the source spells it itself
    cand = {"main.cpp": 'const char* ref = "2.61" "47943050e+05"; int lut[] = {1, 2, 3, 4, 5, 6, 7, 8, 9};'
                        "unsigned long long h = 0x9E3779B97F4A7C15ull; float f = 1.5f;"}
    assert verifier.hardcoded_results(CHECK, SOURCE, src_code, cand) is None


def test_c_numbers_in_every_spelling() -> None:
    assert verifier.c_number("0x1.8p+3") == 12.0
    assert verifier.c_number("0xFFull") == 255.0
    assert verifier.c_number("1'000") == 1000.0
    assert verifier.c_number("017") == 15.0
    assert verifier.c_number("0b101") == 5.0
    assert verifier.c_number("2.5f") == 2.5 and verifier.c_number("1e5L") == 1e5
    assert verifier.c_number("0x") is None


# ---------------------------------------------------------------- negative tests


def test_a_candidate_that_reports_success_where_the_source_fails_is_caught() -> None:
    src = ("x = 1.0\nFAIL\n", 1)
    fs = verifier.negative_findings(CHECK, ["3", "10000"], src, ("x = 1.0\nPASS\n", 0))
    assert [(f.kind, f.severity) for f in fs] == [("negative_test", "fail")]
    assert verifier.negative_findings(CHECK, ["3"], src, ("x = 1.0\nFAIL\n", 1)) == []  # fails the same way
    rejected = ("", 2)  # an argument the program refuses
    assert verifier.negative_findings(CHECK, ["0"], rejected, ("", 2)) == []
    assert [f.severity for f in verifier.negative_findings(CHECK, ["0"], rejected, ("", 1))] == ["info"]
    assert [f.severity for f in verifier.negative_findings(CHECK, ["0"], rejected, ("PASS\n", 0))] == ["fail"]
    # the source passes its own negative test: the app's declaration is wrong, not the candidate
    assert [f.severity for f in verifier.negative_findings(CHECK, ["1"], ("PASS\n", 0), ("PASS\n", 0))] == ["warn"]


def test_what_reports_failure() -> None:
    assert verifier.reports_failure(CHECK, "PASS\n", 3)
    assert verifier.reports_failure(CHECK, "PASS\n", None)
    assert verifier.reports_failure(CHECK, "FAIL\n", 0)
    assert verifier.reports_failure(CHECK, "done\n", 0)  # no pass line where the app declares one
    assert not verifier.reports_failure(CHECK, "PASS\n", 0)


def test_compare_numbers_can_be_turned_off() -> None:
    check = OutputCheck(pass_regex="^PASS$", compare_numbers=False)
    cand = SOURCE.replace("settle_step = 14", "settle_step = 99")
    assert verify(check, SOURCE, cand, 0).verdict == "pass"


def test_default_check_still_compares_numbers_and_exit() -> None:
    check = OutputCheck()
    assert verify(check, "result 1.0\n", "result 1.0\n", 0).verdict == "pass"
    assert verify(check, "result 1.0\n", "result 2.0\n", 0).verdict == "fail"
    assert verify(check, "result 1.0\n", "result 1.0\n", 139).verdict == "fail"


def test_crlf_line_endings_are_accepted() -> None:
    assert verify(CHECK, SOURCE, SOURCE.replace("\n", "\r\n"), 0).verdict == "pass"


def test_huge_output_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verifier, "MAX_NUMERIC_LINES", 50)
    body = "".join(f"value {i} = {i * 0.5:.6e}\n" for i in range(5000))
    src = body + SOURCE
    report = verify(CHECK, src, src, 0)
    assert report.verdict == "pass"
    assert "truncated" in kinds(report, "info")
    assert report.stats["numbers_compared"] <= 100


def test_output_over_char_limit_is_cut(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verifier, "MAX_CHARS", 1000)
    src = SOURCE + "x" * 5000
    report = verify(CHECK, src, src, 0)
    assert "truncated" in kinds(report, "info")
    assert report.verdict == "pass"


def test_report_round_trips_through_dict() -> None:
    report = verify(CHECK, SOURCE, SOURCE.replace("PASS\n", ""), 2)
    again = VerifierReport.from_dict(report.to_dict())
    assert again == report
    assert again.to_dict()["verdict"] == "fail"
    assert all(set(f) == {"kind", "severity", "message"} for f in report.to_dict()["findings"])


def test_extended_recomputes_verdict() -> None:
    report = verify(CHECK, SOURCE, SOURCE, 0)
    assert report.extended([None]).verdict == "pass"
    assert report.extended([Finding("energy", "warn", "x")]).verdict == "warn"
    assert report.extended([Finding("implausible_saving", "held", "x")]).verdict == "warn"
    assert report.extended([Finding("energy", "fail", "x")]).verdict == "fail"
    assert report.verdict == "pass"  # the original is not modified


# ---------------------------------------------------------------- energy sanity


def test_energy_sanity_holds_huge_savings() -> None:
    f = energy_sanity(100.0, 0.4, 5.0, 0.02)
    assert f is not None and f.severity == "held" and f.kind == "implausible_saving"
    assert "99.6%" in f.message


def test_energy_falling_far_more_than_run_time_is_held() -> None:
    f = energy_sanity(100.0, 30.0, 10.0, 9.0)  # power fell to a third: work moved out of sight?
    assert f is not None and f.severity == "held" and "average power" in f.message
    assert energy_sanity(100.0, 60.0, 10.0, 9.0) is None  # a third less power is ordinary


def test_energy_sanity_quiet_for_ordinary_savings() -> None:
    assert energy_sanity(100.0, 40.0, 5.0, 3.0) is None
    assert energy_sanity(100.0, 120.0) is None


def test_energy_sanity_runtime_alone_can_trigger() -> None:
    f = energy_sanity(100.0, 50.0, 10.0, 0.5)
    assert f is not None and "runtime" in f.message and "energy" not in f.message.split(":")[1].split(";")[0]


def test_one_outlying_source_repeat_does_not_hold_an_honest_rewrite() -> None:
    """The means say 93.8% (above 90%), but the source's repeats spread too far for that to be
    beyond noise: the hold uses the decisions' Welch test."""
    src, cand = [3.06, 0.83, 0.93], [0.10, 0.11, 0.09]
    assert 1 - sum(cand) / sum(src) > 0.9
    assert energy_sanity(src, cand) is None
    held = energy_sanity([1.00, 1.02, 0.98], [0.010, 0.011, 0.012])  # a tight source: beyond noise
    assert held is not None and held.severity == "held" and "Welch p" in held.message
    # the power rule: energy to a third while run time stays, on medians and beyond noise
    f = energy_sanity([100.0, 101.0, 99.0], [30.0, 31.0, 29.0], [10.0, 10.1, 9.9], [9.0, 9.1, 8.9])
    assert f is not None and "average power" in f.message
    assert energy_sanity([100.0, 300.0, 20.0], [30.0, 31.0, 29.0], [10.0, 10.1, 9.9], [9.0, 9.1, 8.9]) is None


@pytest.mark.parametrize("args", [(None, 1.0), (0.0, 1.0), (math.nan, 1.0), (100.0, None), (-5.0, 1.0)])
def test_energy_sanity_ignores_missing_or_bad_values(args: tuple[float | None, float | None]) -> None:
    assert energy_sanity(*args) is None


# ---------------------------------------------------------------- properties

_line_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\r\n"), max_size=40)
_outputs = st.lists(_line_text, max_size=30).map(lambda lines: "\n".join(lines))


@settings(max_examples=150, deadline=None)
@given(_outputs)
def test_identical_outputs_never_fail(text: str) -> None:
    report = verify(CHECK, text, text, 0)
    assert report.verdict != "fail", report.findings
    assert not any(f.kind in ("numbers", "work") for f in report.findings)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e12, max_value=1e12), min_size=1, max_size=20))
def test_reprinting_with_more_digits_passes(values: list[float]) -> None:
    src = "".join(f"v{i} = {v:.8e}\n" for i, v in enumerate(values)) + "PASS\n"
    cand = "".join(f"v{i}: {float(f'{v:.8e}'):.12e}\n" for i, v in enumerate(values)) + "PASS\n"
    assert verify(NUMBERS_ONLY, src, cand, 0).verdict == "pass"


@settings(max_examples=150, deadline=None)
@given(
    st.floats(min_value=1e-6, max_value=1e9, allow_nan=False),
    st.floats(min_value=1e-4, max_value=10.0),
)
def test_relative_change_beyond_rtol_fails(value: float, change: float) -> None:
    src = f"result = {value:.12e}\nPASS\n"
    cand = f"result = {value * (1 + change):.12e}\nPASS\n"
    assert verify(NUMBERS_ONLY, src, cand, 0).verdict == "fail"


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=1, max_value=10**9), st.integers(min_value=1, max_value=10**9))
def test_work_rule_is_monotone(source_steps: int, cand_steps: int) -> None:
    src = f"work: steps={source_steps}\nPASS\n"
    cand = f"work: steps={cand_steps}\nPASS\n"
    report = verify(CHECK, src, cand, 0)
    assert (report.verdict == "fail") == (cand_steps < source_steps)


def test_loose_checksum_capture_tolerates_trailing_punctuation() -> None:
    check = OutputCheck(checksum_regex="checksum (\\S+)")
    src = "checksum 1.2500000000e+03, done\n"
    assert verify(check, src, "checksum 1250.0000000;\n", 0).verdict == "pass"
    assert "checksum" in kinds(verify(check, src, "checksum 1251.0000000;\n", 0), "fail")
