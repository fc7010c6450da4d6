import sys

from hpo.cli.app import main

sys.exit(main())
