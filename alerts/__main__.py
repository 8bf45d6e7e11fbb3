import sys

from alerts.local import main

sys.exit(main())
