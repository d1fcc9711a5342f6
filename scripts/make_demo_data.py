"""Build the real, offline tri-modal demo set from Debian packages (see scripts/prepare_demo_data.sh).

- images: Noto Color Emoji glyphs (fonts-noto-color-emoji) and OpenClipArt drawings (openclipart-svg, librsvg2-bin);
- text: emoji names in English (unicode-data emoji-test.txt) and Chinese (unicode-cldr-core annotations), clip-art
  titles;
- audio: each caption spoken by espeak-ng (English voices and Mandarin) or flite voices, at 16 kHz mono (sox);
- labels: emoji group and subgroup, clip-art category and sub-category;
- split: about 10 % of the images go to `val` (an emoji's English and Chinese samples stay in the same split).

    python scripts/make_demo_data.py RAW_DIR [--clipart 1200] [--emoji N] [--workers 2]
writes RAW_DIR/manifest.jsonl, RAW_DIR/images/*.png, RAW_DIR/audio/*.wav and RAW_DIR/corpus_zh.txt.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from multiprocessing import Pool
from pathlib import Path

EMOJI_TEST = "/usr/share/unicode/emoji/emoji-test.txt"
CLDR = ["/usr/share/unicode/cldr/common/annotations/zh.xml", "/usr/share/unicode/cldr/common/annotationsDerived/zh.xml"]
EMOJI_FONT = "/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf"
CLIPART = "/usr/share/openclipart/svg"
IMAGE_SIZE = 96
MAX_CATEGORY_SHARE = 20  # no clip-art sub-category gives more than 1/20 of the drawings
EN_VOICES = [("espeak-ng", "en-us"), ("espeak-ng", "en+f3"), ("espeak-ng", "en-gb"), ("flite", "slt"),
             ("flite", "rms"), ("flite", "awb"), ("flite", "kal16")]


def emoji_entries():
    """(codepoints, English name, group, subgroup) of every fully-qualified emoji without a skin-tone variant."""
    group = subgroup = ""
    for line in open(EMOJI_TEST, encoding="utf-8"):
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif "; fully-qualified" in line:
            m = re.search(r"#\s+(\S+)\s+E\d+\.\d+\s+(.+)$", line)
            if m and "skin tone" not in m.group(2):
                yield m.group(1), m.group(2).strip(), group, subgroup


def chinese_names():
    names = {}
    for path in CLDR:
        for node in ET.parse(path).getroot().iter("annotation"):
            if node.get("type") == "tts" and node.text:
                names.setdefault(node.get("cp"), node.text.strip())
    return names


def clipart_entries(limit: int):
    """(svg path, title, category, sub-category) of distinct clip-art files with a usable title, sorted by path."""
    seen = {}
    for path in sorted(Path(CLIPART).rglob("*.svg")):
        if path.is_symlink():
            continue
        rel = path.relative_to(CLIPART).parts
        key = path.name
        if key in seen and len(seen[key][1]) >= len(rel):
            continue
        seen[key] = (path, rel)
    out, captions, per_category = [], set(), {}
    for path, rel in sorted(seen.values()):
        caption = _svg_caption(path)
        category = (rel[0], rel[1] if len(rel) > 2 else rel[0])
        # One drawing per caption and a capped share per sub-category: whole collections share one title (275 star
        # drawings were captioned 'gramastar, stars, shapes, magick, geometry'), and a caption that heads 7 % of the
        # training set is what an untrained decoder learns to say for every input.
        if caption and caption not in captions and per_category.get(category, 0) < max(1, limit // MAX_CATEGORY_SHARE):
            captions.add(caption)
            per_category[category] = per_category.get(category, 0) + 1
            out.append((str(path), caption) + category)
    step = max(1, len(out) // limit)
    return out[::step][:limit]


def _svg_caption(path: Path):
    """The drawing's title followed by up to four of its keywords (many titles are not English; keywords mostly are)."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:20000]
    except OSError:
        return None
    m = re.search(r"<dc:title>([^<]{3,80})</dc:title>", head)
    if not m:
        return None
    title = re.sub(r"[_\-]+", " ", m.group(1)).strip().lower()
    words = [] if re.search(r"part of|\d\d:\d\d", title) else [title]  # collection boilerplate, not a title
    subject = re.search(r"<dc:subject>(.*?)</dc:subject>", head, re.S)
    for kw in re.findall(r"<rdf:li>([^<]{2,30})</rdf:li>", subject.group(1) if subject else ""):
        kw = kw.strip().lower()
        if kw not in words and kw != "unsorted" and len(words) < 5:
            words.append(kw)
    return ", ".join(words) if words and re.search(r"[a-z]{3}", words[0]) else None


def render_emoji(char: str, out: str) -> None:
    from PIL import Image, ImageDraw, ImageFont
    font = ImageFont.truetype(EMOJI_FONT, 109)
    canvas = Image.new("RGBA", (160, 160), (255, 255, 255, 0))
    ImageDraw.Draw(canvas).text((8, 8), char, font=font, embedded_color=True)
    box = canvas.getbbox()
    if box is None:
        raise RuntimeError("empty glyph")
    glyph = canvas.crop(box)
    side = max(glyph.size)
    square = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    square.alpha_composite(glyph, ((side - glyph.size[0]) // 2, (side - glyph.size[1]) // 2))
    square.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), Image.LANCZOS).save(out)


