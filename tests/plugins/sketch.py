"""A fourth modality defined outside src/ (tests/test_fourth_modality.py): a second image stream, a sketch of the
scene, as regions with boxes and features of their own width, masked and regressed in pre-training. Loaded with
OPT_PLUGINS=tests.plugins.sketch (src/modality.py)."""
from src.modality import Modality, register_modality

register_modality(Modality("sketch", "regions", ("sketch_feat", "sketch_boxes", "sketch_mask"),
                           ("sketch_feat", "sketch_boxes", "n_sketch"), "max_regions", 0, True,
                           (("sketch_fr", "regression"),), "skm"))
