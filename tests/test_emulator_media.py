"""Emulator audio/video: decoded features, duration limits and duration-based tokens.

Driven through the unmodified google-genai SDK (raw batch output files only where the SDK
hides ``tokenCount``). Clips are seconds long, 160x90 at 10 fps or 16 kHz mono, generated
once per module with the bundled ffmpeg; the emulator runs with small duration limits
(audio 5 s, video 6 s, video with audio 4 s) so that such clips can be over the limit.
"""
from __future__ import annotations

import base64
import dataclasses
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from google import genai
from google.genai import errors, types

import media_factory as mf
from pipeline.emulator import EmulatorServer
from pipeline.emulator import vectors
from transforms.limits import DEFAULT_CONFIG_DIR, load_limits_file

pytestmark = pytest.mark.filterwarnings("ignore:batches.create_embeddings")

KEY = "emulator-media-key"
MODEL = "gemini-embedding-2"
LIMITS = dataclasses.replace(
    load_limits_file(DEFAULT_CONFIG_DIR / "limits" / f"{MODEL}.yaml"),
    audio_seconds=5, video_seconds=6, video_with_audio_seconds=4,
)
SIZE, FPS = "160x90", 10


def _sine(freq: int, seconds: float, *codec: str) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={freq}:sample_rate=16000", "-t", str(seconds), *codec]


def _noise(seconds: float) -> list[str]:
    return ["-f", "lavfi", "-i", "anoisesrc=color=white:sample_rate=16000:amplitude=0.3",
            "-t", str(seconds), "-c:a", "libmp3lame", "-b:a", "64k"]


def _video(source: str, seconds: float, bitrate: str = "200k", audio: bool = False) -> list[str]:
    args = ["-f", "lavfi", "-i", f"{source}=size={SIZE}:rate={FPS}"]
    if audio:
        args += ["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=16000"]
    args += ["-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p",
             "-b:v", bitrate, "-g", str(FPS)]
    return args + (["-c:a", "aac", "-b:a", "32k"] if audio else ["-an"])


MP3 = ("-c:a", "libmp3lame", "-b:a", "64k")
WAV = ("-c:a", "pcm_s16le")
RECIPES = {
    "sine440.mp3": _sine(440, 3, *MP3),
    "sine440.wav": _sine(440, 3, *WAV),
    "sine460.mp3": _sine(460, 3, *MP3),
    "noise.mp3": _noise(3),
    "sine2s.wav": _sine(440, 2, *WAV),
    "sine4s.wav": _sine(440, 4, *WAV),
    "sine5.3s.wav": _sine(440, 5.3, *WAV),  # within the 0.5 s tolerance of 5 s
    "sine5.7s.wav": _sine(440, 5.7, *WAV),
    "testsrc2.mp4": _video("testsrc2", 3),
    "testsrc2-lowrate.mp4": _video("testsrc2", 3, bitrate="40k"),
    "smptebars.mp4": _video("smptebars", 3),
    "mandelbrot.mp4": _video("mandelbrot", 3),
    "testsrc2-sine.mp4": _video("testsrc2", 3, audio=True),
    "video2s.mp4": _video("testsrc2", 2),
    "video4s.mp4": _video("testsrc2", 4),
    "video5s.mp4": _video("testsrc2", 5),  # under video_seconds (6)
    "video5s-sine.mp4": _video("testsrc2", 5, audio=True),  # over video_with_audio_seconds (4)
    "video7s.mp4": _video("testsrc2", 7),
}
MIME = {".mp3": "audio/mp3", ".wav": "audio/wav", ".mp4": "video/mp4"}


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, bytes]:
    folder = tmp_path_factory.mktemp("emulator-media")

    def make(name: str) -> tuple[str, bytes]:
        path = folder / name
        subprocess.run([mf.FFMPEG, "-v", "error", "-y", "-nostdin", *RECIPES[name], str(path)], check=True)
        return name, path.read_bytes()

    with ThreadPoolExecutor(4) as pool:
        return dict(pool.map(make, RECIPES))


@pytest.fixture(scope="module")
def server():
    with EmulatorServer(api_key=KEY, limits_by_model={MODEL: LIMITS}) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server) -> genai.Client:
    return genai.Client(api_key=KEY, http_options=types.HttpOptions(base_url=server.base_url,
                                                                    api_version="v1beta"))


@pytest.fixture(autouse=True)
def _fresh(request):
    vectors.clear_media_cache()  # every test decodes for real
    if "server" in request.fixturenames:
        request.getfixturevalue("server").reset()


