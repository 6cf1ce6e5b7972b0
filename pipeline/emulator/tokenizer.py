"""The emulator's token count for text: what it enforces the 8,192-token limit with, bills
and counts against the enqueued-token quota.

Written on its own, without the pipeline's estimator (``transforms/tokens.py``), so that
"the emulator accepted it" and "the emulator billed N" are evidence of their own. It
models the same documented costs of a Gemma-family byte-fallback BPE (the README's
billing numbers): a decimal digit or a CJK character is one token; a run of letters
costs one token per four UTF-8 bytes (rounded up); a single space merges into the next
word and costs nothing, longer whitespace runs one token per four bytes; any other
character one token, two when it takes four UTF-8 bytes. Never more tokens than bytes.
"""
from __future__ import annotations

_CJK_RANGES = (
    (0x3040, 0x30FF),  # Hiragana, Katakana
    (0x3400, 0x4DBF),  # CJK extension A
    (0x4E00, 0x9FFF),  # CJK unified ideographs
    (0xAC00, 0xD7AF),  # Hangul syllables
    (0xF900, 0xFAFF),  # CJK compatibility ideographs
    (0x20000, 0x2FA1F),  # CJK extensions B-F and supplement
)


def _utf8_bytes(ch: str) -> int:
    code = ord(ch)
    return 1 if code < 0x80 else 2 if code < 0x800 else 3 if code < 0x10000 else 4


def _kind(ch: str) -> str:
    if ch.isdecimal():
        return "digit"
    code = ord(ch)
    if any(lo <= code <= hi for lo, hi in _CJK_RANGES):
        return "cjk"
    if ch.isalnum():
        return "letter"
    if ch.isspace():
        return "space"
    return "other"


def count_tokens(text: str) -> int:
    """Tokens the emulator charges for ``text``."""
    total, i, n = 0, 0, len(text)
    while i < n:
        kind = _kind(text[i])
        if kind in ("letter", "space"):
            j, size = i, 0
            while j < n and _kind(text[j]) == kind:
                size += _utf8_bytes(text[j])
                j += 1
            if text[i:j] != " ":  # a lone space merges into the next word
                total += (size + 3) // 4
            i = j
        else:
            total += 2 if kind == "other" and _utf8_bytes(text[i]) == 4 else 1
            i += 1
    return total
