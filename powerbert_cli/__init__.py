"""The `powerbert` command (`powerbert_cli.main`)."""
