"""The text-to-image network: the OPT network whose vision decoder samples dVAE codes from the cross-modal encoder's
output over a caption (and optionally its audio), and the frozen dVAE decoder that turns codes into pixels."""
from __future__ import annotations

from mindspore import nn, ops

from src.config import ConfigError, ModelConfig
from src.model.opt import OPT, DataDims, DecoderCalls
from src.model.primitives import Dense


class TextToImageModel(DecoderCalls, nn.Cell):
    """The OPT network with its vision decoder and the DIR head over the codebook, named as in the pre-training cell
    (net.*, dir_head.*) so a checkpoint pre-trained with DIR loads into it directly."""
    draws_images = True

    def __init__(self, model_cfg: ModelConfig, dims: DataDims):
        super().__init__()
        if model_cfg.vision_decoder_layers < 1 or dims.codebook_size < 1:
            raise ConfigError("text-to-image needs a vision decoder: model.vision_decoder_layers >= 1 and a codebook")
        self.net = OPT(model_cfg, dims)
        self.dir_head = Dense(model_cfg.hidden, dims.codebook_size)
        self.decoder_layers = model_cfg.vision_decoder_layers

    def memory(self, modalities, *inputs):
        """The encoder output the decoder attends to: [CLS] and the segments of `modalities` (a constant tuple)."""
        return self.net.encode_only(modalities, *inputs)

    def log_probs(self, hidden):
        """Decoder states [..., H] -> log-probabilities over the codebook [N, codebook]."""
        return ops.log_softmax(self.dir_head(hidden.reshape(-1, hidden.shape[-1])), axis=-1)


class CodesToImages(nn.Cell):
    """codes [B, grid^2] -> images [B, S, S, 3] in [0, 1], by the frozen dVAE decoder."""

    def __init__(self, dvae):
        super().__init__(auto_prefix=False)
        self.dvae = dvae

    def construct(self, codes):
        return ops.clamp(self.dvae.decode_codes(codes), 0.0, 1.0)
