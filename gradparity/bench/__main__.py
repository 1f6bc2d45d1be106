import sys

from gradparity.bench.run import main

sys.exit(main())
