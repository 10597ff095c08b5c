#!/usr/bin/env python3
"""test-summary.py LABEL TESTLOG.json: count test cases in a meson test log.

Every suite is a cmocka program; its report has one result line per test
case ("[       OK ] name", "[  FAILED  ] name", "[  SKIPPED ] name",
"[  ERROR   ] name") after the case's "[ RUN      ] name". A suite that
died without finishing its report (a crash, a watchdog abort, a sanitizer
report) counts its unreported cases, or at least one, as failed.
Prints "LABEL: N passed, N failed, N skipped" and a line per failure.
"""
import json
import re
import sys

RUN = re.compile(r"^\[ RUN      \] (\S+)\s*$")
RESULT = re.compile(r"^\[\s*(OK|FAILED|SKIPPED|ERROR)\s*\] (\S+)\s*$")
PLAN = re.compile(r"^\[==========\] Running (\d+) test")


def count_suite(t, failures):
    out = (t.get("stdout") or "") + "\n" + (t.get("stderr") or "")
    ok = bad = skip = planned = 0
    running = None
    for line in out.splitlines():
        m = PLAN.match(line)
        if m:
            planned += int(m.group(1))
            continue
        m = RUN.match(line)
        if m:
            running = m.group(1)
            continue
        m = RESULT.match(line)
        if not m or m.group(2) != running:
            continue
        running = None
        if m.group(1) == "OK":
            ok += 1
        elif m.group(1) == "SKIPPED":
            skip += 1
        else:
            bad += 1
            failures.append(f"{t['name']}: {m.group(2)}")
    unreported = max(planned - ok - bad - skip, 0)
    if t.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL") and not bad and not unreported:
        unreported = 1
    if unreported:
        bad += unreported
        failures.append(f"{t['name']}: {t.get('result')} ({unreported} case(s) unreported)")
    return ok, bad, skip


def main():
    label, path = sys.argv[1], sys.argv[2]
    passed = failed = skipped = 0
    failures = []
    with open(path) as f:
        for line in f:
            ok, bad, skip = count_suite(json.loads(line), failures)
            passed, failed, skipped = passed + ok, failed + bad, skipped + skip
    for f in failures:
        print(f"FAILED {label}: {f}")
    print(f"{label}: {passed} passed, {failed} failed, {skipped} skipped")


main()
