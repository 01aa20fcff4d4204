"""Published encoders in (`jepa_lightning.pretrained`): Hugging Face I-JEPA folders become our VisionTransformer with
the same outputs; bad checkpoints fail naming the file, the key and the shapes."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from jepa_lightning.eval.checkpoint import load_encoder_weights
from jepa_lightning.nn.vit import VisionTransformer
from jepa_lightning.pretrained import CheckpointError, detect_format, load_encoder
from jepa_lightning.pretrained.files import mlp_ratio

OFFICIAL = Path(__file__).resolve().parent / "data" / "official"  # written by tests/data/make_official_fixtures.py

transformers = pytest.importorskip("transformers")

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 64,
        "image_size": 16, "patch_size": 4}


def hf_ijepa(folder, seed=0, **config):
    """A random-init IJepaModel (every tensor drawn away from its init: LayerNorms, biases, positions) saved by
    `save_pretrained` into `folder`."""
    torch.manual_seed(seed)
    model = transformers.IJepaModel(transformers.IJepaConfig(**(TINY | config))).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(folder)
    return model


@pytest.mark.parametrize("config", [{}, {"qkv_bias": False, "layer_norm_eps": 1e-6, "image_size": [16, 24]}])
def test_hf_ijepa_loads_with_the_same_outputs(tmp_path, config):
    theirs = hf_ijepa(tmp_path, **config)
    ours = load_encoder(tmp_path)
    assert detect_format(tmp_path) == "hf-ijepa" and isinstance(ours, VisionTransformer) and not ours.training
    size = config.get("image_size", [16, 16])
    x = torch.randn(3, 3, *size)
    with torch.no_grad():
        expected = theirs(pixel_values=x).last_hidden_state
        assert (ours(x) - expected).abs().max() < 1e-4
    # the position table is the checkpoint's (not re-derived) and travels with our state dict
    assert torch.equal(ours.state_dict()["pos_embed"], theirs.embeddings.position_embeddings.detach())
    assert ours.transformer.norm.eps == config.get("layer_norm_eps", 1e-12)


def test_hf_ijepa_in_memory_names_of_transformers_5_load_too(tmp_path):
    theirs = hf_ijepa(tmp_path)
    renamed = {k: v.contiguous() for k, v in theirs.state_dict().items()}  # layers.N.attention.q_proj ...
    assert any(k.startswith("layers.") for k in renamed)
    save_file(renamed, tmp_path / "model.safetensors")
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert (load_encoder(tmp_path)(x) - theirs(pixel_values=x).last_hidden_state).abs().max() < 1e-4


def edit_weights(folder, edit):
    state = load_file(folder / "model.safetensors")
    edit(state)
    save_file(state, folder / "model.safetensors")


def test_missing_unexpected_and_misshapen_keys_are_named(tmp_path):
    hf_ijepa(tmp_path)
    edit_weights(tmp_path, lambda s: s.pop("encoder.layer.1.output.dense.bias"))
    with pytest.raises(CheckpointError, match=r"missing transformer\.blocks\.1\.mlp\.fc2\.bias"):
        load_encoder(tmp_path)
    hf_ijepa(tmp_path)
    edit_weights(tmp_path, lambda s: s.update({"pooler.dense.weight": torch.zeros(32, 32)}))
    with pytest.raises(CheckpointError, match=r"unexpected pooler\.dense\.weight"):
        load_encoder(tmp_path)
    hf_ijepa(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps(config | {"intermediate_size": 96}))
    with pytest.raises(CheckpointError, match=r"mlp\.fc1\.weight has shape \[64, 32\] in the checkpoint, the model "
                                              r"built from its config expects \[96, 32\]"):
        load_encoder(tmp_path)


def test_unreadable_or_unsupported_sources_get_clear_errors(tmp_path, monkeypatch):
    hf_ijepa(tmp_path)
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="model.safetensors: unreadable safetensors file"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(CheckpointError, match="model_type 'bert' is not a supported"):
        load_encoder(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="config.json: unreadable JSON"):
        load_encoder(tmp_path)
    with pytest.raises(FileNotFoundError, match="no such file or folder"):
        load_encoder(tmp_path / "absent")
    import huggingface_hub

    def offline(*args, **kwargs):
        raise ConnectionError("no internet")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(OSError, match=r"could not download facebook/x .*pass DIR"):
        load_encoder("facebook/x")


def test_stored_position_table_is_in_the_state_dict_and_sincos_is_not():
    stored = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, pos_embed="stored")
    computed = VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2)
    assert "pos_embed" in stored.state_dict() and "pos_embed" not in computed.state_dict()
    assert torch.equal(stored.pos_embed, computed.pos_embed)  # the same table until a checkpoint replaces it
    with pytest.raises(ValueError, match="pos_embed must be 'sincos', 'stored' or 'rope'"):
        VisionTransformer(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, pos_embed="learned")


BLOCK = """
import sys
class Block:  # as if neither package were installed
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("transformers", "huggingface_hub"):
            raise ImportError(f"blocked: {name}")
