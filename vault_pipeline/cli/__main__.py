"""`python -m vault_pipeline.cli ...`, the same as the installed `vault-pipeline` script."""

import sys

from vault_pipeline.cli.main import main

sys.exit(main())
