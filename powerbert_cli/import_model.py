"""`powerbert import` and `powerbert export-weights`: BERT classifiers to and from the other
libraries' formats.

`import` turns a model trained elsewhere into a run directory: its weights become the run's
pretrained directory (`<run>/pretrained`, Google format, with the vocabulary) and, when it has a
classifier head, the fine-tune step's model, evaluated on the task's dev set and marked done, so
`powerbert train --out <run>` continues with the configuration search. `export-weights` writes a
run's (or a `.keras` file's) classifier weights back in any of the formats. Each format's module
in `powerbert_tf.checkpoints` owns its files; this module only chooses between them.
"""

import os

FORMATS = ("keras-hub", "model-garden", "hf", "google-ckpt")
PRETRAINED_DIR = "pretrained"


def add_import_parser(commands):
    from powerbert_cli.task_args import add_task_arguments

    parser = commands.add_parser(
        "import", help="start a run directory from a KerasHub, Model Garden, Hugging Face or Google BERT",
        description="Read a BERT trained elsewhere into a run directory. With a classifier head (a "
                    "KerasHub BertTextClassifier, a Model Garden BertClassifier checkpoint, a HF "
                    "BertForSequenceClassification, a run_classifier.py checkpoint) the fine-tune step "
                    "is done (evaluated on dev) and `powerbert train --out RUN` continues with the search; "
                    "without one, `powerbert train --out RUN` fine-tunes it first. A missing, extra or "
                    "mis-shaped variable stops the import with its name.")
    parser.add_argument("--from", dest="source_format", required=True, choices=FORMATS,
                        help="keras-hub: .keras file or preset directory; model-garden: tf.train.Checkpoint "
                             "(prefix or directory) of tfm BertEncoder/BertClassifier; hf: directory with "
                             "config.json + model.safetensors; google-ckpt: directory with bert_config.json "
                             "+ bert_model.ckpt")
    parser.add_argument("path", metavar="PATH", help="the model to import")
    parser.add_argument("--out", required=True, help="run directory to create")
    parser.add_argument("--config", default=None,
                        help="model-garden: its bert_config.json (default: PATH's directory's, else the sizes "
                             "read off the variables with Model Garden's default activation)")
    parser.add_argument("--vocab", default=None,
                        help="vocab.txt the model was trained with (default: the one beside PATH or inside it)")
    parser.add_argument("--cased", action="store_true", help="the vocabulary is cased (default: lower-case, "
                                                               "or what the source records)")
    parser.add_argument("--data-dir", default=None, help="directory holding glue/ and imdb/ (built-in tasks)")
    parser.add_argument("--max-length", type=int, default=None, help="input length N (default: the task's)")
    parser.add_argument("--preset", default="paper", help="training preset of the steps still to run")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the steps still to run (subsets, shuffles, dropout, Rand-WS); default 0")
    add_task_arguments(parser)

    export = commands.add_parser(
        "export-weights", help="write a run's classifier weights for KerasHub, Model Garden, HF or Google BERT",
        description="Write the weights of a run's final model (re-trained, else fine-tuned; --step to choose) "
                    "or a .keras file in another library's format. The other libraries run every word "
                    "vector through every layer: a re-trained PoWER-BERT model's weights are exported, not "
                    "its elimination (serve the SavedModel of `powerbert export` for that).")
    export.add_argument("source", metavar="RUN_OR_MODEL", help="run directory or .keras file")
    export.add_argument("--to", dest="target_format", required=True, choices=FORMATS)
    export.add_argument("--out", required=True, help="directory to write (must not exist)")
    export.add_argument("--step", choices=("finetune", "retrain"), default=None,
                        help="which model of a run (default: retrain if done, else finetune)")
    export.add_argument("--init", default=None, help="vocabulary of a .keras file (preset or checkpoint directory)")
    export.add_argument("--allow-gelu-approximation", action="store_true",
                        help="keras-hub: KerasHub's BERT always uses tanh-approximate GELU; export a model with "
                             "exact GELU (MiniLM, Hugging Face BERTs) anyway (outputs move by about 3e-3)")


def read_weights(source_format, path, config=None, vocab=None, cased=False):
    """`BertWeights` from `path` in `source_format` (one of `FORMATS`)."""
    from powerbert_tf.checkpoints import google, huggingface, keras_hub, model_garden

    if source_format == "keras-hub":
        weights = keras_hub.read_keras_hub(path)
    elif source_format == "model-garden":
        directory = path if os.path.isdir(path) else os.path.dirname(path)
        config = config or _file_if_exists(directory, "bert_config.json")
        vocab = vocab or _file_if_exists(directory, "vocab.txt")
        weights = model_garden.read_model_garden_checkpoint(path, config=config, vocab_path=vocab)
    elif source_format == "hf":
        weights = huggingface.read_hf_directory(path)
    else:
        weights = google.read_google_directory(path)
    if vocab is not None and source_format != "model-garden":
        from powerbert_tf.checkpoints.bert_weights import read_vocab

        weights.vocab = read_vocab(vocab)
    if cased:
        weights.lower_case = False
    return weights.check()