sys.meta_path.insert(0, Block())
"""


def test_loading_a_local_folder_needs_neither_transformers_nor_the_hub(tmp_path):
    theirs = hf_ijepa(tmp_path)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        torch.save({"x": x, "y": theirs(pixel_values=x).last_hidden_state}, tmp_path / "io.pt")
    code = BLOCK + f"""
import torch
from jepa_lightning.pretrained import load_encoder
io = torch.load({str(tmp_path / 'io.pt')!r})
with torch.no_grad():
    print(float((load_encoder({str(tmp_path)!r})(io["x"]) - io["y"]).abs().max()))
print(sorted(m for m in sys.modules if m.split(".")[0] in ("transformers", "huggingface_hub")))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    diff, modules = out.stdout.strip().splitlines()[-2:]
    assert float(diff) < 1e-4 and modules == "[]"


# ------------------------------------------------------------------------------------------------ official files
@pytest.mark.parametrize("name, options", [
    ("ijepa_tiny", {"num_heads": 4}),                                  # images, 2-D sin-cos table
    ("vjepa_tiny", {"num_heads": 4, "img_size": 16, "num_frames": 4}),   # video, 3-D table (uniform power)
    ("vjepa2_tiny", {"num_heads": 2, "img_size": 16, "num_frames": 4}),  # video, rotary positions
])
def test_official_checkpoints_load_each_network_with_the_official_outputs(name, options):
    """The fixtures were written by each official repository's own model code (commit in the io file); widths
    below the official models' need num_heads, a video file the clip size."""
    path, io = OFFICIAL / f"{name}.pth.tar", torch.load(OFFICIAL / f"{name}_io.pt")
    assert detect_format(path) == ("ijepa" if name.startswith("ijepa") else "vjepa") and len(io["commit"]) == 40
    for which in ("target_encoder", "encoder"):
        ours = load_encoder(path, which=which, **options)
        with torch.no_grad():
            assert (ours(io["input"]) - io["outputs"][which]).abs().max() < 1e-4
        assert ours.transformer.norm.eps == 1e-6 and ours.rope == name.startswith("vjepa2")
    default = load_encoder(path, **options)  # the target encoder
    with torch.no_grad():
        assert (default(io["input"]) - io["outputs"]["target_encoder"]).abs().max() < 1e-4


