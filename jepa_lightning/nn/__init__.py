"""Modality-agnostic building blocks: token embedders, ViT over tokens, predictor, poolers.

The names below are imported lazily (`jepa_lightning.lazy`): an image run does not import the LiDAR encoders
(`bev`, `center_head`) or the tabular ones."""

from jepa_lightning.lazy import lazy_exports

__all__ = [
    "PatchEmbed2D", "TubeletEmbed3D", "sincos_1d", "sincos_pos_embed", "TransformerPredictor",
    "gather_tokens", "patchify", "TransformerStack", "init_vit_weights", "VisionTransformer",
    "AttentivePooler", "FeatureTokenizer", "TabularEncoder", "TabularPredictor",
    "Projector", "SmallResNet", "TimmResNet", "BEVEncoder", "BEVPredictor", "CenterHead", "Block",
]

__getattr__, __dir__ = lazy_exports(__name__, {
    "bev": ["BEVEncoder", "BEVPredictor"],
    "block": ["Block"],
    "center_head": ["CenterHead"],
    "embed": ["PatchEmbed2D", "TubeletEmbed3D", "patchify"],
    "pooler": ["AttentivePooler"],
    "pos_embed": ["sincos_1d", "sincos_pos_embed"],
    "predictor": ["TransformerPredictor"],
    "projector": ["Projector"],
    "resnet": ["SmallResNet", "TimmResNet"],
    "tabular": ["FeatureTokenizer", "TabularEncoder", "TabularPredictor"],
    "tokens": ["gather_tokens"],
    "transformer": ["TransformerStack", "init_vit_weights"],
    "vit": ["VisionTransformer"],
})
