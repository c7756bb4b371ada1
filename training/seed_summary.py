"""Mean +- std over runs that differ only in their seed: the form every headline accuracy takes.

One run is not a result (dev accuracy moves by about a point between seeds), so results tables
report `mean +- std` over at least three seeds, with `std` the sample standard deviation (n - 1).
"""

import math

from training.config import TrainConfig

# Settings that may differ between the runs of one row: the seed, what only saves, and the
# machines (the same global batches on any number of replicas).
_MAY_DIFFER = ("seed", "checkpoint_every", "strategy")


class SeedSummaryError(ValueError):
    """The runs cannot be summarised together (unfinished, or other settings than the seed)."""


def mean_std(values):
    """(mean, sample standard deviation) of two or more numbers."""
    values = [float(v) for v in values]
    if len(values) < 2:
        raise SeedSummaryError(f"mean +- std needs at least two runs, got {len(values)}")
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def differing_settings(summaries):
    """The settings (besides seed, saving and machines) in which the runs' `summary.json` differ;
    a run recorded before a setting existed used its default."""
    settings = [{k: v for k, v in {**TrainConfig.defaults(), **s.get("settings", {})}.items() if k not in _MAY_DIFFER}
                for s in summaries]
    return sorted({k for other in settings[1:] for k in set(other) | set(settings[0])
                   if other.get(k) != settings[0].get(k)})


def checkpoint_choices(summaries):
    """Where the runs chose their checkpoints, one entry per distinct set (each seed holds out its own
    share of the training data), sorted; a run recorded before summaries said so chose on dev."""
    return sorted({s.get("checkpoints_chosen_on", "dev") for s in summaries})


def summarize_seeds(summaries):
    """Aggregate `summary.json` dicts of finished runs that differ only in their seed.

    Returns:
        {"runs", "seeds", "metric", "baseline", "power_bert", "delta_points", "flop_ratio":
        (mean, std), "retentions": [...], "checkpoints_chosen_on", "differs_from_paper"}; the
        metric values are fractions, `delta_points` is PoWER-BERT minus baseline in points.

    Raises:
        SeedSummaryError: a run has no PoWER-BERT result, or the runs' settings differ in more
            than the seed.
    """
    if not summaries:
        raise SeedSummaryError("no runs given")
    for s in summaries:
        if not s.get("baseline") or not s.get("power_bert"):
            raise SeedSummaryError(f"the run of `{s.get('command')}` has not finished all three steps")
    differing = differing_settings(summaries)
    if differing:
        raise SeedSummaryError(f"the runs differ in more than the seed: {', '.join(differing)}")
    base = [s["baseline"]["primary"] for s in summaries]
    power = [s["power_bert"]["primary"] for s in summaries]
    return {
        "runs": len(summaries), "seeds": [s.get("settings", {}).get("seed") for s in summaries],
        "metric": summaries[0]["metric"], "task": summaries[0]["task"],
        "baseline": mean_std(base), "power_bert": mean_std(power),
        "delta_points": mean_std([100 * (p - b) for p, b in zip(power, base)]),
        "flop_ratio": mean_std([s["flop_ratio"] for s in summaries]),
        "retentions": [s["retention"] for s in summaries],
        "checkpoints_chosen_on": checkpoint_choices(summaries),
        "differs_from_paper": summaries[0].get("differs_from_paper"),
    }


def format_seed_summary(result):
    """A Markdown table row set for the README: metric as mean +- std in percent."""
    m = result["metric"]
    pct = lambda pair: f"{100 * pair[0]:.2f} +- {100 * pair[1]:.2f}"
    lines = [f"| task | runs (seeds) | baseline dev {m} | PoWER-BERT dev {m} | difference (points) | FLOP ratio |",
             "|---|---|---|---|---|---|",
             f"| {result['task']} | {result['runs']} ({', '.join(map(str, result['seeds']))}) | "
             f"{pct(result['baseline'])} | {pct(result['power_bert'])} | "
             f"{result['delta_points'][0]:+.2f} +- {result['delta_points'][1]:.2f} | "
             f"{result['flop_ratio'][0]:.2f}x +- {result['flop_ratio'][1]:.2f} |",
             "", "Retention per seed: " + "; ".join(",".join(map(str, r)) for r in result["retentions"]) + ".",
             "Checkpoints chosen on: " + "; ".join(result["checkpoints_chosen_on"]) + "."]
    return "\n".join(lines)