@pytest.mark.parametrize("name, options, grid, mask_tokens, positions", [
    ("ijepa_tiny", {"num_heads": 4}, (4, 4), 1, "stored"),
    ("vjepa_tiny", {"num_heads": 4, "img_size": 16, "num_frames": 4}, (2, 4, 4), 2, "stored"),
    ("vjepa2_tiny", {"num_heads": 2, "img_size": 16, "num_frames": 4}, (2, 4, 4), 2, "rope"),  # sorts its tokens
])
def test_official_predictors_and_context_path_match_the_official_code(name, options, grid, mask_tokens, positions):
    """The context encoder on the context tokens alone, then the file's predictor built from a recipe-like config
    (`pretrained=`), give the official code's context tokens and predictions."""
    from jepa_lightning.nn.predictor import TransformerPredictor

    path, io = OFFICIAL / f"{name}.pth.tar", torch.load(OFFICIAL / f"{name}_io.pt")
    pio, config = io["predictor"], io["predictor"]["config"]
    encoder = load_encoder(path, which="encoder", **options)
    predictor = TransformerPredictor(grid_size=grid, embed_dim=config["embed_dim"],
                                     predictor_dim=config["predictor_embed_dim"], depth=config["depth"],
                                     num_heads=config["num_heads"], num_mask_tokens=mask_tokens, pos_embed=positions,
                                     pretrained=str(path)).eval()
    with torch.no_grad():
        assert (encoder(io["input"], keep=pio["context"]) - pio["context_tokens"]).abs().max() < 1e-4
        out = predictor(pio["context_tokens"], pio["context"], pio["target"], mask_token_id=config["mask_index"])
    assert (out - pio["output"]).abs().max() < 1e-4
    wrong = "sincos" if positions == "stored" else "stored"
    with pytest.raises(CheckpointError, match=f"build it with pos_embed: {positions}"):
        TransformerPredictor(grid_size=grid, embed_dim=config["embed_dim"], predictor_dim=config["predictor_embed_dim"],
                             depth=config["depth"], num_heads=config["num_heads"], num_mask_tokens=mask_tokens,
                             pos_embed=wrong, pretrained=str(path))


def test_official_ijepa_errors_name_what_is_wrong(tmp_path):
    path = OFFICIAL / "ijepa_tiny.pth.tar"
    with pytest.raises(CheckpointError, match=r"width 32 is none of the official models'.*give num_heads"):
        load_encoder(path)
    with pytest.raises(CheckpointError, match=r"no 'predictor' network in the file"):
        load_encoder(path, which="predictor", num_heads=4)
    checkpoint = torch.load(path)
    del checkpoint["target_encoder"]["module.blocks.1.attn.proj.weight"]
    torch.save(checkpoint, tmp_path / "cut.pth.tar")
    with pytest.raises(CheckpointError, match=r"cut\.pth\.tar \[target_encoder\].*missing "
                                              r"transformer\.blocks\.1\.attn\.proj\.weight"):
        load_encoder(tmp_path / "cut.pth.tar", num_heads=4)
    with pytest.raises(CheckpointError, match=r"give img_size and num_frames"):
        load_encoder(OFFICIAL / "vjepa2_tiny.pth.tar", num_heads=2)
    with pytest.raises(CheckpointError, match=r"pos_embed holds 32 positions, a model of 16 px x 8 frames has 64"):
        load_encoder(OFFICIAL / "vjepa_tiny.pth.tar", num_heads=4, img_size=16, num_frames=8)
    (tmp_path / "half.pth.tar").write_bytes(path.read_bytes()[:5000])
    with pytest.raises(CheckpointError, match="half.pth.tar: unreadable PyTorch checkpoint"):
        load_encoder(tmp_path / "half.pth.tar")
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: not a supported checkpoint file"):
        load_encoder(tmp_path / "other.pth")


def test_mlp_width_is_built_exactly_for_the_official_giant_ratio():
    assert int(1408 * mlp_ratio(6144, 1408)) == 6144  # ViT-g: 48/11; the plain float quotient can fall short
    assert all(int(w * mlp_ratio(h, w)) == h for w in range(4, 300, 4) for h in range(w, 6 * w, 7))
    vit = VisionTransformer(img_size=8, patch_size=4, embed_dim=44, depth=1, num_heads=2, mlp_ratio=mlp_ratio(97, 44))
    assert vit.transformer.blocks[0].mlp.fc1.out_features == 97


# ------------------------------------------------------------------------------------------------ in recipes
def test_a_recipe_encoder_starts_from_a_published_one(tmp_path):
    """`--model.init_args.encoder.init_args.pretrained=<folder>` on the digits recipe: the student (and the EMA
    teacher copied from it) hold the published weights and give the published outputs."""
    from jepa_lightning.cli import JEPACLI

    theirs = hf_ijepa(tmp_path / "hf", hidden_size=96, num_hidden_layers=4, num_attention_heads=4,
                      intermediate_size=384, image_size=32, patch_size=4, layer_norm_eps=1e-6)
    enc = "--model.init_args.encoder.init_args"
    cli = JEPACLI(run=False, args=["--config", str(Path(__file__).resolve().parents[1] / "recipes/ijepa/tiny.yaml"),
                                   f"--run_dir={tmp_path / 'runs'}", "--data.init_args.num_workers=0",
                                   f"{enc}.pretrained={tmp_path / 'hf'}", f"{enc}.pos_embed=stored"])
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = theirs(pixel_values=x).last_hidden_state
        for net in (cli.model.encoder, cli.model.network("teacher")):
            assert (net.eval()(x) - expected).abs().max() < 1e-4


