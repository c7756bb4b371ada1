"""The methods PoWER-BERT is compared with (supplementary 1.2): distilled students with fewer
layers (DistilBERT-style, BERT-PKD) and head pruning (Michel et al. 2019). Each is its own
module beside the PoWER-BERT steps, sharing their data (`training.task_data`) and fit loop
(`training.fit_step`); `training.baselines.baseline_dir` owns their output directory."""
