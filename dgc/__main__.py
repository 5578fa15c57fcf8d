import sys

from dgc.cli import main

sys.exit(main())
