"""How fast, honestly: `powerbert bench` (inference speed and accuracy of BERT vs PoWER-BERT in
one process) and the REST serving load-test report (`benchmarks.serving_load`).

Above `training` and `serving` in the import order: a benchmark reads a run directory
(`training.run_dir.RunDir`) and exports and converts its models (`serving`).
"""
