"""Small demo media generated on the spot (nothing binary is committed): a few images,
one short video, one audio clip and one PDF, plus a records file pairing a photo with
its description. Uses the ffmpeg bundled with imageio-ffmpeg, Pillow and fpdf2."""
from __future__ import annotations

import json
import os
import subprocess

import imageio_ffmpeg
from fpdf import FPDF
from PIL import Image, ImageDraw


def _ffmpeg(*args: str) -> None:
    exe = imageio_ffmpeg.get_ffmpeg_exe()
    subprocess.run([exe, "-v", "error", "-y", "-nostdin", *args], check=True)


def _image(path: str, colours: tuple, shape: str) -> None:
    image = Image.new("RGB", (320, 240), colours[0])
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse((80, 40, 240, 200), fill=colours[1])
    elif shape == "stripes":
        for x in range(0, 320, 40):
            draw.rectangle((x, 0, x + 19, 240), fill=colours[1])
    else:
        draw.polygon([(160, 20), (300, 220), (20, 220)], fill=colours[1])
    image.save(path)


def _pdf(path: str) -> None:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    topics = ["Lighthouse keeping", "Fresnel lenses", "Fog signals", "Automation of lights"]
    for page, topic in enumerate(topics * 2, 1):
        pdf.add_page()
        pdf.multi_cell(0, 8, f"Page {page}: {topic}. Lighthouses guide ships along dangerous "
                             "coasts with rotating beams, foghorns and day marks.")
    pdf.output(path)


def write_media(out_dir: str) -> list[str]:
    media = os.path.join(out_dir, "media")
    os.makedirs(media, exist_ok=True)
    paths = {
        "sunset.png": ((250, 120, 40), (255, 220, 80), "circle"),
        "forest.jpg": ((20, 90, 30), (120, 200, 90), "triangle"),
        "zebra.png": ((250, 250, 250), (10, 10, 10), "stripes"),
    }
    written = []
    for name, (bg, fg, shape) in paths.items():
        _image(os.path.join(media, name), (bg, fg), shape)
        written.append(os.path.join(media, name))
    video = os.path.join(media, "test_pattern.mp4")
    _ffmpeg("-f", "lavfi", "-i", "testsrc2=size=320x180:rate=15", "-f", "lavfi",
            "-i", "sine=frequency=330:sample_rate=44100", "-t", "12", "-c:v", "libx264",
            "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k", video)
    audio = os.path.join(media, "tone.mp3")
    _ffmpeg("-f", "lavfi", "-i", "sine=frequency=523:sample_rate=44100", "-t", "8",
            "-c:a", "libmp3lame", "-b:a", "96k", audio)
    pdf = os.path.join(media, "lighthouses.pdf")
    _pdf(pdf)
    records = os.path.join(out_dir, "catalogue.jsonl")
    with open(records, "w") as fh:
        fh.write(json.dumps({"id": "poster-1", "title": "Sunset poster",
                             "text": "A warm orange sunset print.", "media": ["media/sunset.png"]}) + "\n")
    return written + [video, audio, pdf, records]
