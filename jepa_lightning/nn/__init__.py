"""Modality-agnostic building blocks: token embedders, ViT over tokens, predictor, poolers."""

from jepa_lightning.nn.bev import BEVEncoder, BEVPredictor
from jepa_lightning.nn.center_head import CenterHead
from jepa_lightning.nn.embed import PatchEmbed2D, TubeletEmbed3D, patchify
from jepa_lightning.nn.pooler import AttentivePooler
from jepa_lightning.nn.pos_embed import sincos_1d, sincos_pos_embed
from jepa_lightning.nn.predictor import TransformerPredictor
from jepa_lightning.nn.resnet import SmallResNet, TimmResNet
from jepa_lightning.nn.tabular import FeatureTokenizer, TabularEncoder, TabularPredictor
from jepa_lightning.nn.tokens import gather_tokens
from jepa_lightning.nn.transformer import TransformerStack, init_vit_weights
from jepa_lightning.nn.vit import VisionTransformer

__all__ = [
    "PatchEmbed2D", "TubeletEmbed3D", "sincos_1d", "sincos_pos_embed", "TransformerPredictor",
    "gather_tokens", "patchify", "TransformerStack", "init_vit_weights", "VisionTransformer",
    "AttentivePooler", "FeatureTokenizer", "TabularEncoder", "TabularPredictor",
    "SmallResNet", "TimmResNet", "BEVEncoder", "BEVPredictor", "CenterHead",
]
