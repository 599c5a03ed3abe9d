import sys

from feature_platform.cli import main

sys.exit(main())
