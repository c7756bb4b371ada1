"""`powerbert predict`: batch prediction from a file with an exported model (being written)."""


def add_predict_parser(commands):
    commands.add_parser("predict", help="batch prediction from a file with an exported model")


def predict_main(args):
    raise NotImplementedError("powerbert predict is being written")
