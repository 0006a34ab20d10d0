"""The mini world's base text-to-image model ("mini-SD") and the shared loading code for SD 1.x folders.

    python -c "from fypbench.base import build_components, describe; print(describe(build_components('mini')))"
"""

from fypbench.base.components import (
    CLIP_VOCAB_SIZE,
    Components,
    build_components,
    build_tokenizer,
    describe,
    load_base,
    mini_weights_dir,
    preset_config,
    save_pipeline,
)

__all__ = [
    "CLIP_VOCAB_SIZE", "Components", "build_components", "build_tokenizer", "describe", "load_base",
    "mini_weights_dir", "preset_config", "save_pipeline",
]
