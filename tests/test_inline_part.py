"""Inline media parts carry standard padded base64, byte for byte what the stdlib writes
(request files and chunk ids must not depend on which encoder ran), and large parts staged
as files get back exactly the bytes that were encoded."""
from __future__ import annotations

import base64
import os

from hypothesis import given, strategies as st

from transforms.media.chunk_builder import inline_part
from transforms.plan_requests import STAGED_SCHEME, stage_large_parts


@given(st.binary(max_size=4096))
def test_inline_data_is_the_stdlib_base64(data):
    part = inline_part("image/png", data)
    assert part == {"inline_data": {"mime_type": "image/png", "data": base64.b64encode(data).decode("ascii")}}
    assert type(part["inline_data"]["data"]) is str


def test_a_large_part_round_trips_through_staging(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 1)  # not a multiple of 3: the padding is exercised
    part = inline_part("video/mp4", data)
    assert part["inline_data"]["data"] == base64.b64encode(data).decode("ascii")
    (staged,) = stage_large_parts((part,), str(tmp_path), threshold=1024)
    name = staged["file_data"]["file_uri"].removeprefix(STAGED_SCHEME)
    assert (tmp_path / name).read_bytes() == data
