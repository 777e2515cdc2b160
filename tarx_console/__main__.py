import sys

from tarx_console.cli import main

sys.exit(main())