def test_published_weights_into_a_built_encoder_check_the_architecture(tmp_path):
    hf_ijepa(tmp_path)
    build = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, mlp_ratio=2.0)
    with pytest.raises(CheckpointError, match="eps 1e-12, the model built here 1e-06; set norm_eps: 1e-12"):
        VisionTransformer(**build, pos_embed="stored", pretrained=str(tmp_path))
    with pytest.raises(CheckpointError, match="own position table; build the encoder with pos_embed: stored"):
        VisionTransformer(**build, norm_eps=1e-12, pretrained=str(tmp_path))
    with pytest.raises(CheckpointError, match=r"unexpected transformer\.blocks\.1\."):
        VisionTransformer(**build | {"depth": 1}, norm_eps=1e-12, pos_embed="stored", pretrained=str(tmp_path))
    VisionTransformer(**build, norm_eps=1e-12, pos_embed="stored", pretrained=str(tmp_path))  # matches: loads


def test_checkpoint_options_accept_official_files_with_the_method_key():
    """`load_encoder_weights` (SALT's teacher, the attentive probe, UI-JEPA's init, ...) reads an official I-JEPA
    file: key "teacher" -> its target encoder, "encoder" -> its context encoder."""
    path, io = OFFICIAL / "ijepa_tiny.pth.tar", torch.load(OFFICIAL / "ijepa_tiny_io.pt")
    build = dict(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4, pos_embed="stored")
    for key, which in (("teacher", "target_encoder"), ("encoder", "encoder")):
        net = load_encoder_weights(VisionTransformer(**build), path, key).eval()
        with torch.no_grad():
            assert (net(io["input"]) - io["outputs"][which]).abs().max() < 1e-4
    with pytest.raises(CheckpointError, match="key 'predictor' names no network"):
        load_encoder_weights(VisionTransformer(**build), path, "predictor")
    # a V-JEPA 2 file into a recipe's RoPE video encoder: heads and clip size are the module's
    io = torch.load(OFFICIAL / "vjepa2_tiny_io.pt")
    video = VisionTransformer(img_size=16, patch_size=4, num_frames=4, tubelet_size=2, embed_dim=32, depth=2,
                              num_heads=2, mlp_ratio=2.0, pos_embed="rope")
    net = load_encoder_weights(video, OFFICIAL / "vjepa2_tiny.pth.tar", "teacher").eval()
    with torch.no_grad():
        assert (net(io["input"]) - io["outputs"]["target_encoder"]).abs().max() < 1e-4
    with pytest.raises(FileNotFoundError):  # a mistyped local checkpoint is missing, not a hub id
        load_encoder_weights(VisionTransformer(**build), "runs/last.ckpt")


# ------------------------------------------------------------------------------------------------ ours out
@pytest.mark.parametrize("build", [{}, {"qkv_bias": False, "img_size": (16, 24), "norm_eps": 1e-5}])
def test_our_encoder_exports_to_a_folder_transformers_loads_with_the_same_outputs(tmp_path, build):
    from jepa_lightning.pretrained import save_hf

    torch.manual_seed(0)
    ours = VisionTransformer(**({"img_size": 16, "patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 4}
                                | build)).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.3)
    save_hf(ours, tmp_path)
    theirs = transformers.IJepaModel.from_pretrained(tmp_path).eval()
    x = torch.randn(2, 3, *((16, 16) if "img_size" not in build else build["img_size"]))
    with torch.no_grad():
        assert (theirs(pixel_values=x).last_hidden_state - ours(x)).abs().max() < 1e-4
        assert (load_encoder(tmp_path)(x) - ours(x)).abs().max() < 1e-4  # and back
    table_video = VisionTransformer(img_size=16, patch_size=4, num_frames=4, embed_dim=32, depth=1, num_heads=4)
    with pytest.raises(ValueError, match="got a video ViT with a position table"):
        save_hf(table_video, tmp_path / "video")