def _file_if_exists(directory, name):
    path = os.path.join(directory, name)
    return path if os.path.isfile(path) else None


def import_main(args):
    import json

    from powerbert_cli.task_args import task_from_args
    from powerbert_tf import PowerBertClassifier
    from powerbert_tf.checkpoints.google import save_google_directory
    from training.config import resolve_config
    from training.fit_step import evaluate
    from training.pipeline import Pipeline
    from training.run_dir import RunDir, RunDirError

    if os.path.exists(RunDir(args.out).file("config.json")):
        raise RunDirError(f"{args.out} is already a run directory; import into a new --out")
    task = task_from_args(args)
    weights = read_weights(args.source_format, args.path, args.config, args.vocab, args.cased)
    if weights.vocab is None:
        raise ValueError(f"{args.path} carries no vocabulary; pass --vocab vocab.txt (the one it was trained with)")
    _check_head_fits(weights, task)
    pretrained = os.path.abspath(os.path.join(args.out, PRETRAINED_DIR))
    save_google_directory(weights.without_head(), pretrained)
    config = resolve_config(task, args.preset, init=pretrained, max_length=args.max_length, seed=args.seed)
    pipeline = Pipeline(config, args.out, data_dir=args.data_dir, task=task)
    origin = {"format": args.source_format, "path": os.path.abspath(args.path)}
    if not weights.has_head:
        print(f"imported the encoder of {args.path} into {args.out}/{PRETRAINED_DIR} (no classifier head); "
              f"fine-tune, search and re-train with: powerbert train --out {args.out}")
        return 0
    model = PowerBertClassifier.from_bert_weights(weights, num_classes=task.num_labels, dropout=config.dropout)
    dev = evaluate(model, pipeline.dev_dataset(), task)
    pipeline.run_dir.adopt_model("finetune", model, dev)
    pipeline.run_dir.mark_done("finetune", {"dev": dev, "selection": dev, "steps": 0, "imported_from": origin,
                                            "wall_seconds": 0.0})
    pipeline.write_summary()
    print(json.dumps({"imported": origin, "task": task.name, "dev": dev}, indent=2))
    print(f"continue with the configuration search and re-training: powerbert train --out {args.out}")
    return 0


def _check_head_fits(weights, task):
    """The imported head must have the task's width and, when it records labels, the task's labels
    in the task's order."""
    if not weights.has_head:
        return
    if weights.num_classes != task.num_labels:
        raise ValueError(f"{weights.source}: the classifier head has {weights.num_classes} outputs, task "
                         f"{task.name!r} has {task.num_labels} ({list(task.label_names) or 'a score'})")
    if weights.label_names and not task.is_regression and \
            tuple(weights.label_names) not in (tuple(task.label_names), tuple(task.label_values)):
        raise ValueError(f"{weights.source}: the head's labels {list(weights.label_names)} are not task "
                         f"{task.name!r}'s {list(task.label_names)} in that order")


def export_weights_main(args):
    import keras

    from powerbert_tf import load_tokenizer
    from powerbert_tf.checkpoints import google, huggingface, keras_hub, model_garden
    from training.run_dir import RunDir

    if os.path.exists(args.out):
        raise ValueError(f"{args.out} exists; export-weights writes a new directory")
    if os.path.isdir(args.source):
        run = RunDir(args.source)
        config, retention = run.check(need=())
        step = args.step or run.final_step()
        model = run.load_checked_model(step, retention)
        task, init = run.read_task(), config.init
        label_names = None if task.is_regression else task.label_names
    elif args.source.endswith(".keras") and os.path.isfile(args.source):
        if args.init is None:
            raise ValueError("exporting a .keras file needs --init (the vocabulary it was trained with)")
        model, init, label_names = keras.saving.load_model(args.source, compile=False), args.init, None
    else:
        raise ValueError(f"{args.source} is neither a run directory nor a .keras file")
    tokenizer = load_tokenizer(init)
    weights = model.bert_weights(vocab=tokenizer.vocab, lower_case=tokenizer.lower_case, label_names=label_names)
    writers = {"keras-hub": lambda w, out: keras_hub.save_keras_hub_preset(
                   w, out, allow_gelu_approximation=args.allow_gelu_approximation),
               "model-garden": model_garden.save_model_garden_checkpoint,
               "hf": huggingface.save_hf_directory, "google-ckpt": google.save_google_directory}
    writers[args.target_format](weights, args.out)
    print(f"wrote {args.target_format} weights to {args.out}")
    return 0
