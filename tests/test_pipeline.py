import numpy as np
import pytest

from src.config import ConfigError
from src.data.masking import MATCH_CASES, TEXT, IMAGE, AUDIO
from src.data.objectives import PRETRAIN_COLUMNS, Pretrain, corrupt
from src.data.padding import read_padded
from src.data.pipeline import create_dataset, epoch_indices, steps_per_epoch
from src.data.records import open_prepared


def batches(ds, columns):
    return [dict(zip(columns, (np.asarray(x) for x in row))) for row in ds.create_tuple_iterator(output_numpy=True,
                                                                                              num_epochs=1)]


@pytest.mark.parametrize("n, world", [(40, 4), (41, 4), (7, 3)])
def test_rank_splits_disjoint_and_complete(n, world):
    eval_parts = [epoch_indices(n, 0, 0, True, world, r, drop_last=False) for r in range(world)]
    assert sorted(np.concatenate(eval_parts).tolist()) == list(range(n))  # every sample exactly once
    train_parts = [epoch_indices(n, 0, 0, True, world, r, drop_last=True) for r in range(world)]
    allt = np.concatenate(train_parts)
    assert len(set(allt.tolist())) == len(allt) == n - n % world  # disjoint, equal sizes
    assert len({len(p) for p in train_parts}) == 1
    assert set(allt.tolist()) != set(np.concatenate([epoch_indices(n, 0, 1, True, world, r) for r in range(world)])) \
        or n % world == 0  # the left-over samples change from epoch to epoch
    with pytest.raises(ValueError, match="shard_id 4 is outside"):
        epoch_indices(n, 0, 0, True, 4, 4)


def test_epoch_order_depends_on_seed_and_epoch():
    a = epoch_indices(100, 0, 0, True)
    assert (a == epoch_indices(100, 0, 0, True)).all()
    assert (a != epoch_indices(100, 0, 1, True)).any() and (a != epoch_indices(100, 1, 0, True)).any()
    assert (epoch_indices(100, 0, 0, False) == np.arange(100)).all()


def cfg_for(tiny_cfg, prepared, **kw):
    import dataclasses
    return dataclasses.replace(tiny_cfg.data, path=str(prepared), **kw)


def test_static_shapes_and_dtypes(prepared, tiny_cfg):
    cfg = cfg_for(tiny_cfg, prepared)
    data = open_prepared(prepared)
    got = batches(create_dataset(data, cfg, epoch=0), PRETRAIN_COLUMNS)
    assert len(got) == steps_per_epoch(data, cfg) == 4
    b, lt, nv, na = 8, cfg.max_text_len, cfg.max_regions, cfg.max_audio_tokens
    shapes = {"text_ids": (b, lt), "text_mask": (b, lt), "image_feat": (b, nv, 48), "image_boxes": (b, nv, 7),
              "image_mask": (b, nv), "audio_feat": (b, na, 32), "audio_mask": (b, na), "text_target_ids": (b, lt),
              "mlm_positions": (b, 2), "mvm_targets": (b, 1, 48), "mrc_target_ids": (b, 1, 1),
              "mrc_target_probs": (b, 1, 1), "mam_targets": (b, 3, 32),
              "match_label": (b,), "match_weight": (b,), "dtr_weight": (b,)}
    for batch in got:
        for key, shape in shapes.items():
            assert batch[key].shape == shape, key
        assert batch["text_ids"].dtype == np.int32 and batch["image_feat"].dtype == np.float32
        assert (batch["text_ids"][:, 0] == 101).all() and (batch["text_mask"][:, 0] == 1).all()  # [CLS] always
        assert (batch["mrc_target_ids"] < data.mrc_classes).all() and (batch["match_label"] < len(MATCH_CASES)).all()


def test_same_seed_and_epoch_same_batches_and_exact_resume(prepared, tiny_cfg):
    cfg = cfg_for(tiny_cfg, prepared, workers=2)
    one = batches(create_dataset(str(prepared), cfg, epoch=1), PRETRAIN_COLUMNS)
    two = batches(create_dataset(str(prepared), cfg_for(tiny_cfg, prepared, workers=1), epoch=1), PRETRAIN_COLUMNS)
    resumed = batches(create_dataset(str(prepared), cfg, epoch=1, start_batch=2), PRETRAIN_COLUMNS)
    other = batches(create_dataset(str(prepared), cfg, epoch=2), PRETRAIN_COLUMNS)
    for x, y in zip(one, two):
        for key in PRETRAIN_COLUMNS:
            np.testing.assert_array_equal(x[key], y[key])
    assert len(resumed) == 2
    for x, y in zip(one[2:], resumed):
        for key in PRETRAIN_COLUMNS:
            np.testing.assert_array_equal(x[key], y[key])
    assert any((x["text_ids"] != y["text_ids"]).any() for x, y in zip(one, other))


def test_the_evaluation_reader_gives_every_sample_once_in_order(prepared, tiny_cfg):
    cfg = cfg_for(tiny_cfg, prepared, batch_size=3)
    data = open_prepared(prepared)
    got = read_padded(data, cfg, "val")
    assert got["text_ids"].shape == (8, cfg.max_text_len) and sorted(got["index"].tolist()) == list(range(8))
    assert (got["row_valid"] == 1).all()
    # the same padded inputs as the training pipeline's, before its corruption
    first = read_padded(data, cfg, "val", limit=2)
    assert first["index"].tolist() == got["index"][:2].tolist()
    assert np.array_equal(first["image_feat"], got["image_feat"][:2])


