"""The fast result-line parser (orjson + numpy) gives exactly the outcome of the original
stdlib parser for every line: same key, values (bit for bit), token count, error code,
message and retryability, including the lines its fast path must hand back."""
from __future__ import annotations

import json

import numpy as np
from hypothesis import given, settings as hsettings, strategies as st

from transforms.gemini_client import classify_error, parse_result_line


def reference_parse(line):
    """The parser as it was before the fast path (json.loads + per-item type checks)."""

    def bad(key, message):
        return (key, None, None, None, message, True)

    def int_or_none(value):
        if isinstance(value, bool) or value is None:
            return None
        try:
            return int(value)
        except (TypeError, ValueError):
            return None

    def token_count(obj):
        direct = int_or_none(obj.get("tokenCount", obj.get("token_count")))
        if direct is not None:
            return direct
        usage = obj.get("usageMetadata") or obj.get("usage_metadata")
        if isinstance(usage, dict):
            for name in ("promptTokenCount", "prompt_token_count", "totalTokenCount",
                         "total_token_count"):
                count = int_or_none(usage.get(name))
                if count is not None:
                    return count
        return None

    try:
        obj = json.loads(line)
    except (TypeError, ValueError) as exc:
        return bad(None, f"malformed result line ({type(exc).__name__})")
    if not isinstance(obj, dict):
        return bad(None, "malformed result line (not a JSON object)")
    key = None if obj.get("key") is None else str(obj["key"])
    response = obj.get("response") if isinstance(obj.get("response"), dict) else {}
    error = obj.get("error") or response.get("error")
    if error:
        if isinstance(error, dict):
            code = int_or_none(error.get("code"))
            status = error.get("status") if isinstance(error.get("status"), str) else None
            message = str(error.get("message") or status or "unspecified error")
        else:
            code, status, message = None, None, str(error)
        return (key, None, None, code, message, classify_error(code, status))
    holder = response if response else obj
    emb = holder.get("embedding")
    if not isinstance(emb, dict) and isinstance(holder.get("embeddings"), list) and holder["embeddings"]:
        emb = holder["embeddings"][0]
    if not isinstance(emb, dict) or emb.get("values") is None:
        return bad(key, "result line has neither an embedding nor an error")
    raw = emb["values"]
    if not isinstance(raw, list) or not raw or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw):
        return bad(key, "embedding values are not a non-empty list of numbers")
    values = np.asarray(raw, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        return bad(key, "embedding values contain NaN or infinity")
    return (key, values, token_count(response) or token_count(obj), None, None, False)


def as_tuple(result):
    return (result.key, result.values, result.token_count, result.error_code,
            result.error_message, result.retryable)


def assert_outcome(got, want, line):
    """Same key, error and tokens; values bit for bit as float32, or both None."""
    assert got[0] == want[0] and got[2:] == want[2:], line
    if want[1] is None:
        assert got[1] is None, line
    else:
        assert got[1].dtype == np.float32 and got[1].tobytes() == want[1].tobytes(), line


def expected(line):
    """The reference's outcome; where it raised (nested past the recursion limit, a
    number no float holds), the malformed line of its key that the parser now gives."""
    try:
        return reference_parse(line)
    except RecursionError:
        try:
            obj = json.loads(line)
        except RecursionError:
            return (None, None, None, None, "malformed result line (RecursionError)", True)
        name = "RecursionError"
    except OverflowError:
        obj, name = json.loads(line), "OverflowError"
    key = obj.get("key") if isinstance(obj, dict) else None
    return (None if key is None else str(key), None, None, None,
            f"malformed result line ({name}: a number out of range)", True)


def assert_same(line):
    assert_outcome(as_tuple(parse_result_line(line)), expected(line), line)


VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-4, max_value=4),
    st.integers(-(2**70), 2**70),
    st.integers(-3, 3),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.floats(-1, 1), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=1),
)
VALUES = st.one_of(
    st.lists(st.floats(-2, 2), min_size=0, max_size=40),
    st.lists(VALUE, min_size=0, max_size=12),
    VALUE,
)


@st.composite
def result_lines(draw):
    values = draw(VALUES)
    body = {"embedding": {"values": values}}
    if draw(st.booleans()):
        body = {"embeddings": [body["embedding"]]}
    if draw(st.booleans()):
        body["tokenCount"] = draw(st.one_of(st.integers(), st.floats(), st.text(max_size=4), st.none()))
    if draw(st.booleans()):
        body["usageMetadata"] = {"promptTokenCount": draw(st.one_of(st.integers(), st.floats()))}
    line = {"key": draw(st.one_of(st.text(max_size=8), st.integers(), st.none())), "response": body}
    if draw(st.integers(0, 5)) == 0:
        line = {"key": "k", **body}
    if draw(st.integers(0, 7)) == 0:
        line["error"] = draw(st.one_of(
            st.just({"code": 503, "message": "busy"}), st.just("boom"), st.just({"status": "INTERNAL"}),
            st.builds(lambda c, m: {"code": c, "message": m}, st.integers(), st.integers())))
    text = json.dumps(line, allow_nan=True)
    return text.encode() if draw(st.booleans()) else text


@hsettings(max_examples=600, deadline=None)
@given(result_lines())
def test_fast_parser_matches_the_reference_on_any_line(line):
    assert_same(line)