def test_our_rope_video_encoder_exports_as_vjepa2(tmp_path):
    from jepa_lightning.pretrained import save_hf

    torch.manual_seed(0)
    ours = VisionTransformer(img_size=16, patch_size=4, num_frames=4, tubelet_size=2, embed_dim=48, depth=2,
                             num_heads=4, mlp_ratio=2.0, pos_embed="rope").eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.normal_(0, 0.3)
    save_hf(ours, tmp_path)
    theirs = transformers.VJEPA2Model.from_pretrained(tmp_path).eval()
    clips = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        expected = ours(clips.permute(0, 2, 1, 3, 4))
        assert (theirs(pixel_values_videos=clips, skip_predictor=True).last_hidden_state - expected).abs().max() < 1e-4
        assert (load_encoder(tmp_path)(clips.permute(0, 2, 1, 3, 4)) - expected).abs().max() < 1e-4


def test_a_video_checkpoint_into_an_image_encoder_names_the_shapes(tmp_path):
    hf_vjepa2(tmp_path)
    image = VisionTransformer(img_size=16, patch_size=4, embed_dim=48, depth=2, num_heads=4, mlp_ratio=2.0,
                              pos_embed="rope")
    with pytest.raises(CheckpointError, match=r"patch_embed\.proj\.weight has shape \[48, 3, 2, 4, 4\] in the "
                                              r"checkpoint, the model built from its config expects \[48, 3, 4, 4\]"):
        load_encoder_weights(image, tmp_path)


def test_a_training_checkpoint_exports_to_hugging_face(tmp_path):
    """export_encoder(format="hf") from a Lightning checkpoint of the digits recipe: the folder transformers
    loads gives the checkpoint teacher's outputs."""
    from jepa_lightning.cli import JEPACLI
    from jepa_lightning.eval.checkpoint import export_encoder

    args = ["--config", str(Path(__file__).resolve().parents[1] / "recipes/ijepa/tiny.yaml"),
            f"--run_dir={tmp_path / 'runs'}", "--data.init_args.num_workers=0"]
    cli = JEPACLI(run=False, args=args)
    teacher = cli.model.network("teacher")
    with torch.no_grad():
        for p in teacher.parameters():
            p.normal_(0, 0.1)
    torch.save({"state_dict": cli.model.state_dict()}, tmp_path / "run.ckpt")
    fresh = JEPACLI(run=False, args=args).model.encoder
    folder = export_encoder(tmp_path / "run.ckpt", tmp_path / "hf", key="teacher", format="hf", encoder=fresh)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = teacher.eval()(x)
        got = transformers.IJepaModel.from_pretrained(folder).eval()(pixel_values=x).last_hidden_state
    assert (got - expected).abs().max() < 1e-4
    with pytest.raises(ValueError, match="needs `encoder`"):
        export_encoder(tmp_path / "run.ckpt", tmp_path / "hf2", format="hf")


