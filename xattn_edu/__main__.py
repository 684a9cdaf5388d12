import sys

from xattn_edu.cli import main

sys.exit(main())
