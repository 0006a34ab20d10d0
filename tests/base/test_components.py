"""Base-model anatomy, tokenizer and save/load: OMP_NUM_THREADS=1 python -m pytest tests/base -q"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from fypbench.base.components import (
    CLIP_VOCAB_SIZE,
    MANIFEST_NAME,
    build_components,
    build_tokenizer,
    check_tokenizer,
    count_parameters,
    count_transformer_blocks,
    load_base,
    preset_config,
    save_pipeline,
)
from fypbench.base.sample import sample_images
from fypbench.errors import UserError

# Stable Diffusion 1.5's unet/config.json (runwayml/stable-diffusion-v1-5), the fields that shape the network.
SD15_UNET = {
    "act_fn": "silu", "attention_head_dim": 8, "block_out_channels": [320, 640, 1280, 1280],
    "center_input_sample": False, "cross_attention_dim": 768,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "downsample_padding": 1, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 4, "layers_per_block": 2,
    "mid_block_scale_factor": 1, "norm_eps": 1e-05, "norm_num_groups": 32, "out_channels": 4, "sample_size": 64,
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
}
PROMPTS = ["A girl, wearing orange clothes, is squatting on the beach, pixel art", "The hulk, on the moon",
           "An astronaut in the snow!! 3 café"]


@pytest.fixture(scope="module")
def debug_components():
    return build_components("debug", seed=0).eval()


def test_tokenizer_offline_matches_open_clip(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = build_tokenizer()
    assert len(tokenizer) == CLIP_VOCAB_SIZE == 49408
    reference = SimpleTokenizer()
    for prompt in PROMPTS:
        ids = tokenizer(prompt).input_ids
        assert ids[0] == 49406 and ids[-1] == 49407
        assert ids[1:-1] == reference.encode(prompt)
    padded = tokenizer(["a man"], padding="max_length", max_length=77).input_ids[0]
    assert len(padded) == 77 and padded[:3] == [49406, 320, 786] and set(padded[3:]) == {49407}


def test_tokenizer_trap_is_caught():
    from transformers import CLIPTokenizer

    with pytest.raises(UserError, match="2 tokens"):
        check_tokenizer(CLIPTokenizer(), "hub-id-resolved-offline")


@pytest.mark.parametrize("preset", ["debug", "mini"])
def test_sd_block_layout(preset, debug_components):
    components = debug_components if preset == "debug" else build_components(preset)
    unet = components.unet
    assert [type(b).__name__ for b in unet.down_blocks] == SD15_UNET["down_block_types"]
    assert [type(b).__name__ for b in unet.up_blocks] == SD15_UNET["up_block_types"]
    per_block = [sum(1 for m in b.modules() if type(m).__name__ == "BasicTransformerBlock")
                 for b in (*unet.down_blocks, unet.mid_block, *unet.up_blocks)]
    assert per_block == [2, 2, 2, 0, 1, 0, 3, 3, 3] and count_transformer_blocks(unet) == 16
    assert unet.config.cross_attention_dim == components.text_encoder.config.hidden_size


def test_mini_sizes():
    components = build_components("mini")
    assert components.resolution == 64 and components.latent_shape == (4, 16, 16)
    assert count_parameters(components.vae) == 954_567
    assert count_parameters(components.unet) == 4_236_612
    stored_bytes = 2 * sum(count_parameters(m) for m in components.modules().values())
    assert stored_bytes < 14e6  # float16 weights; the tokenizer's vocab.json + merges.txt add ~1.5 MB


def test_sd_preset_on_meta_device():
    components = build_components("sd", device="meta")
    assert count_parameters(components.unet) == 859_520_964
    assert count_parameters(components.text_encoder) == 123_060_480
    assert count_parameters(components.vae) == 83_653_863
    assert next(components.unet.parameters()).device.type == "meta"
    config = dict(components.unet.config)
    for key, value in SD15_UNET.items():
        assert (list(config[key]) if isinstance(value, list) else config[key]) == value, key
    assert components.resolution == 512


def test_preset_errors():
    with pytest.raises(UserError, match="did you mean 'mini'"):
        preset_config("minii")
    with pytest.raises(UserError, match="unknown section"):
        preset_config({"text_encoder": {}, "vae": {}, "unet": {}, "extra": {}})


def test_init_is_seeded_and_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    a, b, c = (build_components("debug", seed=s) for s in (0, 0, 1))
    assert torch.equal(torch.random.get_rng_state(), state)
    first = next(a.unet.parameters())
    assert torch.equal(first, next(b.unet.parameters())) and not torch.equal(first, next(c.unet.parameters()))


def test_save_load_round_trip_identical(tmp_path, debug_components):
    folder = save_pipeline(debug_components, tmp_path / "pipe", manifest={"note": "test"})
    assert (folder / "tokenizer" / "vocab.json").exists() and not (folder / "tokenizer" / "tokenizer.json").exists()
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["note"] == "test" and "unet/diffusion_pytorch_model.safetensors" in manifest["files"]
    loaded = load_base(folder)
    assert len(loaded.tokenizer) == CLIP_VOCAB_SIZE
    for name, module in debug_components.modules().items():
        reference = module.state_dict()
        assert all(torch.equal(reference[k], v) for k, v in loaded.modules()[name].state_dict().items()), name
    seeds = [3, 4]
    before = sample_images(debug_components, PROMPTS[:2], seeds, steps=3, guidance=4.0)
    after = sample_images(loaded, PROMPTS[:2], seeds, steps=3, guidance=4.0)
    assert before.dtype == np.uint8 and before.shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(before, after)


def test_float16_storage_loads_as_float32(tmp_path, debug_components):
    folder = save_pipeline(debug_components, tmp_path / "pipe16", half=("text_encoder", "unet", "vae"))
    assert json.loads((folder / MANIFEST_NAME).read_text())["float16"] == ["text_encoder", "unet", "vae"]
    loaded = load_base(folder)
    weight = next(loaded.unet.parameters())
    assert weight.dtype == torch.float32
    reference = next(debug_components.unet.parameters())
    torch.testing.assert_close(weight, reference.half().float())
    # a save over an existing folder replaces it whole
    save_pipeline(debug_components, folder)
    assert json.loads((folder / MANIFEST_NAME).read_text())["float16"] == []


def test_missing_and_corrupt_folders_name_the_path(tmp_path, debug_components):
    missing = tmp_path / "nowhere"
    with pytest.raises(UserError, match=str(missing)):
        load_base(missing)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match=f"{empty}.*model_index.json"):
        load_base(empty)
    folder = save_pipeline(debug_components, tmp_path / "pipe")
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(UserError, match=f"{weights}.*sha256"):
        load_base(folder)
    with pytest.raises(UserError, match=f"{folder / 'unet'}: cannot load"):
        load_base(folder, verify=False)
    folder = save_pipeline(debug_components, tmp_path / "pipe2")
    shutil.rmtree(folder / "vae")
    with pytest.raises(UserError, match=str(folder / "vae")):
        load_base(folder)
    with pytest.raises(UserError, match=f"{folder / 'vae'}: missing"):
        load_base(folder, verify=False)


def test_hub_id_not_cached_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(UserError, match="runwayml/stable-diffusion-v1-5.*local Hugging Face cache"):
        load_base("runwayml/stable-diffusion-v1-5")


def test_an_export_removes_the_staging_folders_a_killed_export_left(tmp_path):
    from fypbench.base.components import save_folder_atomic

    stale = [tmp_path / ".export.k1lled_1", tmp_path / ".export.old.x2y3z4w5"]
    kept = [tmp_path / ".export.notmine", tmp_path / ".exported.abcdefgh", tmp_path / "other"]
    for folder in stale + kept:
        folder.mkdir()
        (folder / "weights.bin").write_bytes(b"partial")
    (tmp_path / ".export.abcdefgh").write_text("a file, not a staging folder")
    folder = save_folder_atomic(lambda staging: (staging / "x.txt").write_text("x"), tmp_path / "export")
    assert (folder / "x.txt").read_text() == "x"
    assert not any(path.exists() for path in stale) and all(path.is_dir() for path in kept)
    assert (tmp_path / ".export.abcdefgh").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [".export.abcdefgh", ".export.notmine", ".exported.abcdefgh", "export", "other"])