def part(media: dict[str, bytes], name: str) -> types.Part:
    return types.Part.from_bytes(data=media[name], mime_type=MIME[name[name.rindex("."):]])


def embed(client: genai.Client, media: dict[str, bytes], *names: str) -> list[np.ndarray]:
    """One request per name (media parts are one per request); unit vectors back."""
    contents = [types.Content(parts=[part(media, n)]) for n in names]
    out = client.models.embed_content(model=MODEL, contents=contents)
    return [np.asarray(e.values) for e in out.embeddings]


def embed_bytes(client: genai.Client, data: bytes, mime_type: str) -> np.ndarray:
    part = types.Part.from_bytes(data=data, mime_type=mime_type)
    out = client.models.embed_content(model=MODEL, contents=[types.Content(parts=[part])])
    return np.asarray(out.embeddings[0].values)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def inline_line(key: str, media: dict[str, bytes], name: str) -> dict:
    blob = {"mime_type": MIME[name[name.rindex("."):]], "data": base64.b64encode(media[name]).decode()}
    return {"key": key, "request": {"content": {"parts": [{"inline_data": blob}]}}}


def run_file_job(client: genai.Client, tmp_path, lines: list[dict]) -> dict[str, dict]:
    path = tmp_path / "media.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    up = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    job = client.batches.create_embeddings(model=MODEL, src={"file_name": up.name})
    deadline = time.monotonic() + 120  # a safety net: the job ends on its own
    while not (job := client.batches.get(name=job.name)).done and time.monotonic() < deadline:
        time.sleep(0.02)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED, job.state
    rows = client.files.download(file=job.dest.file_name).decode().splitlines()
    return {row["key"]: row for row in map(json.loads, rows)}


# -- features ------------------------------------------------------------------------------
def test_identical_audio_gives_identical_vectors_and_similar_audio_is_nearer(client, media):
    a, again, wav, detuned, noise = embed(client, media, "sine440.mp3", "sine440.mp3", "sine440.wav",
                                          "sine460.mp3", "noise.mp3")
    np.testing.assert_array_equal(a, again)
    vectors.clear_media_cache()
    np.testing.assert_array_equal(a, embed(client, media, "sine440.mp3")[0])  # decoded afresh
    assert a.shape == (3072,) and abs(np.linalg.norm(a) - 1) < 1e-5
    assert cos(a, wav) > 0.95  # same tone, other codec
    assert cos(a, detuned) > 0.9  # 440 Hz vs 460 Hz
    assert cos(a, detuned) > cos(a, noise) + 0.3 and cos(wav, detuned) > cos(wav, noise) + 0.3
    text = np.asarray(client.models.embed_content(model=MODEL, contents="a sine tone").embeddings[0].values)
    assert abs(cos(a, text)) < 0.2


def test_identical_video_gives_identical_vectors_and_similar_video_is_nearer(client, media):
    a, again, low, bars, fractal, with_audio = embed(
        client, media, "testsrc2.mp4", "testsrc2.mp4", "testsrc2-lowrate.mp4", "smptebars.mp4",
        "mandelbrot.mp4", "testsrc2-sine.mp4")
    np.testing.assert_array_equal(a, again)
    assert cos(a, low) > 0.95  # the same pattern at a fifth of the bit rate
    assert cos(a, low) > max(cos(a, bars), cos(a, fractal)) + 0.4
    assert cos(low, bars) < 0.5 and cos(low, fractal) < 0.5
    # The soundtrack is part of the vector, but the picture dominates.
    assert cos(a, with_audio) > 0.8
    assert cos(a, with_audio) > max(cos(with_audio, bars), cos(with_audio, fractal)) + 0.4
    tone = embed(client, media, "sine440.mp3")[0]
    assert cos(with_audio, tone) > cos(a, tone) + 0.2  # its 440 Hz track pulls it toward the tone


def test_output_dimensionality_prefix_applies_to_media(client, media):
    full = embed(client, media, "sine440.wav")[0]
    short = client.models.embed_content(
        model=MODEL, contents=[types.Content(parts=[part(media, "sine440.wav")])],
        config=types.EmbedContentConfig(output_dimensionality=256))
    np.testing.assert_allclose(short.embeddings[0].values, full[:256], atol=1e-7)