def test_fast_parser_matches_the_reference_on_edge_cases():
    vec = np.random.default_rng(3).standard_normal(768).round(7).tolist()
    cases = [
        json.dumps({"key": "a", "response": {"embedding": {"values": vec}, "tokenCount": "12"}}),
        json.dumps({"key": "a", "response": {"embedding": {"values": [1, 2, 3]}}}),
        json.dumps({"key": "a", "response": {"embedding": {"values": [2**53 + 1, 0.5]}}}),
        json.dumps({"key": "a", "response": {"embedding": {"values": [2**64, 0.5]}}}),
        json.dumps({"key": "a", "response": {"embedding": {"values": [1e39, 0.5]}}}),
        json.dumps({"key": "true", "response": {"embedding": {"values": [0.25, True]}}}),
        json.dumps({"key": "b", "response": {"embedding": {"values": [0.25, True]}}}),
        json.dumps({"key": "b", "response": {"embedding": {"values": [[0.1, 0.2], [0.3]]}}}),
        json.dumps({"key": "b", "response": {"embedding": {"values": [[0.1], [0.3]]}}}),
        json.dumps({"key": "b", "response": {"embedding": {"values": ["1.5", 2.0]}}}),
        json.dumps({"key": "b", "response": {"embedding": {"values": [None, 2.0]}}}),
        '{"key":"h","response":{"embedding":{"values":[NaN, 1.0]}}}',
        '{"key":"h","response":{"embedding":{"values":[1e400, 1.0]}}}',
        '{"key":"dup","key":"second","response":{"embedding":{"values":[0.1]}}}',
        '{"key":"\\ud800","response":{"embedding":{"values":[0.1]}}}',
        "not json", "[1,2]", "", "   ", b"\xff\xfe", '{"key":"f"}', "null", "1e999",
        "[" * 5000 + "]" * 5000,
    ]
    for line in cases:
        assert_same(line)


def test_a_hostile_line_is_a_malformed_line_of_its_key_not_an_exception():
    """Each of these made the parser raise, which stopped the whole collect."""
    huge = "1" + "0" * 400
    cases = {
        f'{{"key":"v","response":{{"embedding":{{"values":[0.5,{huge}]}}}}}}': "v",
        '{"key":"t","response":{"embedding":{"values":[0.5,0.25]},"tokenCount":1e400}}': "t",
        '{"key":"n","response":{"embedding":' + "[" * 5000 + "]" * 5000 + "}}": None,  # too deep to read a key
        "[" * 5000 + "]" * 5000: None,
    }
    for line, key in cases.items():
        got = parse_result_line(line)
        assert (got.key, got.values, got.retryable) == (key, None, True)
        assert got.error_message.startswith("malformed result line")


def test_block_parser_matches_the_reference_line_by_line_across_blocks():
    """Lines the fast path must not vouch for, scattered among good lines of different
    lengths over more than one block: each gets its reference outcome and its own values."""
    from transforms.gemini_client import RESULT_BLOCK_LINES, parse_result_lines

    rng = np.random.default_rng(5)

    def good(i):
        values = rng.standard_normal(3 + i % 5).round(8).tolist()
        return json.dumps({"key": f"g{i}", "response": {"embedding": {"values": values},
                                                        "tokenCount": str(i)}})

    suspects = [
        json.dumps({"key": "true", "note": "false", "response": {"embedding": {"values": [0.25, -0.5]}}}),
        json.dumps({"key": "b", "response": {"embedding": {"values": [0.25, True, 0.5]}}}),
        json.dumps({"key": "c", "response": {"embedding": {"values": [False, 0.5]}}}),
        '{"key":"d","response":{"embedding":{"values":[0.5, 1e400]}}}',
        '{"key":"e","response":{"embedding":{"values":[0.5, 1e39]}}}',
        json.dumps({"key": "f", "response": {"embedding": {"values": [0.5, 2**64 + 1]}}}),
        json.dumps({"key": "g", "response": {"embedding": {"values": [0.5, -(2**70)]}}}),
        json.dumps({"key": "h", "response": {"embedding": {"values": [0.5, 2**63]}}}),
        '{"key":"i","response":{"embedding":{"values":[0.5, NaN]}}}',
        '{"key":"j","response":{"embedding":{"values":[-Infinity, 0.5]}}}',
        json.dumps({"key": "k", "response": {"embedding": {"values": [0.0, 1, -1.0, 0.5]}}}),
        json.dumps({"key": "l", "response": {"embedding": {"values": []}}}),
        json.dumps({"key": "m", "response": {"embedding": {"values": ["0.5", 0.5]}}}),
        json.dumps({"key": "n", "error": {"code": 503, "message": "busy"}}),
        json.dumps({"key": 2**65, "response": {"embedding": {"values": [0.5]}}}),
        json.dumps({"key": "o", "response": {"embedding": {"values": [0.5]}, "tokenCount": 2**65}}),
        "not json",
    ]
    lines = [good(i) for i in range(RESULT_BLOCK_LINES * 2 + 7)]
    for n, suspect in enumerate(suspects):
        lines.insert(n * 31 % len(lines), suspect)
    lines.insert(RESULT_BLOCK_LINES - 1, suspects[1])  # last line of a block
    lines.insert(RESULT_BLOCK_LINES, suspects[3])  # first line of the next one
    parsed = list(parse_result_lines(lines))
    assert len(parsed) == len(lines)
    for line, got in zip(lines, parsed):
        want = reference_parse(line)
        got = as_tuple(got)
        assert got[0] == want[0] and got[2:] == want[2:], line
        if want[1] is None:
            assert got[1] is None, line
        else:
            assert got[1].dtype == np.float32 and got[1].tobytes() == want[1].tobytes(), line


@hsettings(max_examples=150, deadline=None)
@given(st.lists(result_lines(), min_size=1, max_size=30))
def test_block_parser_matches_the_reference_on_any_run_of_lines(lines):
    from transforms.gemini_client import parse_result_lines

    parsed = parse_result_lines(lines)
    for line in lines:
        assert_outcome(as_tuple(next(parsed)), expected(line), line)
    assert next(parsed, None) is None
