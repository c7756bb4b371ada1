import sys

from powerbert_cli.main import main

sys.exit(main())
