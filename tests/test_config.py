import pytest

from src.config import Config, ConfigError, load_config


def test_defaults_and_yaml(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("data:\n  batch_size: 4\n  match_case_probs: [1, 0, 0, 0, 0]\nprepare:\n  audio:\n    n_mels: 20\n")
    cfg = load_config(str(p))
    assert isinstance(cfg, Config)
    assert cfg.data.batch_size == 4 and cfg.prepare.audio.n_mels == 20
    assert cfg.data.match_case_probs == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert cfg.data.max_regions == Config().data.max_regions  # untouched keys keep their defaults


def test_overrides_are_typed(tmp_path):
    cfg = load_config(None, ["data.batch_size=16", "prepare.audio.normalize=false", "data.token_mask_prob=0.2",
                             "prepare.text.vocab=my vocab.txt", "data.match_case_probs=0.2,0.2,0.2,0.2,0.2"])
    assert cfg.data.batch_size == 16 and cfg.prepare.audio.normalize is False
    assert cfg.data.token_mask_prob == 0.2 and cfg.prepare.text.vocab == "my vocab.txt"
    assert cfg.data.match_case_probs == [0.2] * 5


def test_exponent_floats_read_as_numbers(tmp_path):
    # YAML 1.1 reads 5e-5 (no dot) as the string '5e-5'; a float field takes it as the number
    p = tmp_path / "r.yaml"
    p.write_text("train:\n  lr: 5e-5\n")
    assert load_config(str(p)).train.lr == 5e-5
    assert load_config(None, ["train.lr=1e-12"]).train.lr == 1e-12
    with pytest.raises(ConfigError, match="'train.lr' expects float, got str 'fast'"):
        load_config(None, ["train.lr=fast"])


def test_unknown_key_names_key_and_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  bach_size: 4\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: unknown key 'data.bach_size' \(did you mean 'batch_size'\?\)"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="unknown key 'modle'"):
        load_config(None, ["modle.layers=2"])


def test_wrong_type_names_key(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match="'data.batch_size' expects int, got str 'many'"):
        load_config(str(p))
    with pytest.raises(ConfigError, match="'data.shuffle' expects bool"):
        load_config(None, ["data.shuffle=3"])
    with pytest.raises(ConfigError, match="'data' is a section"):
        load_config(None, ["data=3"])


def test_missing_file_and_bad_override():
    with pytest.raises(ConfigError, match="config file not found: nope.yaml"):
        load_config("nope.yaml")
    with pytest.raises(ConfigError, match="key.sub=value"):
        load_config(None, ["data.batch_size"])


def test_shipped_recipes_load():
    for name in ("pretrain_tiny", "pretrain_demo"):
        load_config(f"config/{name}.yaml")


def test_every_recipe_is_run_somewhere():
    """A recipe nothing runs is a claim. Each file of config/ is run by tests/test_amp.py (every *_base and *_coco
    recipe, two steps at tiny sizes), by tests/test_walkthrough.py (docs/own_data.md's fine-tune scripts, given no
    recipe, run config/<task>_finetune.yaml), by a test that names it (the *_tiny recipes), or by the demo
    (scripts/run_demo.sh, the *_demo recipes)."""
    import shlex

    from tests.conftest import ROOT
    from tests.test_amp import BASES
    from tests.test_walkthrough import FINETUNE_LINES

    named = "\n".join(p.read_text(encoding="utf-8") for p in (ROOT / "tests").glob("test_*.py"))
    finetuned = set()
    for line in (ROOT / "docs" / "own_data.md").read_text(encoding="utf-8").splitlines():
        match = FINETUNE_LINES.match(line)
        if match and len(shlex.split(line)) == 5:  # bash SCRIPT PRETRAINED DATA OUT: the default recipe
            finetuned.add({"run_standalone_train_retrieval": "retrieval", "train_caption": "caption"}[match[1]])
    demo = (ROOT / "scripts" / "run_demo.sh").read_text(encoding="utf-8")
    unrun = []
    for recipe in sorted(p.stem for p in (ROOT / "config").glob("*.yaml")):
        task, kind = recipe.rsplit("_", 1)
        runs = {"base": recipe in BASES, "coco": recipe in BASES, "finetune": task in finetuned,
                "tiny": f"{recipe}.yaml" in named, "demo": f"config/{recipe}.yaml" in demo}.get(kind, False)
        if not runs:
            unrun.append(recipe)
    assert not unrun, f"recipes that no test or the demo runs: {unrun}"
    assert {"caption_finetune", "retrieval_finetune", "pretrain_base", "caption_coco"} <= {
        p.stem for p in (ROOT / "config").glob("*.yaml")}


def test_a_task_brings_its_own_section_flags_and_training(tmp_path, capsys):
    """A task registered outside src/ (here, in the test): its config section loads from a recipe and --set, is
    written back as a top-level key, its keys of an earlier version are read where they live now, its flags appear
    in the entry point's parser, and train.py finds how it trains. No shared file names it."""
    import dataclasses

    from src.config import SECTIONS, Config, to_dict, with_section
    from src.tasks import registry
    from src.cli import task_parser

    @dataclasses.dataclass
    class EchoConfig:
        loudness: float = 1.0     # how loud
        words: int = 3

    def add_flags(group):
        group.add_argument("--shout", default=None, help="the words to echo")

    task = registry.Task("echo_test", __name__, settings=EchoConfig, renamed={"loss.echo": "echo_test.loudness"},
                         training=registry.Training(lambda cfg, n=1, i=0: None, ("echo",)),
                         flags={"evaluate": registry.Flags(add_flags)}, evaluate=lambda run: [], help="echoes")
    registry.register(task)
    try:
        recipe = tmp_path / "echo.yaml"
        recipe.write_text("task: echo_test\necho_test:\n  words: 5\nloss:\n  echo: 2.5\n  mlm: 0.5\n")
        cfg = load_config(str(recipe), ["echo_test.words=7"])
        assert cfg.echo_test == EchoConfig(loudness=2.5, words=7) and cfg.loss.mlm == 0.5
        assert to_dict(cfg)["echo_test"] == {"loudness": 2.5, "words": 7} and "sections" not in to_dict(cfg)
        assert load_config(None, ["loss.echo=4"]).echo_test.loudness == 4.0  # an old key in --set too
        assert with_section(cfg, "echo_test", EchoConfig(words=1)).echo_test.words == 1 and cfg.echo_test.words == 7
        with pytest.raises(ConfigError, match="echo_test.word: unknown key 'word' \\(did you mean 'words'"):
            load_config(None, ["echo_test.word=1"])
        refused_as_one_setting(tmp_path / "both.yaml", "echo_test:\n  loudness: 1.0\nloss:\n  echo: 2.5\n",
                               "loss.echo", "echo_test.loudness")
        assert registry.training("echo_test").loss_names == ("echo",)
        args = task_parser("doc", "evaluate").parse_args(["--task", "echo_test", "--shout", "hello"])
        assert args.shout == "hello"
    finally:
        registry._TASKS.pop("echo_test")
        SECTIONS[Config].pop("echo_test")


def test_runs_written_before_the_task_sections_still_load(tmp_path):
    """A run's config.yaml of the version that kept the fine-tuning losses in `loss` reads them from their sections."""
    old = tmp_path / "config.yaml"
    old.write_text("task: retrieval\nloss:\n  match: 1.0\n  contrastive: 0.5\n  warm_start_epochs: 20\n  vqa: 2.0\n"
                   "  caption: 3.0\n  label_smoothing: 0.2\n  mlm: 0.7\n")
    cfg = load_config(str(old))
    assert (cfg.retrieval.contrastive, cfg.retrieval.warm_start_epochs) == (0.5, 20)
    assert (cfg.vqa.weight, cfg.caption.weight, cfg.caption.label_smoothing, cfg.loss.mlm) == (2.0, 3.0, 0.2, 0.7)


def test_a_source_format_registers_its_preparation_section(tmp_path):
    """VQA's answer threshold is the section prepare.vqa that src/data/vqa.py registers; the key an earlier version
    kept in `prepare` (answer_min_count) still loads from a recipe, a --set and a prepared set's meta.json."""
    from src.config import load_section, to_dict
    import src.data.vqa  # noqa: F401 (registers prepare.vqa)

    old = tmp_path / "old.yaml"
    old.write_text("prepare:\n  shards: 2\n  answer_min_count: 4\n")
    cfg = load_config(str(old))
    assert (cfg.prepare.vqa.min_count, cfg.prepare.shards) == (4, 2)
    assert load_config(None, ["prepare.answer_min_count=6"]).prepare.vqa.min_count == 6
    assert load_config(None, ["prepare.vqa.min_count=7"]).prepare.vqa.min_count == 7
    written = to_dict(cfg.prepare)
    assert written["vqa"] == {"min_count": 4} and "sections" not in written and "answer_min_count" not in written
    assert load_section("prepare", written, "meta.json") == cfg.prepare
    assert load_section("prepare", {"answer_min_count": 3, "image": {"grid": 2}}, "old meta.json").vqa.min_count == 3
    with pytest.raises(ConfigError, match="prepare.vqa.min_cnt: unknown key 'min_cnt'"):
        load_config(None, ["prepare.vqa.min_cnt=1"])
    refused_as_one_setting(tmp_path / "both.yaml", "prepare:\n  answer_min_count: 4\n  vqa:\n    min_count: 5\n",
                           "prepare.answer_min_count", "prepare.vqa.min_count")


def refused_as_one_setting(recipe, text: str, old: str, new: str) -> None:
    """A recipe that gives a setting under its old key and its new one is refused, naming both."""
    recipe.write_text(text)
    with pytest.raises(ConfigError, match=f"'{old}' and '{new}' are the same setting"):
        load_config(str(recipe))


def test_data_preparation_reads_only_its_section(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("prepare:\n  shards: 2\nno_such_task:\n  x: 1\n")
    assert load_config(str(recipe), ["no_such_task.x=2", "prepare.seed=3"], only=("prepare",)).prepare.seed == 3
    with pytest.raises(ConfigError, match="unknown key 'no_such_task'"):
        load_config(str(recipe))
