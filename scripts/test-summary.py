#!/usr/bin/env python3
"""test-summary.py LABEL TESTLOG.json: count test cases in a meson test log.

Every suite speaks TAP (cmocka with CMOCKA_MESSAGE_OUTPUT=TAP), so each
test case is one "ok"/"not ok" line. A suite that died without reporting
(a crash, a watchdog abort, a sanitizer report) counts as one failure.
Prints "LABEL: N passed, N failed, N skipped" and a line per failure.
"""
import json
import re
import sys

label, path = sys.argv[1], sys.argv[2]
passed = failed = skipped = 0
failures = []
with open(path) as f:
    for line in f:
        t = json.loads(line)
        out = t.get("stdout") or ""
        ok = not_ok = skip = 0
        for m in re.finditer(r"^(not ok|ok)\b[^\n]*", out, re.M):
            text = m.group(0)
            if "# SKIP" in text.upper():
                skip += 1
            elif m.group(1) == "ok":
                ok += 1
            else:
                not_ok += 1
                failures.append(f"{t['name']}: {text}")
        if t.get("result") not in ("OK", "SKIP", "EXPECTEDFAIL") and not_ok == 0:
            not_ok += 1
            failures.append(f"{t['name']}: {t.get('result')} (no report)")
        passed, failed, skipped = passed + ok, failed + not_ok, skipped + skip
for f in failures:
    print(f"FAILED {label}: {f}")
print(f"{label}: {passed} passed, {failed} failed, {skipped} skipped")
