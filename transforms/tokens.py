"""Deterministic token estimator that behaves like a byte-fallback BPE tokenizer.

The real Gemini tokenizer is not available offline. The pipeline plans costs and the
emulator bills with this one estimate, so a plan against the emulator is exact and a
plan against the service is an estimate. It mimics Gemma-family BPE: digits and CJK characters are one token each,
letter runs take about one token per four UTF-8 bytes, a single space is merged into
the next word, and emoji cost up to two tokens.

Invariant the pipeline's chunker relies on: the estimate never exceeds the UTF-8 byte
length of the text. Proof: the regex partitions the text into pieces (the final
alternative matches any single character, so every character is in exactly one piece)
and each piece costs at most its own byte length:
digit 1 <= 1..4 bytes; CJK 1 <= 3..4; letter run ceil(b/4) <= b; whitespace run
ceil(b/4) <= b (a lone space costs 0); any other character 1 or 2 <= its 1..4 bytes
(2 only when it is a 4-byte character).
"""
from __future__ import annotations

import re

_CJK = (
    "\u3040-\u30ff"  # Hiragana, Katakana
    "\u3400-\u4dbf"  # CJK extension A
    "\u4e00-\u9fff"  # CJK unified ideographs
    "\uac00-\ud7af"  # Hangul syllables
    "\uf900-\ufaff"  # CJK compatibility ideographs
    "\U00020000-\U0002fa1f"  # CJK extensions B-F and supplement
)

_PIECES = re.compile(
    r"(?P<digit>\d)"
    rf"|(?P<cjk>[{_CJK}])"
    rf"|(?P<word>[^\W\d_{_CJK}]+)"
    r"|(?P<space>\s+)"
    r"|(?P<other>.)",
    re.DOTALL,
)


def _utf8_len(piece: str) -> int:
    return len(piece.encode("utf-8", "surrogatepass"))


def estimate_text_tokens(text: str) -> int:
    """Estimated token count of ``text``; always <= its UTF-8 byte length."""
    total = 0
    for match in _PIECES.finditer(text):
        kind = match.lastgroup
        piece = match.group()
        if kind in ("digit", "cjk"):
            total += 1
        elif kind == "word":
            total += -(-_utf8_len(piece) // 4)
        elif kind == "space":
            total += 0 if piece == " " else -(-_utf8_len(piece) // 4)
        else:
            total += 2 if _utf8_len(piece) == 4 else 1
    return total
