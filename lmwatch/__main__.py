from lmwatch.cli import main

raise SystemExit(main())
