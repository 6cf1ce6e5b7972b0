"""A result file streamed into results/ chunk by chunk is written exactly as the
line-by-line text read of the downloaded file wrote it (stripped lines, blank ones dropped,
any line ending), whatever the chunk boundaries, and the same keys are noted."""
from __future__ import annotations

import io
import json
import re

from hypothesis import given, settings as hsettings, strategies as st

from pipeline.jobs import ResultScan
from transforms.gemini_client import parse_result_line


def reference(data: bytes) -> tuple[bytes, set, set]:
    """What download_finished wrote before it streamed: a text-mode read, line by line."""
    out, seen, retry = io.BytesIO(), set(), set()
    for line in io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"):
        line = line.strip()
        if not line:
            continue
        out.write(line.encode("utf-8") + b"\n")
        if '"error"' in line:
            parsed = parse_result_line(line)
            if parsed.key is not None:
                seen.add(parsed.key)
                if parsed.retryable:
                    retry.add(parsed.key)
        else:
            match = re.search(r'"key"\s*:\s*"([^"]+)"', line)
            if match:
                seen.add(match.group(1))
    return out.getvalue(), seen, retry


LINE = st.one_of(
    st.builds(lambda k, v: json.dumps({"key": k, "response": {"embedding": {"values": v}}}),
              st.text("abcdef0123", min_size=1, max_size=6), st.lists(st.floats(-1, 1), max_size=3)),
    st.builds(lambda k, c: json.dumps({"key": k, "error": {"code": c, "message": "x"}}),
              st.text("abcdef", min_size=1, max_size=4), st.sampled_from([3, 429, 500])),
    st.sampled_from(["", "   ", "\t", "\x1c", "not json", '{"key":"ü-é","response":{}}', " \u2028 "]),
)


@hsettings(max_examples=300, deadline=None)
@given(lines=st.lists(LINE, max_size=12), ends=st.lists(st.sampled_from(["\n", "\r\n", "\r"]), min_size=1),
       cuts=st.lists(st.integers(1, 40), max_size=20), final_newline=st.booleans())
def test_streamed_results_equal_the_text_mode_read(lines, ends, cuts, final_newline):
    text = "".join(line + ends[i % len(ends)] for i, line in enumerate(lines))
    if not final_newline and text:
        text = text.rstrip("\r\n")
    data = text.encode("utf-8")
    out = io.BytesIO()
    scan = ResultScan(out)
    pos = 0
    for cut in cuts:
        scan.write(data[pos:pos + cut])
        pos += cut
    scan.write(data[pos:])
    scan.close()
    want, seen, retry = reference(data)
    assert out.getvalue() == want
    assert (scan.seen, scan.retry) == (seen, retry)
