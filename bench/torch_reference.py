"""The pre-training network of `src/tasks/pretrain.py` in PyTorch, for `bench/bench_train.py --reference torch`.

Same layers, sizes, sequence layout [CLS; text; image; audio] and losses (MLM through the tied word table, MVFR, MRC-kl,
MAFR, MAM-NCE, 5-way matching, DTR through a 2-layer text decoder, DIR through the vision decoder over dVAE codes),
built from PyTorch's own blocks (nn.TransformerEncoderLayer / DecoderLayer, post-LN, exact GELU) and trained with
torch.optim.AdamW (its default multi-tensor update) and global-norm clipping: what a PyTorch user would write. It
reads the very batches the MindSpore step reads (the same columns, by name). Bench-only: torch is a test requirement.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

NEG = -10000.0


class Decoder(nn.Module):
    """Word (or code) + position embeddings, LayerNorm, post-LN decoder layers with causal self-attention."""

    def __init__(self, words: nn.Embedding, hidden, heads, intermediate, layers, positions, dropout, eps):
        super().__init__()
        self.words, self.positions = words, nn.Embedding(positions, hidden)
        self.norm, self.drop = nn.LayerNorm(hidden, eps=eps), nn.Dropout(dropout)
        block = dict(d_model=hidden, nhead=heads, dim_feedforward=intermediate, dropout=dropout, activation="gelu",
                     layer_norm_eps=eps, batch_first=True)
        self.layers = nn.ModuleList([nn.TransformerDecoderLayer(**block) for _ in range(layers)])

    def forward(self, ids, memory, memory_pad):
        n = ids.shape[1]
        x = self.drop(self.norm(self.words(ids) + self.positions.weight[:n]))
        causal = torch.triu(torch.ones(n, n, dtype=torch.bool), diagonal=1)  # True: not allowed, as the pad mask
        for layer in self.layers:
            x = layer(x, memory, tgt_mask=causal, memory_key_padding_mask=memory_pad)
        return x


class TorchPretrain(nn.Module):
    def __init__(self, cfg, dims, weights):
        super().__init__()
        m, d = cfg.model, cfg.data
        h, eps = m.hidden, m.layer_norm_eps
        self.weights = torch.tensor(weights, dtype=torch.float32)
        self.image_start, self.audio_start = d.max_text_len, d.max_text_len + d.max_regions
        self.temperature = cfg.loss.nce_temperature
        self.words = nn.Embedding(dims.vocab_size, h)
        self.text_pos, self.text_type = nn.Embedding(m.max_positions, h), nn.Embedding(2, h)
        self.image_feat, self.image_box = nn.Linear(dims.feature_dims["image"], h), nn.Linear(7, h)
        self.audio_feat = nn.Linear(dims.feature_dims["audio"], h)
        self.audio_pos = nn.Embedding(dims.lengths["audio"], h)
        self.norms = nn.ModuleList([nn.LayerNorm(h, eps=eps) for _ in range(3)])
        self.drop = nn.Dropout(m.dropout)
        block = dict(d_model=h, nhead=m.heads, dim_feedforward=m.intermediate, dropout=m.dropout, activation="gelu",
                     layer_norm_eps=eps, batch_first=True)
        self.encoder = nn.ModuleList([nn.TransformerEncoderLayer(**block) for _ in range(m.layers)])
        self.mlm_transform = nn.Sequential(nn.Linear(h, h), nn.GELU(), nn.LayerNorm(h, eps=eps))
        self.mlm_bias = nn.Parameter(torch.zeros(dims.vocab_size))
        self.mvfr, self.mrc = nn.Linear(h, dims.feature_dims["image"]), nn.Linear(h, dims.mrc_classes)
        self.mafr, self.match = nn.Linear(h, dims.feature_dims["audio"]), nn.Linear(h, 5)
        self.text_decoder = Decoder(self.words, h, m.heads, m.intermediate, m.decoder_layers, m.max_positions,
                                    m.dropout, eps)
        self.dtr_bias = nn.Parameter(torch.zeros(dims.vocab_size))
        self.vision_decoder = None
        if dims.codebook_size and m.vision_decoder_layers:
            codes = nn.Embedding(dims.codebook_size + 1, h)
            self.vision_decoder = Decoder(codes, h, m.heads, m.intermediate, m.vision_decoder_layers,
                                          m.max_positions, m.dropout, eps)
            self.dir_head = nn.Linear(h, dims.codebook_size)
            self.start_id = dims.codebook_size

    def encode(self, b):
        ids = b["text_ids"]
        text = self.words(ids) + self.text_pos.weight[:ids.shape[1]] + self.text_type.weight[0]
        image = self.image_feat(b["image_feat"]) + self.image_box(b["image_boxes"])
        audio = self.audio_feat(b["audio_feat"]) + self.audio_pos.weight[:b["audio_feat"].shape[1]]
        x = torch.cat([self.drop(norm(part)) for norm, part in zip(self.norms, (text, image, audio))], 1)
        pad = torch.cat((b["text_mask"], b["image_mask"], b["audio_mask"]), 1) == 0
        for layer in self.encoder:
            x = layer(x, src_key_padding_mask=pad)
        return x, pad

    def forward(self, b):
        states, pad = self.encode(b)
        at = lambda positions: torch.gather(states, 1, positions.long().unsqueeze(-1).expand(-1, -1,
                                                                                             states.shape[-1]))
        mlm_logits = self.mlm_transform(at(b["mlm_positions"])) @ self.words.weight.T + self.mlm_bias
        mlm = _mean(F.cross_entropy(mlm_logits.flatten(0, 1), b["mlm_targets"].long().flatten(), reduction="none"),
                    b["mlm_weights"].flatten())
        image_states = at(b["mvm_positions"] + self.image_start)
        mvfr = _mean(((self.mvfr(image_states) - b["mvm_targets"]) ** 2).mean(-1), b["mvm_weights"])
        log_q = torch.gather(F.log_softmax(self.mrc(image_states), -1), -1, b["mrc_target_ids"].long())
        p = b["mrc_target_probs"]
        mrc = _mean((p * (torch.log(p.clamp_min(1e-12)) - log_q)).sum(-1), b["mvm_weights"])
        audio_pred = self.mafr(at(b["mam_positions"] + self.audio_start))
        mafr = _mean(((audio_pred - b["mam_targets"]) ** 2).mean(-1), b["mam_weights"])
        nce = _contrastive(audio_pred, b["mam_targets"], b["mam_weights"], self.temperature)
        onehot = F.one_hot(b["match_label"].long(), 5).float()
        match = _mean(F.binary_cross_entropy_with_logits(self.match(states[:, 0]), onehot, reduction="none").mean(-1),
                      b["match_weight"])
        target = b["text_target_ids"].long()
        hidden = self.text_decoder(target[:, :-1], states, pad)
        dtr_logits = hidden @ self.words.weight.T + self.dtr_bias
        dtr_w = (target[:, 1:] > 0).float() * b["dtr_weight"].unsqueeze(1)
        dtr = _mean(F.cross_entropy(dtr_logits.flatten(0, 1), target[:, 1:].flatten(), reduction="none"),
                    dtr_w.flatten())
        losses = [mlm, mvfr, mrc, mafr, nce, match, dtr, torch.zeros(())]
        if self.vision_decoder is not None:
            codes = b["image_codes"].long()
            start = torch.full((codes.shape[0], 1), self.start_id, dtype=torch.long)
            hidden = self.vision_decoder(torch.cat((start, codes[:, :-1]), 1), states, pad)
            ce = F.cross_entropy(self.dir_head(hidden).flatten(0, 1), codes.flatten(), reduction="none")
            losses[7] = _mean(ce, b["dir_weight"].unsqueeze(1).expand_as(codes).flatten())
        losses = torch.stack(losses)
        return (losses * self.weights).sum(), losses


def _mean(values, weights):
    return (values * weights).sum() / weights.sum().clamp_min(1.0)


def _contrastive(pred, target, weights, temperature):
    p = F.normalize(pred.flatten(0, 1), dim=-1, eps=1e-6)
    t = F.normalize(target.flatten(0, 1), dim=-1, eps=1e-6)
    w = weights.flatten()
    logits = p @ t.T / temperature + (1.0 - w).unsqueeze(0) * NEG
    return _mean(-torch.diagonal(F.log_softmax(logits, -1)), w)


class TorchStep:
    """One training step as a PyTorch user writes it: forward, backward, clip the global norm, AdamW."""

    def __init__(self, cfg, dims, weights, threads: int):
        torch.set_num_threads(threads)
        torch.manual_seed(0)
        self.model = TorchPretrain(cfg, dims, weights).train()
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        self.clip = cfg.train.grad_clip

    def __call__(self, batch: dict) -> float:
        self.opt.zero_grad(set_to_none=True)
        total, _ = self.model(batch)
        total.backward()
        if self.clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.clip)
        self.opt.step()
        return float(total.detach())


def to_torch(names, arrays) -> dict:
    """A batch of numpy arrays (MindSpore's column order, `names`) -> {name: torch tensor}, without copies."""
    return {n: torch.from_numpy(a) for n, a in zip(names, arrays)}
