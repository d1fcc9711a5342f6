"""Autoregressive generation with a key/value cache: greedy, beam search, top-k / top-p sampling. It decodes word
pieces (captions, transcripts: `CaptionModel`) and dVAE codes (text-to-image: `TextToImageModel`) alike.

Two compiled cells do the work: `StartCell` encodes a batch once and returns the decoder's caches; `StepCell` feeds
one new symbol per row, writes its keys/values into the cache and returns the top candidates of the next one. The
search itself (which rows continue, beams, sampling) runs in numpy between steps: it touches [rows, k] arrays only.

A model that generates has `memory(modalities, *inputs)` (the encoder output the decoder attends to),
`log_probs(hidden)` over its symbols, its decoder's `start_cache`, `decode_step` and `decode` (whole prefixes), and
`decoder_layers`.

`use_cache=False` swaps in `FullStepCell`, which reruns the decoder over the whole prefix each step (padded up to a
multiple of PREFIX_BUCKET positions, so a graph compiles once per bucket rather than once per length); it exists to
measure the cache (bench/bench_decode.py) and to test that both give the same pieces.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.config import ConfigError, GenerateConfig
from src.infer.items import fixed_batches
from src.model.layers import NEG

STRATEGIES = ("greedy", "beam", "sample")
PREFIX_BUCKET = 8  # the uncached step's prefix lengths are rounded up to this


@dataclass(frozen=True)
class Symbols:
    """What a decoder emits: `size` symbols (its output classes); `start` is fed first; a row ends when it emits `end`
    (-1: rows always run max_len - 1 steps); `banned` symbols are never chosen."""
    size: int
    start: int
    end: int = -1
    banned: Tuple[int, ...] = ()


def text_symbols(specials: Dict[str, int], vocab_size: int) -> Symbols:
    """Word pieces: [CLS] starts, [SEP] ends, and a caption never contains [PAD], [CLS] or [MASK]."""
    return Symbols(vocab_size, specials["[CLS]"], specials["[SEP]"],
                   tuple(specials[t] for t in ("[PAD]", "[CLS]", "[MASK]")))


def check_generate_config(cfg: GenerateConfig, max_positions: int) -> None:
    if cfg.strategy not in STRATEGIES:
        raise ConfigError(f"generate.strategy '{cfg.strategy}' is unknown (known: {', '.join(STRATEGIES)})")
    # positions 0 .. max_len - 2 are fed (the start symbol, then each symbol but the last)
    if not 2 <= cfg.max_len <= max_positions + 1:
        raise ConfigError(f"generate.max_len {cfg.max_len} must be in 2..{max_positions + 1} "
                          f"(model.max_positions + 1)")
    if cfg.beam_size < 1 or cfg.batch_size < 1 or cfg.top_k < 0:
        raise ConfigError("generate.beam_size and batch_size must be >= 1, top_k >= 0")
    if not 0.0 < cfg.top_p <= 1.0 or cfg.temperature <= 0.0:
        raise ConfigError(f"generate.top_p must be in (0, 1] and temperature > 0 "
                          f"(got {cfg.top_p}, {cfg.temperature})")


def candidates_per_step(cfg: GenerateConfig, vocab_size: int) -> int:
    """How many top pieces a step returns: 1 for greedy, 2 x beam (enough to refill every beam after some end), the
    sampling pool (the whole vocabulary when only top_p limits it)."""
    if cfg.strategy == "greedy":
        return 1
    if cfg.strategy == "beam":
        return min(2 * cfg.beam_size, vocab_size)
    return min(cfg.top_k, vocab_size) if cfg.top_k > 0 else vocab_size


def flat_cache(pairs) -> tuple:
    """((k0, v0), (k1, v1), ...) -> (k0, v0, k1, v1, ...)."""
    out = ()
    for k, v in pairs:
        out += (k, v)
    return out


class StartCell(nn.Cell):
    """Model inputs [B, ...] + row_index [N] (which input row each decoded row reads; beams repeat a row) ->
    (memory bias, then every layer's memory keys and values, then every layer's empty self-attention keys and values
    with max_len - 1 slots, one per position fed) for N rows, as one flat tuple of tensors (so an exported graph has
    plain tensor outputs); with `keep_memory` (the uncached path) the encoder output and its mask instead."""

    def __init__(self, model, modalities: Tuple[str, ...], max_len: int, keep_memory: bool = False):
        super().__init__(auto_prefix=False)
        self.model, self.modalities, self.max_len, self.keep_memory = model, modalities, max_len, keep_memory

    def construct(self, *inputs):  # the model inputs, then row_index
        memory, mask = self.model.memory(self.modalities, *inputs[:-1])
        row_index = inputs[-1]
        memory, mask = ops.gather(memory, row_index, 0), ops.gather(mask, row_index, 0)
        if self.keep_memory:
            return memory, mask
        self_cache, memory_cache, memory_bias = self.model.start_cache(memory, mask, self.max_len - 1)
        return (memory_bias,) + flat_cache(memory_cache) + flat_cache(self_cache)


def top_candidates(scores, k: int, groups: int = 256):
    """(values, indices) of the k largest scores of each row [N, V], largest first. MindSpore's CPU TopK over a 30k
    vocabulary costs as much as the rest of a decoder step, so for small k the vocabulary is cut into `groups` blocks:
    the k best entries lie in the k blocks with the best maxima (a block outside them has a maximum below k others),
    so only those blocks go through TopK. k = 1 is a plain max."""
    n, v = scores.shape
    if k == 1:
        values, indices = ops.max(scores, -1, True)
        return values, indices.astype(ms.int32)
    width = -(-v // groups)
    if k * 8 > groups or v <= groups:
        return ops.topk(scores, k)
    padded = ops.concat((scores, ops.full((n, groups * width - v), NEG * 10.0, dtype=scores.dtype)), -1)
    blocks = padded.reshape(n, groups, width)
    _, best_blocks = ops.topk(ops.amax(blocks, -1), k)  # [N, k]
    candidates = ops.gather_elements(blocks, 1, best_blocks.expand_dims(-1).broadcast_to((n, k, width)))
    values, flat = ops.topk(candidates.reshape(n, k * width), k)
    block = ops.gather_elements(best_blocks, 1, flat // width)
    return values, (block * width + flat % width).astype(ms.int32)


def banned_bias(vocab_size: int, banned: Sequence[int]) -> ms.Tensor:
    """[V] additive bias that keeps the banned symbols out of every search."""
    bias = np.zeros(vocab_size, np.float32)
    bias[list(banned)] = NEG
    return ms.Tensor(bias)


class Candidates(nn.Cell):
    """Decoder states [N, H] -> the top k (log-probabilities [N, k], symbols [N, k]) of the next symbol, banned ones
    excluded. A model whose head predicts a subset of the symbols (`output_symbols()`: their sorted ids; a caption
    model's training pieces) is searched over that subset and its class indices mapped back to symbols: the same
    candidates as over the whole vocabulary (where every other symbol scores -1e9) without spreading [N, K]
    log-probabilities over [N, V] every step."""

    def __init__(self, model, k: int, bias: ms.Tensor):
        super().__init__(auto_prefix=False)
        self.model = model
        symbols = model.output_symbols() if hasattr(model, "output_symbols") else None
        symbols = None if symbols is None else symbols.asnumpy()  # a constant of this graph, not a shared Parameter
        self.symbols = None if symbols is None else ms.Tensor(symbols)
        self.bias = bias if symbols is None else ms.Tensor(bias.asnumpy()[symbols])
        self.k = k if symbols is None else min(k, len(symbols))

    def construct(self, hidden):
        if self.symbols is None:
            return top_candidates(self.model.log_probs(hidden) + self.bias, self.k)
        values, classes = top_candidates(self.model.class_log_probs(hidden) + self.bias, self.k)
        return values, ops.gather(self.symbols, classes.reshape(-1), 0).reshape(classes.shape)


class StepCell(nn.Cell):
    """(ids [N, 1] at `position`, parents [N]: the row whose cache each row continues, then StartCell's flat caches)
    -> (top-k log-probabilities [N, k], their symbols [N, k], then the updated self-attention keys and values).
    Without `reorder` (greedy, sampling: every row continues itself) the caches are not gathered by `parents`."""

    def __init__(self, model, k: int, bias: ms.Tensor, reorder: bool = True):
        super().__init__(auto_prefix=False)
        self.model, self.reorder = model, reorder
        self.candidates = Candidates(model, k, bias)
        self.layers = model.decoder_layers

    def construct(self, ids, position, parents, memory_bias, *caches):
        memory_cache, self_cache = (), ()
        for i in range(self.layers):
            memory_cache += ((caches[2 * i], caches[2 * i + 1]),)
            j = 2 * (self.layers + i)  # keys/values of the rows each row continues
            if self.reorder:
                self_cache += ((ops.gather(caches[j], parents, 0), ops.gather(caches[j + 1], parents, 0)),)
            else:
                self_cache += ((caches[j], caches[j + 1]),)
        hidden, self_cache = self.model.decode_step(ids, position, self_cache, memory_cache, memory_bias)
        values, indices = self.candidates(hidden[:, 0])
        return (values, indices) + flat_cache(self_cache)


class FullStepCell(nn.Cell):
    """The uncached step: (prefix [N, L >= position + 1], position, encoder output, mask) -> top-k of the next
    symbol, from the decoder rerun over the whole prefix (the causal mask keeps padding slots out)."""

    def __init__(self, model, k: int, bias: ms.Tensor):
        super().__init__(auto_prefix=False)
        self.model = model
        self.candidates = Candidates(model, k, bias)

    def construct(self, buffer, position, memory, memory_mask):
        hidden = self.model.decode(buffer, memory, memory_mask)
        return self.candidates(ops.gather(hidden, position.reshape(1), 1)[:, 0])


class Generator:
    """Decodes batches of exactly `cfg.batch_size` rows (each strategy's step compiles once). Returns the generated
    symbols of each row, without the start and end symbols."""

    def __init__(self, model, modalities: Sequence[str], cfg: GenerateConfig, symbols: Symbols,
                 max_positions: int, use_cache: bool = True, graphs=None):
        """`graphs` (start, step, decoder layers): exported StartCell/StepCell graphs that stand in for the model's
        (`src/infer/export.py`); `model` is then unused."""
        check_generate_config(cfg, max_positions)
        self.cfg, self.use_cache = cfg, use_cache or graphs is not None
        self.start_id, self.end_id = symbols.start, symbols.end
        self.width = cfg.beam_size if cfg.strategy == "beam" else 1
        if graphs is not None:
            self.start, self.step_cell, self.layers = graphs
        else:
            k = candidates_per_step(cfg, symbols.size)
            bias = banned_bias(symbols.size, symbols.banned)
            self.start = StartCell(model, tuple(modalities), cfg.max_len, keep_memory=not use_cache)
            self.step_cell = StepCell(model, k, bias, reorder=cfg.strategy == "beam") if use_cache else \
                FullStepCell(model, k, bias)
            self.layers = model.decoder_layers
        self.rng = np.random.default_rng(cfg.seed)

    def __call__(self, inputs: Sequence[np.ndarray], starts: Optional[np.ndarray] = None) -> List[List[int]]:
        """`starts` [B]: each row's start symbol (a caption's language); default `symbols.start`."""
        b = len(inputs[0])
        state = self.start(*(ms.Tensor(x) for x in inputs), ms.Tensor(np.repeat(np.arange(b), self.width), ms.int32))
        starts = np.full(b, self.start_id, np.int32) if starts is None else np.asarray(starts, np.int32)
        step = _Stepper(self, state, np.repeat(starts, self.width))
        if self.cfg.strategy == "beam":
            return beam_search(step, b, self.cfg, self.end_id)
        return sample_or_greedy(step, b, self.cfg, self.end_id, self.rng)


def generate_rows(generator: Generator, count: int, make_inputs: Callable[[np.ndarray], Sequence[np.ndarray]],
                  starts: Optional[np.ndarray] = None) -> List[List[int]]:
    """Generated pieces for rows 0..count-1, decoded in batches of exactly generator.cfg.batch_size;
    make_inputs(rows) builds a batch's model inputs; `starts` [count]: each row's start symbol (default the
    generator's)."""
    out = []
    for real, rows in fixed_batches(count, generator.cfg.batch_size):
        out.extend(generator(make_inputs(rows), None if starts is None else starts[rows])[:real])
    return out


class _Stepper:
    """One decoding step for either cell: step(parents, new_tokens) -> (values [N, k], indices [N, k]). Row i
    continues row parents[i]'s prefix with new_tokens[i] (none on the first call, which feeds the start piece)."""

    def __init__(self, gen: Generator, state, starts: np.ndarray):
        self.gen, self.state, self.position = gen, state, 0
        self.max_len = gen.cfg.max_len
        self.tokens = starts.reshape(-1, 1).astype(np.int32)  # the prefix of each row so far

    def __call__(self, parents: np.ndarray, new_tokens: np.ndarray = None):
        if new_tokens is not None:
            self.tokens = np.concatenate([self.tokens[parents], new_tokens[:, None].astype(np.int32)], 1)
        position = ms.Tensor(self.position, ms.int32)
        if self.gen.use_cache:
            fixed = self.state[:-2 * self.gen.layers]  # memory bias and keys/values; then the self-attention caches
            values, indices, *self_cache = self.gen.step_cell(ms.Tensor(self.tokens[:, -1:]), position,
                                                              ms.Tensor(parents, ms.int32), *self.state)
            self.state = fixed + tuple(self_cache)
        else:
            width = min(-(-(self.position + 1) // PREFIX_BUCKET) * PREFIX_BUCKET, self.max_len - 1)
            buffer = np.zeros((len(self.tokens), width), np.int32)
            buffer[:, :self.tokens.shape[1]] = self.tokens
            values, indices = self.gen.step_cell(ms.Tensor(buffer), position, *self.state)
        self.position += 1
        return values.asnumpy(), indices.asnumpy()


def sample_or_greedy(step: _Stepper, b: int, cfg: GenerateConfig, end_id: int, rng) -> List[List[int]]:
    out = [[] for _ in range(b)]
    done = np.zeros(b, bool)
    parents, tokens = np.arange(b), None
    for _ in range(cfg.max_len - 1):
        values, indices = step(parents, tokens)
        tokens = indices[:, 0] if cfg.strategy == "greedy" else sample_pieces(values, indices, cfg, rng)
        for i in np.flatnonzero(~done):
            if tokens[i] == end_id:
                done[i] = True
            else:
                out[i].append(int(tokens[i]))
        if done.all():
            break
    return out


def sample_pieces(values: np.ndarray, indices: np.ndarray, cfg: GenerateConfig, rng) -> np.ndarray:
    """One piece per row from its top candidates (sorted, most likely first): temperature, then the smallest prefix
    whose probability reaches top_p."""
    logits = values / cfg.temperature
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    keep = np.cumsum(probs, 1) - probs < cfg.top_p  # a piece stays while the mass before it is below top_p
    probs = np.where(keep, probs, 0.0)
    probs /= probs.sum(1, keepdims=True)
    choice = np.array([rng.choice(len(p), p=p) for p in probs])
    return indices[np.arange(len(indices)), choice]


def beam_search(step: _Stepper, b: int, cfg: GenerateConfig, end_id: int) -> List[List[int]]:
    """Beam search over b rows of cfg.beam_size beams. A hypothesis ends when its best continuation is the end piece
    (only among the beam_size best candidates, as usual); its score is the summed log-probability / length **
    length_penalty, the length counting the end piece. A row is done once it holds beam_size ended hypotheses
    (early_stop) or once no live beam can still beat the worst of them."""
    width = cfg.beam_size
    scores = np.full((b, width), -np.inf)
    scores[:, 0] = 0.0  # every beam starts as the same prefix: only one may expand at first
    ended: List[List[Tuple[float, List[int]]]] = [[] for _ in range(b)]
    done = np.zeros(b, bool)
    seqs = [[] for _ in range(b * width)]
    parents, tokens = np.arange(b * width), None
    for length in range(1, cfg.max_len):
        values, indices = step(parents, tokens)
        k = values.shape[1]
        totals = (scores.reshape(-1, 1) + values).reshape(b, width * k)
        parents, tokens = np.arange(b * width), np.zeros(b * width, np.int32)  # done rows idle in place
        new_scores = np.full((b, width), -np.inf)
        new_seqs = [[] for _ in range(b * width)]
        for r in np.flatnonzero(~done):
            filled = 0
            for rank, j in enumerate(np.argsort(-totals[r], kind="stable")):
                beam, c = divmod(int(j), k)
                row, score = r * width + beam, totals[r, j]
                if not np.isfinite(score):
                    break
                piece = int(indices[row, c])
                if piece == end_id:
                    if rank < width:
                        _keep_best(ended[r], (score / length ** cfg.length_penalty, seqs[row]), width)
                    continue
                slot = r * width + filled
                parents[slot], tokens[slot], new_scores[r, filled] = row, piece, score
                new_seqs[slot] = seqs[row] + [piece]
                filled += 1
                if filled == width:
                    break
            done[r] = _row_done(ended[r], new_scores[r], length, cfg)
        scores, seqs = new_scores, new_seqs
        if done.all():
            break
    for r in np.flatnonzero(~done):  # max_len reached: live beams compete as they are
        for beam in range(width):
            if np.isfinite(scores[r, beam]):
                length = len(seqs[r * width + beam])
                _keep_best(ended[r], (scores[r, beam] / max(length, 1) ** cfg.length_penalty,
                                      seqs[r * width + beam]), width)
    return [max(hyps, key=lambda h: h[0])[1] if hyps else [] for hyps in ended]


def _keep_best(hyps: list, hyp: tuple, width: int) -> None:
    hyps.append(hyp)
    if len(hyps) > width:
        hyps.remove(min(hyps, key=lambda h: h[0]))


def _row_done(hyps: list, live_scores: np.ndarray, length: int, cfg: GenerateConfig) -> bool:
    if not np.isfinite(live_scores).any():
        return True
    if len(hyps) < cfg.beam_size:
        return False
    if cfg.early_stop:
        return True
    # log-probabilities only fall, so a live beam's best possible normalised score is its score now divided by the
    # length that favours it most (the longest for a positive penalty)
    best_live = live_scores.max()
    reach = (cfg.max_len - 1) if cfg.length_penalty > 0 else length + 1
    return min(h[0] for h in hyps) >= best_live / reach ** cfg.length_penalty
