"""The Python API: one loader for a trained run or a deployment bundle, and batched calls on it.

    from src.api import load
    model = load("runs/demo/caption")                  # a run directory, a checkpoint file, or a bundle folder
    model.caption(["a.png", open("b.jpg", "rb").read(), rgb_array], lang="en")   # -> ["a caption", ...]
    model.transcribe(["question.wav"])                 # -> ["the transcript"]
    load("runs/demo/vqa").answer(["a.png"], questions=["which group is this emoji in?"])   # -> ["smileys"]
    load("runs/demo/retrieval").embed(texts=["a red square"], images=["a.png"])   # -> {"text": [1, D], ...}
    load("runs/demo/retrieval").search("photos.index", "a red square", top=5)   # -> [[{"file", "rank", ...}]]
    load("runs/demo/pretrain").draw(["face with tears of joy"])                 # -> uint8 [1, 64, 64, 3]

An image or a recording is a file path, the file's bytes, or a decoded array: RGB uint8 [H, W, 3], or a mono float
waveform at the sample rate of the data the model was trained on (`model.sample_rate`). Its features are made as
for that data. Each call runs its rows in fixed-size batches on the compiled graphs, which are built (a run) or loaded
(a bundle) on the first call that needs them and kept. The entry points run the same functions: `infer.py` on a file
or a folder gives what these calls give. An input that cannot be read raises FeatureError naming it (`errors="return"`
puts the error in the list in its place instead, for caption and answer).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from src.infer.bundle import MANIFEST


class Model:
    """What `load` returns: the run or bundle at `path`, with config overrides (`key=value`)."""

    def __init__(self, path, overrides: Sequence[str] = ()):
        import mindspore as ms
        from src.tasks import registry
        ms.set_context(mode=ms.GRAPH_MODE)
        path = Path(path).parent if Path(path).name == MANIFEST else Path(path)
        self.path, self.overrides = str(path), list(overrides)
        self.bundle = (path / MANIFEST).is_file()
        if not self.bundle and not path.exists():
            raise FileNotFoundError(f"no run, checkpoint or bundle at {path}")
        self._registry, self._opened = registry, {}

    @property
    def task(self) -> str:
        """The task the run trained, or the bundle's."""
        if self.bundle:
            from src.infer.bundle import read_manifest
            return read_manifest(self.path)["task"]
        from src.train.checkpoint import load_run_config
        return load_run_config(self.path).task

    def opened(self, task: str):
        """(config, graphs) of the registered task `task` on this run or bundle, opened once."""
        if task not in self._opened:
            source = (None, self.path) if self.bundle else (self.path, None)
            self._opened[task] = self._registry.open_graphs(self._registry.get(task, "infer"), *source, None,
                                                            self.overrides, needed_by=f"the API's {task}")
        return self._opened[task]

    def config(self):
        """The run's (or the exported run's) config with the overrides, data.path where its data settings are."""
        if self._opened:  # any task opened here has read it (a bundle's is checked once, not again)
            return next(iter(self._opened.values()))[0]
        if self.bundle:
            from src.infer.graphs import ExportedGraphs
            return ExportedGraphs(self.path, self.overrides).cfg
        return self._registry.run_config(self.path, None, self.overrides)

    @property
    def sample_rate(self) -> int:
        """The rate (Hz) of a waveform given as an array: that of the data the model was trained on."""
        from src.data.prepare import settings_like
        cfg = self.config()
        return settings_like(cfg.data.path, cfg.prepare).prepare.audio.sample_rate

    def caption(self, images: Sequence = (), audios: Sequence = (), lang: str = "en", errors: str = "raise") -> list:
        """The caption of each image (and / or recording: row i reads images[i] and audios[i]), in `lang`."""
        from src.tasks.caption_eval import generate_texts
        cfg, graphs = self.opened("caption")
        return _checked(generate_texts(graphs, cfg, images, audios, lang), errors)

    def transcribe(self, recordings: Sequence, lang: str = "en", errors: str = "raise") -> list:
        """The text of each recording (a caption model from audio alone)."""
        return self.caption(audios=recordings, lang=lang, errors=errors)

    def answer(self, images: Sequence, questions: Sequence[str] = (), audios: Sequence = (), lang: str = "en",
               scores: bool = False, errors: str = "raise") -> list:
        """The answer to each question about its image: questions[i] written, audios[i] spoken, or both. With
        scores, (answer, [(answer, probability)] of the vqa.top_k most likely) per row."""
        from src.tasks.vqa_eval import answer_rows
        cfg, graphs = self.opened("vqa")
        rows = _checked(answer_rows(graphs, cfg, images, questions, audios, lang, errors="return"), errors)
        return [r if scores or isinstance(r, Exception) else r[0] for r in rows]

    def embed(self, texts: Sequence[str] = (), images: Sequence = (), audios: Sequence = (),
              lang: str = "en") -> Dict[str, np.ndarray]:
        """Unit-length embeddings [N, embed_dim] by modality of the texts, images and recordings given (independent
        lists), in the space retrieval ranks by cosine."""
        from src.tasks.search import embed_rows
        cfg, graphs = self.opened("search")
        return embed_rows(graphs, cfg, texts, images, audios, lang)

    def search(self, index, query=(), images: Sequence = (), audios: Sequence = (), top: int = 10,
               lang: str = "en") -> List[List[dict]]:
        """The `top` results of each query in the index folder `index` (infer.py --gallery ... --index writes one),
        best first, as infer.py prints them: {"query", "rank", "file", "score", "cosine"}. `query`: a caption or a
        list of them; or images or recordings to ask with."""
        from src.tasks.search import query_inputs, ranked
        cfg, graphs = self.opened("search")
        texts = [query] if isinstance(query, str) else list(query)
        return ranked(graphs, cfg, str(index), *query_inputs(graphs, cfg, texts, images, audios, lang), top)

    def draw(self, captions: Sequence[str], audios: Sequence = (), lang: str = "en", count: int = 1) -> np.ndarray:
        """uint8 RGB images [len(captions) x count, S, S, 3] drawn from each caption (and its recording), `count`
        samples each, caption by caption (t2i's sampling settings: override them with `load(..., overrides)`)."""
        from src.tasks.text_to_image import draw_rows
        cfg, graphs = self.opened("t2i")
        return draw_rows(graphs, cfg, captions, audios, lang, count)


def load(path, overrides: Sequence[str] = ()) -> Model:
    """A run directory, a checkpoint file or a bundle folder (export.py), with config `key=value` overrides (decoding
    settings, batch sizes)."""
    return Model(path, overrides)


def _checked(rows: List, errors: str) -> list:
    if errors not in ("raise", "return"):
        raise ValueError(f"errors must be 'raise' or 'return', got '{errors}'")
    failed = next((r for r in rows if isinstance(r, Exception)), None)
    if failed is not None and errors == "raise":
        raise failed
    return rows
