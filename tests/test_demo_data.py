"""The demo builder end to end on a small slice: Debian packages -> images, speech, manifest -> prepared MindRecord."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from src.data.records import open_prepared

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.e2e
def test_prepare_demo_data_builds_a_real_trimodal_set(tmp_path):
    env = dict(os.environ, EMOJI="24", CLIPART="12", PYTHON=sys.executable)
    run = subprocess.run(["bash", str(ROOT / "scripts" / "prepare_demo_data.sh"), str(tmp_path / "demo")], env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "demo" / "raw" / "manifest.jsonl").read_text().splitlines()]
    langs = {r["lang"] for r in rows}
    assert langs == {"en", "zh"} and len(rows) >= 40
    assert any(r["labels"][0] == "clipart" for r in rows) and any(r["labels"][0] == "emoji" for r in rows)
    assert rows[0]["text"] == "grinning face" and rows[0]["labels"] == ["emoji", "Smileys & Emotion", "face-smiling"]
    data = open_prepared(tmp_path / "demo" / "prepared")
    total = sum(data.count(s) for s in data.splits)
    assert total == len(rows) and data.meta["counts"]["skipped"] == 0
    for split in data.splits:
        m = data.meta["splits"][split]["modalities"]
        assert m["text"] == m["image"] == m["audio"] == data.count(split)  # every sample is tri-modal
    import soundfile as sf
    info = sf.info(str(tmp_path / "demo" / "raw" / rows[0]["audio"]))
    assert info.samplerate == 16000 and info.channels == 1 and 0.3 < info.duration < 5
    # Chinese captions are covered by the extended vocab: no [UNK] in their ids
    from src.data.tokenizer import Tokenizer
    tok = Tokenizer(data.vocab_path)
    zh = [r["text"] for r in rows if r["lang"] == "zh"]
    assert all(tok.special_id("[UNK]") not in tok.encode(t, "zh") for t in zh)
    # the VQA set is prepared like the pre-training data (fine-tuning from the demo's pre-training accepts it) with
    # its recipe's answer threshold
    from src.data.lineage import preparation_differences
    vqa = open_prepared(tmp_path / "demo" / "vqa" / "train")
    assert preparation_differences(vqa, data) == [] and vqa.meta["prepare"]["vqa"]["min_count"] == 5
    assert preparation_differences(open_prepared(tmp_path / "demo" / "vqa" / "val"), vqa) == []
    # a rerun reuses everything
    again = subprocess.run(["bash", str(ROOT / "scripts" / "prepare_demo_data.sh"), str(tmp_path / "demo")], env=env,
                           capture_output=True, text=True, timeout=900)
    assert again.returncode == 0 and "reusing" in again.stdout + again.stderr
