import sys

from steep.cli import main

sys.exit(main())
