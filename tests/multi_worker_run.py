"""One worker of a multi-worker job for tests/test_multi_worker.py.

`python -m tests.multi_worker_run ARGS...`, with TF_CONFIG set as on a real machine, runs
`powerbert train ARGS --strategy multi-worker` and exits with its code. Environment:
- POWERBERT_TEST_KILL_AFTER=K: the worker kills itself with SIGKILL after K fine-tuning batches, as
  a machine that fails mid-step stops: no exception, no goodbye to the other workers.
- POWERBERT_TEST_SGD=1: `SGD_FOR_ADAM` (the test's single-process reference trains with it too).
"""

import os
import signal
import sys

import keras


def sgd(learning_rate, **_):
    return keras.optimizers.SGD(learning_rate)


# Adam and AdamW replaced by SGD at the same learning rates, so that equal gradients mean equal
# weights: Adam turns float-rounding noise in near-zero gradients into steps of +-lr, and it would
# hide a gradient off by a constant factor (tests/distributed_step.py compares under SGD too).
SGD_FOR_ADAM = {"Adam": sgd, "AdamW": sgd}

if __name__ == "__main__":
    if os.environ.get("POWERBERT_TEST_SGD"):
        for name, make in SGD_FOR_ADAM.items():
            setattr(keras.optimizers, name, make)
    kill_after = int(os.environ.get("POWERBERT_TEST_KILL_AFTER", "0"))
    if kill_after:
        from training import fit_step

        trained = []

        def die(self, batch, logs=None):
            trained.append(batch)
            if len(trained) == kill_after:
                print(f"killed after {kill_after} batches", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

        fit_step._ChunkEnd.on_train_batch_end = die

    from powerbert_cli.main import main

    sys.exit(main(["train", *sys.argv[1:], "--strategy", "multi-worker"], quiet_native_log=True))
