import sys

from genview.cli import main

sys.exit(main())
