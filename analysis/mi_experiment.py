"""`powerbert analyze mi`: the mutual-information validation of the significance score
(supplementary section 1.1, Figure 1) on a run's fine-tuned model and training inputs.

Writes `<out>/mi.json` (per block: MI(X; Y_k) for k = 1..N-1, H(X), the settings) and
`<out>/mi.png` (MI against k, one curve per block, the line H(X)). See
`analysis.significance_mi` for what eliminating the k-th word means.
"""

import json
import os
import time

import numpy as np

from analysis.mutual_information import entropy, mutual_information

BATCH_SIZE = 32


def portable_path(path):
    """`path` relative to the working directory: the report names no directory of the machine."""
    return os.path.relpath(path)


def training_inputs(run, examples, seed, data_dir):
    """A seeded random subset of the run task's training split, tokenized at the run's N.

    Returns:
        `(features, labels, note)`: dict of int32 NumPy (n, N) inputs, int (n,) gold labels and
        a description of the subset.
    """
    from powerbert_tf import load_tokenizer
    from training.data import read_split
    from training.input_pipeline import subset_indices

    config, task = run.read_config(), run.read_task()
    train = read_split(task, "train", data_dir)
    train = train.take(subset_indices(len(train), examples, seed))
    features = load_tokenizer(config.init)(train.text, train.text_b, max_length=config.max_length)
    note = f"seeded random subset (seed {seed}) of {len(train)} inputs of the {task.name} training split"
    return {name: value.numpy() for name, value in features.items()}, train.labels, note


def length_sorted_batches(features, batch_size=BATCH_SIZE):
    """Batches of inputs of similar length, each trimmed to its longest input.

    Args:
        features: dict of int (n, N) arrays.

    Returns:
        list of `(indices, batch)`: int (b,) positions in `features` and dict of (b, T_batch).
    """
    lengths = features["attention_mask"].sum(axis=1)
    order = np.argsort(lengths, kind="stable")
    batches = []
    for start in range(0, len(order), batch_size):
        indices = order[start:start + batch_size]
        longest = int(lengths[indices].max())
        batches.append((indices, {name: value[indices, :longest] for name, value in features.items()}))
    return batches


def block_predictions(model, batches, block, max_rank, advance):
    """`X` (n,) and `Y_k` (max_rank, n) over all batches, in input order; `advance()` per batch."""
    from analysis.significance_mi import predictions_without_ranked_words

    n = sum(len(indices) for indices, _ in batches)
    x, y = np.zeros(n, np.int64), np.zeros((max_rank, n), np.int64)
    for indices, batch in batches:
        x[indices], y[:, indices] = predictions_without_ranked_words(model, batch, block, max_rank)
        advance()
    return x, y


def block_result(block, x, y, words):
    """The JSON record of one block: H(X) and, per k, MI(X; Y_k) and how many inputs changed."""
    ks = np.arange(1, y.shape[0] + 1)
    return {"block": block, "h_x": entropy(x), "k": ks.tolist(),
            "mi": [mutual_information(x, y_k) for y_k in y],
            "changed": [int(np.sum(y_k != x)) for y_k in y],
            "inputs_with_word": [int(np.sum(words >= k)) for k in ks]}


def analyze_mi(run_path, blocks, examples=2000, seed=0, data_dir=None, verbose=1):
    """The MI(X; Y_k) curves of `blocks` (1-based) on the run's fine-tuned model.

    Returns:
        the report dict written to `mi.json`.
    """
    import keras

    from analysis.significance_mi import check_block, check_classifier
    from training.run_dir import RunDir

    started = time.perf_counter()
    run = RunDir(run_path)
    config, _ = run.check(need=("finetune",))
    model = run.load_model("finetune", compile=False)
    check_classifier(model)
    for block in blocks:
        check_block(model, block)
    features, gold, note = training_inputs(run, examples, seed, data_dir)
    batches = length_sorted_batches(features)
    words = features["attention_mask"].sum(axis=1) - 1
    bar = keras.utils.Progbar(len(blocks) * len(batches), unit_name="batch", verbose=verbose)
    results, x = [], None
    for block in blocks:
        x, y = block_predictions(model, batches, block, config.max_length - 1, lambda: bar.add(1))
        results.append(block_result(block, x, y, words))
    return {
        "run": portable_path(run_path), "model": "finetune/model.keras (no elimination)",
        "task": config.task, "sequence_length": config.max_length, "inputs": note,
        "examples": int(len(words)), "seed": seed, "blocks": list(blocks),
        "h_x": entropy(x), "x_accuracy": float(np.mean(x == gold)) if gold is not None else None,
        "mean_words_besides_cls": float(words.mean()),
        "rank_definition": "k-th most significant real word besides [CLS] at block j (encoder's "
                           "significance and tie rule); inputs without a k-th word count as unchanged",
        "per_block": results, "wall_seconds": time.perf_counter() - started}


def plot_mi(report, path):
    """MI(X; Y_k) against k, one curve per block, and the line H(X)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.8), dpi=120)
    for result in report["per_block"]:
        ax.plot(result["k"], result["mi"], lw=1.2, label=f"block {result['block']}")
    ax.axhline(report["h_x"], color="grey", ls="--", lw=0.9, label=f"H(X) = {report['h_x']:.3f}")
    ax.set_xlabel("k (rank of the eliminated word by significance)")
    ax.set_ylabel("MI(X; Y_k) (nats)")
    ax.set_title(f"{report['task']}: {report['examples']} training inputs, N = {report['sequence_length']}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_report(report, out):
    """`<out>/mi.json` and `<out>/mi.png`; returns their paths."""
    os.makedirs(out, exist_ok=True)
    paths = os.path.join(out, "mi.json"), os.path.join(out, "mi.png")
    with open(paths[0], "w") as f:
        json.dump(report, f, indent=1)
    plot_mi(report, paths[1])
    return paths
