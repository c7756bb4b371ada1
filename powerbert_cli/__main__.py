from powerbert_cli.main import run

run()