# ------------------------------------------------------------------------------------------------ V-JEPA 2, RoPE
def hf_vjepa2(folder, width=48):
    """A random-init VJEPA2Model (every tensor redrawn) saved by `save_pretrained` into `folder`."""
    torch.manual_seed(0)
    config = transformers.VJEPA2Config(patch_size=4, crop_size=16, frames_per_clip=4, tubelet_size=2,
                                       hidden_size=width, num_attention_heads=4, num_hidden_layers=2, mlp_ratio=2.0,
                                       pred_hidden_size=24, pred_num_attention_heads=4, pred_num_hidden_layers=1)
    model = transformers.VJEPA2Model(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
    model.save_pretrained(folder)
    return model


def test_attentive_probe_reads_a_published_vjepa2_folder(tmp_path):
    """recipes/eval/attentive_probe_vjepa2_vitl.yaml's path at a tiny size: the probe's frozen encoder is the
    folder's."""
    from jepa_lightning.eval.attentive_probe import AttentiveProbe

    theirs = hf_vjepa2(tmp_path)
    encoder = VisionTransformer(img_size=16, patch_size=4, num_frames=4, tubelet_size=2, embed_dim=48, depth=2,
                                num_heads=4, mlp_ratio=2.0, pos_embed="rope")
    probe = AttentiveProbe(encoder, checkpoint=str(tmp_path), input_key="video", num_classes=3, num_heads=4, depth=2)
    clips = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        expected = theirs(pixel_values_videos=clips, skip_predictor=True).last_hidden_state
        assert (probe.encoder(clips.permute(0, 2, 1, 3, 4)) - expected).abs().max() < 1e-4


def test_hf_vjepa2_predictor_loads_with_the_same_predictions(tmp_path):
    """transformers' VJEPA2Model predicts targets from the full clip's encoder tokens at the context positions
    (mask token 1); our predictor, filled from the folder, predicts the same."""
    from jepa_lightning.nn.predictor import TransformerPredictor

    theirs = hf_vjepa2(tmp_path)
    context, target = torch.tensor([[0, 2, 5, 9, 17, 30], [1, 3, 4, 8, 20, 31]]), torch.tensor([[7, 12, 25],
                                                                                                  [6, 13, 29]])
    ours = TransformerPredictor(grid_size=(2, 4, 4), embed_dim=48, predictor_dim=24, depth=1, num_heads=4,
                                num_mask_tokens=10, pos_embed="rope", pretrained=str(tmp_path)).eval()
    clips = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        out = theirs(pixel_values_videos=clips, context_mask=[context], target_mask=[target])
        tokens = out.last_hidden_state.gather(1, context[..., None].expand(-1, -1, 48))
        assert (ours(tokens, context, target, mask_token_id=1) - out.predictor_output.last_hidden_state).abs().max() < 1e-4


@pytest.mark.parametrize("width", [48, 64])  # head dims 12 (all features rotated) and 16 (4 left as they are)
def test_hf_vjepa2_encoder_loads_with_rope_and_the_same_outputs(tmp_path, width):
    theirs = hf_vjepa2(tmp_path, width)
    ours = load_encoder(tmp_path)
    assert detect_format(tmp_path) == "hf-vjepa2" and ours.rope and ours.grid_size == (2, 4, 4)
    clips = torch.randn(2, 4, 3, 16, 16)  # transformers: [B, T, C, H, W]; ours: [B, C, T, H, W]
    with torch.no_grad():
        expected = theirs(pixel_values_videos=clips, skip_predictor=True).last_hidden_state
        assert (ours(clips.permute(0, 2, 1, 3, 4)) - expected).abs().max() < 1e-4


# ------------------------------------------------------------------------------------------------ our own runs
def test_our_checkpoint_and_export_load_from_the_recorded_architecture(tmp_path):
    """A real run of the digits recipe (its run folder's config.yaml records the encoder); load_encoder builds
    the encoder from it and fills the checkpoint's teacher or student; an export carries the architecture too."""
    from jepa_lightning.cli import main
    from jepa_lightning.eval.checkpoint import export_encoder, read_encoder_state

    main(["fit", "--config", str(Path(__file__).resolve().parents[1] / "recipes/ijepa/tiny.yaml"),
          f"--run_dir={tmp_path / 'run'}", "--trainer.max_steps=2", "--trainer.callbacks=[]",
          "--trainer.limit_val_batches=0", "--data.init_args.num_workers=0", "--trainer.enable_progress_bar=false"])
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    assert detect_format(ckpt) == "ours"
    for which in ("teacher", "encoder"):
        ours = load_encoder(ckpt, which=which)
        assert isinstance(ours, VisionTransformer) and ours.patch_embed.img_size == (32, 32)
        expected = read_encoder_state(ckpt, which)
        assert all(torch.equal(ours.state_dict()[k], v) for k, v in expected.items())
    export = export_encoder(ckpt, tmp_path / "teacher.safetensors")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(load_encoder(export)(x), load_encoder(ckpt)(x))
    save_file(load_file(export), tmp_path / "bare.safetensors")  # an export without the recorded architecture
    with pytest.raises(CheckpointError, match="records no architecture.*load_encoder_weights"):
        load_encoder(tmp_path / "bare.safetensors")
    (tmp_path / "run" / "config.yaml").unlink()
    with pytest.raises(CheckpointError, match="no config.yaml in its run folder"):
        load_encoder(ckpt)
