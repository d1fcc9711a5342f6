"""The converted MiniLM checkpoint reproduces HuggingFace BertModel's hidden states on text-only input."""
import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the checkpoint is local; never ask a hub
torch = pytest.importorskip("torch")  # CI installs torch 2.13.0 (CPU) and transformers for this test
transformers = pytest.importorskip("transformers")

import mindspore as ms  # noqa: E402

from src.config import ModelConfig  # noqa: E402
from src.data.tokenizer import Tokenizer, minilm_dir  # noqa: E402
from src.model.convert import load_bert_weights  # noqa: E402
from src.model.opt import OPT  # noqa: E402
from tests.conftest import data_dims  # noqa: E402


@pytest.mark.parametrize("vocab_size", [30522, 32814])
def test_minilm_encoder_matches_transformers(vocab_size):
    """Also with a vocabulary extended past MiniLM's (the demo's, with Chinese pieces appended): until this was
    tested, the whole word table of such a model was skipped as a shape mismatch and stayed random, and every
    English text reached the encoder as noise (mean states of unrelated sentences at cosine 0.90, MiniLM's 0.05)."""
    ms.set_context(mode=ms.GRAPH_MODE)
    cfg = ModelConfig(hidden=384, layers=6, heads=12, intermediate=1536, decoder_layers=1, dropout=0.0)
    net = OPT(cfg, data_dims(vocab_size, 8, 8, 4, 2))
    net.set_train(False)
    report = load_bert_weights(net, "minilm", "embeddings.text", "encoder.layers", ("text_decoder.layers",))
    assert report["skipped"] == []
    assert len([n for n in report["loaded"] if n.startswith(("embeddings.text", "encoder."))]) == 5 + 6 * 16
    assert any(n.startswith("text_decoder.layers.0.attention.query") for n in report["loaded"])
    tok = Tokenizer("minilm")
    texts = ["a grinning face with big eyes", "hash, action, computer, icons, theme and a few more words"]
    ids = np.zeros((2, 20), np.int32)
    mask = np.zeros((2, 20), np.float32)
    for i, s in enumerate(texts):
        x = [101] + tok.encode(s) + [102]
        ids[i, :len(x)], mask[i, :len(x)] = x, 1
    empty = lambda *shape: ms.Tensor(np.zeros(shape, np.float32))
    states, _ = net.encode(ms.Tensor(ids), ms.Tensor(mask), empty(2, 1, 8), empty(2, 1, 7), empty(2, 1),
                           empty(2, 2, 8), empty(2, 2))
    ours = states.asnumpy()[:, :20]
    hf = transformers.BertModel.from_pretrained(str(minilm_dir())).eval()
    with torch.no_grad():
        ref = hf(input_ids=torch.tensor(ids, dtype=torch.long), attention_mask=torch.tensor(mask)).last_hidden_state
    np.testing.assert_allclose(ours[mask > 0], ref.numpy()[mask > 0], atol=1e-4)
