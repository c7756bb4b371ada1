"""Head-Prune (Michel, Levy and Neubig 2019, "Are Sixteen Heads Really Better than One?").

A head's importance is the expected absolute gradient of the loss with respect to a mask
variable multiplied into its output, `I_h = E |dL/d xi_h|` at xi = 1, normalised per layer by
the L2 norm. Pruning is progressive: remove the least important heads, recompute the importance
on the smaller model, repeat. Heads are removed physically (`powerbert_tf.compression.prune_heads`),
so the time a pruned model saves is real. Every layer keeps at least one head.
"""

import numpy as np
import tensorflow as tf

from powerbert_tf.compression import prune_heads


def head_mask_gradients(model, features, labels, loss_fn, head_mask=None):
    """Gradient of the batch's mean loss with respect to each head's mask.

    Args:
        model: a `PowerBertClassifier` (inference mode: no dropout).
        features: dict of int (B, T); labels: what `loss_fn(labels, logits)` expects.
        head_mask: list of L float (H_j,) (default all ones).
    Returns:
        list of L float64 arrays (H_j,).
    """
    masks = [tf.Variable(np.ones(h, np.float32) if head_mask is None else np.asarray(head_mask[j], np.float32))
             for j, h in enumerate(model.encoder.attention_heads)]
    with tf.GradientTape() as tape:
        loss = loss_fn(labels, model.forward(features, training=False, head_mask=masks)[0])
    return [g.numpy().astype(np.float64) for g in tape.gradient(loss, masks)]


def head_importance(model, dataset, loss_fn, normalize=True):
    """Michel et al.'s importance: mean over batches of |dL/d xi_h|, per layer divided by its L2
    norm when `normalize`.

    Args:
        dataset: iterable of (features, labels) batches.
    Returns:
        list of L float64 arrays (H_j,).
    """
    total, batches = None, 0
    for features, labels in dataset:
        grads = [np.abs(g) for g in head_mask_gradients(model, features, labels, loss_fn)]
        total = grads if total is None else [a + g for a, g in zip(total, grads)]
        batches += 1
    if not batches:
        raise ValueError("head importance needs at least one batch")
    scores = [a / batches for a in total]
    if normalize:
        scores = [s / max(np.linalg.norm(s), 1e-20) for s in scores]
    return scores


def heads_to_keep(importance, remove):
    """Indices of the heads each layer keeps after removing the `remove` least important heads of
    the whole model, never a layer's last head (ties: lower layer, then lower index, go first).

    Args:
        importance: list of L arrays (H_j,).
    Returns:
        list of L sorted lists of kept head indices.
    """
    order = sorted((float(score), j, h) for j, layer in enumerate(importance) for h, score in enumerate(layer))
    kept = [set(range(len(layer))) for layer in importance]
    removed = 0
    for _, j, h in order:
        if removed == remove:
            break
        if len(kept[j]) > 1:
            kept[j].discard(h)
            removed += 1
    if removed < remove:
        raise ValueError(f"cannot remove {remove} heads: only {removed} can go while every layer keeps one")
    return [sorted(k) for k in kept]


def progressive_pruning(model, dataset, loss_fn, step_heads, levels):
    """Prune `step_heads` heads at a time, `levels` times, recomputing importance after each step.

    Args:
        dataset: a re-iterable of (features, labels) batches (the importance data).
    Yields:
        (heads removed so far, pruned `PowerBertClassifier`, the heads each layer kept of the
        original model's), starting with the unpruned model (0 removed).
    """
    original = [list(range(h)) for h in model.encoder.attention_heads]
    yield 0, model, original
    current, removed = model, 0
    for _ in range(levels):
        keep = heads_to_keep(head_importance(current, dataset, loss_fn), step_heads)
        original = [[layer[h] for h in kept] for layer, kept in zip(original, keep)]
        current = prune_heads(current, keep)
        removed += step_heads
        yield removed, current, original