def render_svg(svg: str, out: str) -> None:
    subprocess.run(["rsvg-convert", "-w", str(IMAGE_SIZE), "-h", str(IMAGE_SIZE), "--keep-aspect-ratio",
                    "-b", "white", svg, "-o", out], check=True, timeout=20, capture_output=True)


def speak(text: str, engine: str, voice: str, out: str) -> None:
    with tempfile.NamedTemporaryFile(suffix=".wav") as raw:
        if engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", voice, "-w", raw.name, text]
        else:
            cmd = ["flite", "-voice", voice, "-t", text, "-o", raw.name]
        subprocess.run(cmd, check=True, timeout=30, capture_output=True)
        subprocess.run(["sox", raw.name, "-r", "16000", "-c", "1", "-b", "16", out], check=True, timeout=30,
                       capture_output=True)


def build_image(job):
    """Render one image unless it exists; returns (path, error)."""
    path, (kind, arg) = job
    try:
        if not Path(path).exists():
            tmp = path + ".tmp.png"
            render_emoji(arg, tmp) if kind == "emoji" else render_svg(arg, tmp)
            os.replace(tmp, path)
        return path, None
    except Exception as e:  # a glyph or drawing that does not render is left out and reported
        return path, f"{path}: {type(e).__name__}: {e}"


def build_audio(job):
    """Speak the caption of one sample unless its audio exists; returns (row, error)."""
    row, voice = job
    wav = str(Path(row["_root"]) / row["audio"])
    try:
        if not Path(wav).exists():
            speak(row["text"], *voice, wav + ".tmp.wav")
            os.replace(wav + ".tmp.wav", wav)
        return row, None
    except Exception as e:
        return row, f"{row['id']}: {type(e).__name__}: {e}"


def in_val(key: str) -> bool:
    return int(hashlib.sha1(key.encode()).hexdigest(), 16) % 10 == 0


def plan(root: Path, n_clipart: int):
    zh = chinese_names()
    jobs = []
    for i, (char, name, group, subgroup) in enumerate(emoji_entries()):
        key = f"emoji{i:04d}"
        split = "val" if in_val(key) else "train"
        labels = ["emoji", group, subgroup]
        base = {"_root": str(root), "image": f"images/{key}.png", "labels": labels, "split": split}
        engine, voice = EN_VOICES[i % len(EN_VOICES)]
        jobs.append(({**base, "id": f"{key}-en", "text": name, "lang": "en", "audio": f"audio/{key}-en.wav"},
                     ("emoji", char), (engine, voice)))
        if char in zh:
            jobs.append(({**base, "id": f"{key}-zh", "text": zh[char], "lang": "zh", "audio": f"audio/{key}-zh.wav"},
                         ("emoji", char), ("espeak-ng", "cmn")))
    for i, (svg, caption, cat, sub) in enumerate(clipart_entries(n_clipart)):
        key = f"clip{i:04d}"
        engine, voice = EN_VOICES[(i + 3) % len(EN_VOICES)]
        jobs.append(({"_root": str(root), "id": key, "image": f"images/{key}.png", "audio": f"audio/{key}.wav",
                      "text": caption, "lang": "en", "labels": ["clipart", cat, f"{cat}/{sub}"],
                      "split": "val" if in_val(key) else "train"}, ("svg", svg), (engine, voice)))
    return jobs


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("raw_dir")
    ap.add_argument("--clipart", type=int, default=1200, help="number of clip-art drawings")
    ap.add_argument("--emoji", type=int, default=0, help="keep only the first N emoji (0: all)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args(argv)
    root = Path(args.raw_dir).resolve()
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "audio").mkdir(exist_ok=True)
    t0 = time.time()
    jobs = plan(root, args.clipart)
    if args.emoji:
        keep = {f"emoji{i:04d}" for i in range(args.emoji)}
        jobs = [j for j in jobs if not j[0]["id"].startswith("emoji") or j[0]["id"].split("-")[0] in keep]
    images = {str(root / row["image"]): image_job for row, image_job, _ in jobs}
    rows, errors = [], []
    with Pool(args.workers) as pool:
        bad = set()
        for path, err in pool.imap(build_image, images.items(), chunksize=4):
            if err:
                bad.add(path)
                errors.append(err)
        print(f"  {len(images) - len(bad)} images rendered ({time.time() - t0:.0f} s)", flush=True)
        speech = [(row, voice) for row, _, voice in jobs if str(root / row["image"]) not in bad]
        for k, (row, err) in enumerate(pool.imap(build_audio, speech, chunksize=4), 1):
            (errors.append(err) if err else rows.append(row))
            if k % 1000 == 0:
                print(f"  {k}/{len(speech)} captions spoken ({time.time() - t0:.0f} s)", flush=True)
    manifest = root / "manifest.jsonl"
    tmp = manifest.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}, ensure_ascii=False) + "\n")
    os.replace(tmp, manifest)
    (root / "corpus_zh.txt").write_text("\n".join(r["text"] for r in rows if r["lang"] == "zh") + "\n",
                                        encoding="utf-8")
    for err in errors:
        print(f"  left out {err}")
    n_val = sum(r["split"] == "val" for r in rows)
    print(f"built {len(rows)} samples ({len(rows) - n_val} train, {n_val} val; {len(errors)} left out) in "
          f"{time.time() - t0:.0f} s -> {manifest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