# -- duration limits -----------------------------------------------------------------------
def test_audio_over_the_limit_is_400_within_tolerance_is_accepted(client, media):
    assert len(embed(client, media, "sine5.3s.wav")) == 1  # 5.3 s <= 5 s + 0.5 s
    with pytest.raises(errors.ClientError) as exc:
        embed(client, media, "sine5.7s.wav")
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"
    assert "5.70 seconds" in exc.value.message and "maximum of 5 seconds" in exc.value.message


def test_video_limit_depends_on_its_audio_stream(client, media):
    assert len(embed(client, media, "video5s.mp4")) == 1  # no audio: video_seconds = 6
    with pytest.raises(errors.ClientError) as exc:
        embed(client, media, "video5s-sine.mp4")  # with audio: video_with_audio_seconds = 4
    assert exc.value.code == 400 and "video with audio" in exc.value.message
    with pytest.raises(errors.ClientError) as exc:
        embed(client, media, "video7s.mp4")
    assert exc.value.code == 400 and "maximum of 6 seconds" in exc.value.message


def test_batch_lines_get_per_line_errors_and_duration_based_tokens(client, server, media, tmp_path):
    rows = run_file_job(client, tmp_path, [
        inline_line("audio2", media, "sine2s.wav"),
        inline_line("audio4", media, "sine4s.wav"),
        inline_line("video2", media, "video2s.mp4"),
        inline_line("video4", media, "video4s.mp4"),
        inline_line("mp3", media, "sine440.mp3"),
        inline_line("long-audio", media, "sine5.7s.wav"),
        inline_line("long-video", media, "video7s.mp4"),
        {"key": "corrupt", "request": {"content": {"parts": [
            {"inline_data": {"mime_type": "video/mp4", "data": base64.b64encode(b"\0" * 4096).decode()}}]}}},
    ])
    tokens = {k: int(r["response"]["tokenCount"]) for k, r in rows.items() if "response" in r}
    # 32 tokens per second of audio, 263 per second of video (configs/pricing.yaml).
    assert tokens["audio2"] == 64 and tokens["audio4"] == 128
    assert tokens["video2"] == 2 * 263 and tokens["video4"] == 4 * 263
    assert 3 * 32 <= tokens["mp3"] <= 3.2 * 32  # MP3 frames overshoot the 3 s a little
    for key in ("long-audio", "long-video", "corrupt"):
        assert rows[key]["error"]["code"] == 3, key
    assert "seconds long" in rows["long-audio"]["error"]["message"]
    assert "Unable to process input video" in rows["corrupt"]["error"]["message"]
    job = server.stats()["jobs"][0]
    assert (job["successful"], job["failed"]) == (5, 3)
    assert job["billed_tokens"] == sum(tokens.values())
    stats = server.stats()
    assert stats["batch_billed_tokens"] == sum(tokens.values())


def test_sync_billing_uses_measured_duration(client, server, media):
    embed(client, media, "sine2s.wav", "video4s.mp4")
    assert server.stats()["sync_billed_tokens"] == 64 + 4 * 263


# -- undecodable media ---------------------------------------------------------------------
@pytest.mark.parametrize("data, mime", [
    (b"\xff\xfb" * 1000, "audio/mpeg"),
    (b"definitely not audio " * 50, "audio/wav"),
    (b"\x00\x00\x00\x18ftypmp42" + bytes(5000), "video/mp4"),
    (b"", "video/webm"),
])
def test_corrupt_media_is_400(client, data, mime):
    with pytest.raises(errors.ClientError) as exc:
        embed_bytes(client, data, mime)
    assert exc.value.code == 400 and exc.value.status == "INVALID_ARGUMENT"
    assert f"Unable to process input {mime.split('/')[0]}" in exc.value.message


def test_truncated_mp4_without_its_index_is_400(client, media, tmp_path):
    source = tmp_path / "full.mp4"
    source.write_bytes(media["testsrc2.mp4"])
    cut = mf.truncated_mp4(tmp_path / "half.mp4", str(source), faststart=False)
    with open(cut, "rb") as fh:
        data = fh.read()
    with pytest.raises(errors.ClientError) as exc:
        embed_bytes(client, data, "video/mp4")
    # The emulator's own container check, not ffmpeg's wording: the index is missing.
    assert exc.value.code == 400 and "truncated" in exc.value.message


def test_audio_mime_without_an_audio_stream_is_400(client, media):
    with pytest.raises(errors.ClientError) as exc:
        embed_bytes(client, media["video2s.mp4"], "audio/mp4")  # a video without sound
    assert exc.value.code == 400 and "no audio stream" in exc.value.message
