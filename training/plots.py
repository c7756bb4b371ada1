"""Retention profile plot: word vectors kept per layer."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_retention(retention, path, title=None, masses=None):
    """Bar chart of `l_j` per layer (and the soft-extract masses it came from, if given)."""
    layers = list(range(1, retention.num_layers + 1))
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=120)
    ax.bar(layers, retention.lengths, color="#4C72B0", label="kept word vectors $l_j$")
    if masses is not None:
        ax.plot(layers, masses, "o--", color="#DD8452", label="mass($r_j$) after search")
    ax.axhline(retention.sequence_length, color="grey", lw=0.8, ls=":", label=f"N = {retention.sequence_length}")
    for x, y in zip(layers, retention.lengths):
        ax.text(x, y, str(y), ha="center", va="bottom", fontsize=8)
    ax.set_xlabel("encoder layer j")
    ax.set_ylabel("word vectors")
    ax.set_xticks(layers)
    ax.set_title(title or f"Retention profile (FLOP ratio {retention.flop_ratio:.2f}x)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
