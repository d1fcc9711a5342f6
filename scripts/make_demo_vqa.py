"""Build the demo's VQA set, in the VQA v2 file format, from the demo data's labels and English captions.

Four questions per image, ten human answers each, with the disagreement real annotators show (case and punctuation,
number words against digits, synonyms, a minority giving another answer), so that the official normalisation and the
soft scores matter:
- "which group is this emoji in?" / "what category is this drawing in?"   (other: the emoji group or clip-art category)
- "is this emoji in the <subgroup> subgroup?" / "is this drawing filed under <sub-category>?"   (yes/no, half no)
- "what is the first word of its name?"                                  (other: a word of the caption)
- "how many words are in its name?"                                      (number)
Every question is also spoken (espeak-ng / flite voices, as the captions are): one recording per distinct question
text and voice, linked as audio/<question_id>.wav.

    python scripts/make_demo_vqa.py RAW_DIR [--workers 2] [--seed 0]
reads RAW_DIR/manifest.jsonl (scripts/make_demo_data.py) and writes RAW_DIR/vqa/: questions_<split>.json,
annotations_<split>.json, images.jsonl (image_id -> image) and audio/<question_id>.wav.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from collections import Counter
from multiprocessing import Pool
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from make_demo_data import EN_VOICES, speak  # noqa: E402
from src.commands import USAGE, error_line  # noqa: E402
from src.data.answers import normalize_answer  # noqa: E402

NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]
CLIPART_IDS = 100000  # clip-art image ids start here (emoji keep their number)


def images_of(manifest: Path) -> list:
    """One entry per image: (image_id, image path relative to RAW_DIR, split, source, group, subgroup, English name)."""
    seen = {}
    for line in manifest.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row.get("lang") != "en" or not row.get("image"):
            continue
        key = Path(row["image"]).stem  # emoji0007 / clip0012
        source, number = ("emoji", int(key[5:])) if key.startswith("emoji") else ("clipart", int(key[4:]))
        image_id = number if source == "emoji" else CLIPART_IDS + number
        group = row["labels"][1]
        sub = row["labels"][2].split("/")[-1].replace("-", " ")
        name = row["text"].split(",")[0].replace(":", "").strip()  # a drawing's title, before its keywords
        seen.setdefault(image_id, (image_id, row["image"], row["split"], source, group, sub, name))
    return [seen[k] for k in sorted(seen)]


def disagree(answer: str, rng: random.Random, variants: list, others: list, agree=(7, 9)) -> list:
    """Ten human answers: most give `answer` (some in a variant form), the rest one of `others`."""
    n = rng.randint(*agree)
    out = [rng.choice(variants) if variants and rng.random() < 0.3 else answer for _ in range(n)]
    others = others or variants or [answer]  # a tiny set may have a single group: then everyone agrees in form only
    out += [rng.choice(others) for _ in range(10 - n)]
    rng.shuffle(out)
    return out


def questions_of(image, subgroups: dict, groups: dict, rng: random.Random) -> list:
    """The four (question, answers, answer_type) of one image."""
    _, _, _, source, group, sub, name = image
    group_q = "which group is this emoji in?" if source == "emoji" else "what category is this drawing in?"
    synonyms = [group.upper(), group.lower(), group.replace("&", "and"), group.split()[0]]
    out = [(group_q, disagree(group, rng, synonyms, [g for g in groups[source] if g != group]), "other")]

    other_subs = [s for s in subgroups[source] if s != sub]
    asked = sub if rng.random() < 0.5 or not other_subs else rng.choice(other_subs)
    truth = "yes" if asked == sub else "no"
    yes_no = f"is this emoji in the {asked} subgroup?" if source == "emoji" else f"is this drawing filed under {asked}?"
    out.append((yes_no, disagree(truth, rng, [truth.capitalize(), truth + ".", "yeah" if truth == "yes" else "nope"],
                                 ["no" if truth == "yes" else "yes"], agree=(8, 10)), "yes/no"))

    words = name.split()
    first = words[0].lower()
    out.append(("what is the first word of its name?",
                disagree(first, rng, [first.capitalize(), f"the {first}", first + "."],
                         [w.lower() for w in words[1:3]] or [first]), "other"))

    count = len(words)
    spelled = [NUMBER_WORDS[count]] if count <= 10 else []
    out.append(("how many words are in its name?",
                disagree(str(count), rng, spelled, [str(count + 1), str(max(1, count - 1)), f"{count} words"],
                         agree=(6, 8)), "number"))
    return out


def speak_once(job):
    text, (engine, voice), out = job
    try:
        if not Path(out).exists():
            speak(text, engine, voice, out + ".tmp.wav")
            os.replace(out + ".tmp.wav", out)
        return out, None
    except Exception as e:  # reported, and its questions left out
        return out, f"{out}: {type(e).__name__}: {e}"


def write_json(path: Path, obj) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("raw_dir")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.time()
    raw = Path(args.raw_dir).resolve()
    if not (raw / "manifest.jsonl").is_file():  # before anything is written
        error_line(f"{raw / 'manifest.jsonl'} not found: make the demo data first (scripts/prepare_demo_data.sh)")
        return USAGE
    out = raw / "vqa"
    (out / "audio").mkdir(parents=True, exist_ok=True)
    (out / "speech").mkdir(exist_ok=True)
    images = images_of(raw / "manifest.jsonl")
    groups = {s: sorted({i[4] for i in images if i[3] == s}) for s in ("emoji", "clipart")}
    subgroups = {s: sorted({i[5] for i in images if i[3] == s}) for s in ("emoji", "clipart")}
    rng = random.Random(args.seed)
    by_split, jobs = {}, {}
    for image in images:
        for k, (text, answers, kind) in enumerate(questions_of(image, subgroups, groups, rng)):
            qid = image[0] * 10 + k
            voice = EN_VOICES[qid % len(EN_VOICES)]
            shared = out / "speech" / f"{hashlib.sha1(f'{text}|{voice}'.encode()).hexdigest()[:16]}.wav"
            jobs[str(shared)] = (text, voice, str(shared))
            by_split.setdefault(image[2], []).append((image[0], qid, text, answers, kind, str(shared)))
    failed = set()
    with Pool(args.workers) as pool:
        for path, err in pool.imap_unordered(speak_once, jobs.values(), chunksize=8):
            if err:
                failed.add(path)
                print(f"  left out {err}")
    print(f"  {len(jobs) - len(failed)} distinct spoken questions ({time.time() - t0:.0f} s)", flush=True)
    for split, rows in by_split.items():
        questions, annotations = [], []
        for image_id, qid, text, answers, kind, shared in rows:
            if shared in failed:
                continue
            link = out / "audio" / f"{qid}.wav"
            if not link.exists():
                os.link(shared, link)
            counts = Counter(normalize_answer(a) for a in answers)  # VQA's most frequent answer
            questions.append({"image_id": image_id, "question": text, "question_id": qid})
            annotations.append({"question_id": qid, "image_id": image_id, "answer_type": kind,
                                "question_type": " ".join(text.split()[:2]),
                                "multiple_choice_answer": min(counts, key=lambda a: (-counts[a], a)),
                                "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                            for j, a in enumerate(answers)]})
        write_json(out / f"questions_{split}.json", {"questions": questions})
        write_json(out / f"annotations_{split}.json", {"annotations": annotations})
        print(f"  {split}: {len(questions)} questions about {len({q['image_id'] for q in questions})} images")
    with open(out / "images.jsonl.tmp", "w", encoding="utf-8") as f:
        for image in images:
            f.write(json.dumps({"image_id": image[0], "image": f"../{image[1]}"}) + "\n")
    os.replace(out / "images.jsonl.tmp", out / "images.jsonl")
    print(f"demo VQA set -> {out} in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
