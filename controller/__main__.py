"""`python -m controller`: the vks-controller command line."""
import sys

from controller.cli import main

sys.exit(main())