def synthetic_batch(col, b=64):
    """Row r carries r in its text ids, image features and audio features, so donors can be traced."""
    cfg = col.cfg
    image_dim, audio_dim = 48, 32  # the tiny prepared set's
    lt, nv, na = cfg.max_text_len, cfg.max_regions, cfg.max_audio_tokens
    rows = np.arange(b)
    text = np.zeros((b, lt), np.int32)
    text[:, 0], text[:, 1:6], text[:, 6] = 101, 1000 + rows[:, None], 102
    tmask = np.zeros((b, lt), np.float32)
    tmask[:, :7] = 1
    batch = {"index": rows, "text_ids": text, "text_mask": tmask,
             "image_feat": np.broadcast_to(rows[:, None, None] + 1.0, (b, nv, image_dim)).astype(np.float32),
             "image_boxes": np.ones((b, nv, 7), np.float32), "image_mask": np.ones((b, nv), np.float32),
             "mrc_ids": np.zeros((b, nv, 1), np.int32), "mrc_probs": np.ones((b, nv, 1), np.float32),
             "audio_feat": np.broadcast_to(rows[:, None, None] + 1.0, (b, na, audio_dim)).astype(np.float32),
             "audio_mask": np.ones((b, na), np.float32)}
    batch["text_mask"][b - 4:, 1:] = 0  # four text-less rows: never matching rows
    batch["text_ids"][b - 4:, 1:] = 0
    return batch


def source_row(feats, mask):
    """The row a modality came from: synthetic_batch fills row r's features with r + 1 (masked tokens are 0)."""
    kept = feats[mask > 0]
    return int(kept.max()) - 1 if len(kept) else None


def test_matching_labels_follow_the_swapped_modalities(prepared, tiny_cfg):
    col = Pretrain(open_prepared(prepared), cfg_for(tiny_cfg, prepared))
    for seed in range(5):
        out = corrupt(synthetic_batch(col), col, np.random.default_rng(seed))
        b = len(out["match_label"])
        assert set(out["match_label"][:b - 4].tolist()) == set(range(len(MATCH_CASES)))
        for r in range(b - 4):
            replaced = MATCH_CASES[out["match_label"][r]][1]
            sources = {TEXT: out["text_target_ids"][r, 1] - 1000,
                       IMAGE: source_row(out["image_feat"][r], out["image_mask"][r]),
                       AUDIO: source_row(out["audio_feat"][r], out["audio_mask"][r])}
            for m, src in sources.items():
                if src is not None:  # a modality dropped from a positive row has no source to check
                    assert (src != r) == (m in replaced), (seed, r, m)
        negatives = out["match_label"] > 0
        assert (out["match_weight"][negatives] == 1).all()  # negatives keep every modality
        assert (out["mlm_weights"][negatives] == 0).all() and (out["dtr_weight"][negatives] == 0).all()
        assert (out["mvm_weights"][negatives] == 0).all() and (out["mam_weights"][negatives] == 0).all()
        assert (out["match_weight"][b - 4:] == 0).all() and (out["match_label"][b - 4:] == 0).all()


def test_modality_drop_removes_inputs_and_losses(prepared, tiny_cfg):
    cfg = cfg_for(tiny_cfg, prepared, modality_drop_prob=0.5, match_case_probs=[1, 0, 0, 0, 0])
    col = Pretrain(open_prepared(prepared), cfg)
    out = corrupt(synthetic_batch(col, 256), col, np.random.default_rng(0))
    text_kept = out["text_mask"][:, 1] > 0
    image_kept = out["image_mask"].any(1)
    audio_kept = out["audio_mask"].any(1)
    assert 0.2 < (~text_kept[:-4]).mean() < 0.5 and 0.2 < (~image_kept).mean() < 0.6
    assert (text_kept | image_kept | audio_kept).all()  # never all dropped
    assert (out["mlm_weights"][~text_kept] == 0).all() and (out["mvm_weights"][~image_kept] == 0).all()
    assert (out["mam_weights"][~audio_kept] == 0).all()
    assert (out["image_feat"][~image_kept] == 0).all() and (out["text_ids"][~text_kept][:, 1:] == 0).all()
    # DTR still reconstructs a dropped text, from the other modalities
    assert (out["dtr_weight"][:-4] == 1).all() and (out["text_target_ids"][:-4, 1] >= 1000).all()

    full = text_kept & image_kept & audio_kept
    assert (out["match_weight"] == full).all()
    # a masked position holds [MASK], a random piece, or the original; its target is the original piece
    used = out["mlm_weights"] > 0
    assert (out["mlm_targets"][used] >= 1000).all()
    assert 0.1 < out["mlm_weights"][text_kept[:, None].repeat(2, 1)].mean() <= 1


def test_modality_drop_probabilities_per_modality(prepared, tiny_cfg):
    cfg = cfg_for(tiny_cfg, prepared, modality_drop_probs=[0.8, 0.0, 0.1], match_case_probs=[1, 0, 0, 0, 0])
    col = Pretrain(open_prepared(prepared), cfg)
    out = corrupt(synthetic_batch(col, 512), col, np.random.default_rng(0))
    text_dropped = (out["text_mask"][:-4, 1] == 0).mean()
    assert 0.7 < text_dropped < 0.9 and out["image_mask"].any(1).all()  # images are never dropped
    assert 0.03 < (~out["audio_mask"].any(1)).mean() < 0.2
    for bad in ([0.5, 0.5], [1.0, 0.0, 0.0]):
        with pytest.raises(ConfigError, match="modality_drop_probs"):
            Pretrain(open_prepared(prepared), cfg_for(tiny_cfg, prepared, modality_drop_probs=bad))
