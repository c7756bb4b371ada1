"""`powerbert import`: a run directory from a model trained elsewhere (being written)."""


def add_import_parser(commands):
    commands.add_parser("import", help="start a run directory from a KerasHub, Model Garden, HF or Google model")


def import_main(args):
    raise NotImplementedError("powerbert import is being written")
