import pytest

from src.data.tokenizer import Tokenizer, build_vocab, minilm_dir, write_vocab

SENTENCES = ["Unaffable naïve CAFÉ, a grinning face: 一只狗! 😀 don't",
             "hash, action, computer, icons, theme", "Flag: United Kingdom", "man in tuxedo (2004) ... OK?!",
             "smiling face with open hands", "  leading and   trailing spaces  "]


@pytest.fixture(scope="module")
def minilm():
    return Tokenizer("minilm")


def test_english_matches_huggingface_tokenizer(minilm):
    tokenizers = pytest.importorskip("tokenizers")  # CI installs it: the reference implementation for MiniLM
    ref = tokenizers.Tokenizer.from_file(str(minilm_dir() / "tokenizer.json"))
    ref.no_padding()
    for s in SENTENCES:
        assert minilm.encode(s) == ref.encode(s, add_special_tokens=False).ids, s


def test_english_known_ids(minilm):
    assert minilm.encode("A grinning face, with big eyes!") == [1037, 11478, 2227, 1010, 2007, 2502, 2159, 999]
    assert minilm.pieces("unaffable") == ["una", "##ffa", "##ble"]
    assert [minilm.special_id(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")] == [0, 100, 101, 102, 103]
    assert minilm.decode(minilm.encode("A grinning face with big eyes")) == "a grinning face with big eyes"
    assert minilm.decode(minilm.encode("flag: Tonga, (small) stars!")) == "flag: tonga, (small) stars!"
    assert minilm.decode(minilm.encode("The dog's ball")) == "the dog's ball"


def test_chinese_jieba_and_char(tmp_path):
    corpus = ["一只狗在草地上奔跑", "小狗在跑", "笑脸"]
    tokens = build_vocab(corpus, ["zh"] * 3, size=200)
    assert tokens[:5] == ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    assert "草地" in tokens and "##地" in tokens and "奔跑" in tokens
    write_vocab(tokens, str(tmp_path / "zh.txt"))
    jieba_tok = Tokenizer(str(tmp_path / "zh.txt"), chinese="jieba")
    assert jieba_tok.pieces("一只狗在草地上奔跑", "zh") == ["一只", "狗", "在", "草地", "上", "奔跑"]
    assert jieba_tok.pieces("小狗跑", "zh-CN")[:1] == ["小狗"]
    char_tok = Tokenizer(str(tmp_path / "zh.txt"), chinese="char")
    assert char_tok.pieces("一只狗在草地上奔跑", "zh") == list("一只狗在草地上奔跑")
    ids = jieba_tok.encode("一只狗在草地上奔跑", "zh")
    assert jieba_tok.decode(ids, "zh") == "一只狗在草地上奔跑"
    assert 1 not in ids  # no [UNK]


def test_vocab_extends_base_without_moving_ids(minilm, tmp_path):
    tokens = build_vocab(["嘿嘿", "笑脸"], ["zh", "zh"], size=40000, base="minilm")
    assert tokens[:len(minilm)] == minilm.tokens
    write_vocab(tokens, str(tmp_path / "v.txt"))
    extended = Tokenizer(str(tmp_path / "v.txt"))
    assert extended.encode("a grinning face") == minilm.encode("a grinning face")
    assert 100 not in extended.encode("嘿嘿", "zh") and 100 in minilm.encode("嘿嘿", "zh")


def test_vocab_cli(tmp_path):
    from src.data.tokenizer import main
    (tmp_path / "c.txt").write_text("red apple\nred sky\n")
    assert main(["build-vocab", str(tmp_path / "c.txt"), "--out", str(tmp_path / "v.txt"), "--size", "100"]) == 0
    assert Tokenizer(str(tmp_path / "v.txt")).pieces("red apples") == ["red", "apple", "##s"]


def test_missing_vocab_and_specials(tmp_path):
    with pytest.raises(FileNotFoundError, match="vocab file not found"):
        Tokenizer(str(tmp_path / "none.txt"))
    (tmp_path / "v.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="lacks special tokens"):
        Tokenizer(str(tmp_path / "v.txt"))


def test_the_decoder_start_piece_names_the_language(tmp_path):
    from src.data.tokenizer import decoder_start_ids
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[unused0]\n[unused1]\n[CLS]\n", encoding="utf-8")
    assert decoder_start_ids(str(vocab), ["en", "zh", "zh-CN", "cmn", "fr"], 3).tolist() == [1, 2, 2, 2, 1]
    vocab.write_text("[PAD]\n[CLS]\n", encoding="utf-8")  # a vocab without the unused slots: [CLS] for all
    assert decoder_start_ids(str(vocab), ["en", "zh"], 1).tolist() == [1, 1]
